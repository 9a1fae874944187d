"""The two llama_cpp.Llama subclasses that reach into llama-cpp-python's private API, written
against llama-cpp-python 0.3.36 (WRITTEN_AGAINST) and refused by any other version.

- PlainBuffersLlama catches the `self.model_params = ...` assignment in Llama.__init__ to
  load the weights into plain CPU buffers (there is no keyword for it).
- Both apply a completion's repeat penalty themselves (wrapping Llama._init_sampler and
  Llama.sample, reading `_input_ids`, `_sampler`, `last_n_tokens_size`), over the context's
  last tokens, prompt included, as llama-server and Ollama do (penalise, below).
- GrammarFirstLlama replaces Llama._init_sampler and Llama.sample, and reads the private
  `_model`, `_ctx`, `_n_vocab` and LlamaGrammar's `_grammar` / `_root`, to check the grammar
  on the argmax alone, to close an answer still open at the token cap, and to steer an answer
  away from what a task's answer check refuses (decode.task_check).

Private names change between releases without notice, and a change need not raise: it can
decode differently or load onto the AMX buffer that segfaults. So every load (open_gguf,
load_llama: the only ways in) first checks the installed llama-cpp-python against
WRITTEN_AGAINST, and tests/test_llama_runtime.py holds params.yaml's toolchain pin to it:
moving the pin means reading these classes against the new release, then WRITTEN_AGAINST.
Models are opened through here by tuneforge.decode, bench's baseline and the tests.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from tuneforge.toolchain import toolchain

WRITTEN_AGAINST = "0.3.36"  # llama-cpp-python; the version whose private API this module uses

# Tokens an answer still open at max_tokens gets to close in. Closing takes the grammar's
# shortest way out (GrammarFirstLlama._closing_token): at worst about a token per character
# of the remaining keys and shortest values, 99 tokens from the changelog answer's first
# token on tiny byte-level models; tests/test_grammar.py holds every closing to this bound.
CLOSE_RESERVE = 192


def check_version() -> None:
    """Refuse a llama-cpp-python other than the one this module was written against (a
    local build suffix, `0.3.36+cpu`, is ignored, as tuneforge.toolchain ignores it)."""
    installed = toolchain(["llama_cpp_python"])["llama_cpp_python"]
    if installed.split("+")[0] != WRITTEN_AGAINST:
        raise RuntimeError(f"llama-cpp-python {installed} is installed, but tuneforge.llama_private "
                           f"overrides private methods of {WRITTEN_AGAINST}: install the locked "
                           "environment (make setup: requirements.lock), or check its subclasses "
                           "against the new version and update WRITTEN_AGAINST")


def open_gguf(path: str | Path, *, n_ctx: int, n_threads: int, repeat_last_n: int = 64,
              verbose: bool = False):
    """A llama.cpp model that decodes greedily with the grammar checked first on the argmax;
    a completion's repeat penalty looks back `repeat_last_n` tokens of its context."""
    check_version()  # before anything private is touched
    return _grammar_first_class()(str(path), n_ctx=n_ctx, n_threads=n_threads or None, seed=0,
                                  last_n_tokens_size=repeat_last_n, verbose=verbose)


def load_llama(path: str | Path, **kwargs: Any):
    """llama_cpp.Llama(path, **kwargs) with its own sampler chain (a baseline to compare
    open_gguf's decoder with), loaded into plain CPU buffers like every model opened here."""
    check_version()
    return _plain_llama_class()(str(path), **kwargs)


# ---------------------------------------------------------------- loading without extra buffers
#
# llama-cpp-python is built from its sdist with GGML_NATIVE, so on an Intel Xeon with AMX
# (Sapphire Rapids and later: AMX_INT8 = 1 in llama_print_system_info()) llama.cpp's AMX
# "extra" buffer type is compiled in. Quantised weights (Q4_0, Q8_0, Q4_K, ...) are then
# repacked into it at load and the first llama_decode segfaults in ggml_backend_amx_mul_mat
# (llama.cpp issue #20824; dspy PR #10079 dropped its AMX build for the same crash on CI). So
# every model this module opens is loaded with use_extra_bufts off (llama.cpp's
# --no-extra-bufts): weights stay in plain CPU buffers. It is off on every machine, not only
# AMX ones: the CPU_REPACK buffer it also turns off reorders the arithmetic too, so this keeps
# the same kernels, and greedy answers, on CI and dev machines; decode speed barely moves on
# our small models (see tests/test_llama_runtime.py). Llama() has no keyword for it, hence the
# hook below: Llama.__init__ (0.3.36) assigns `self.model_params = llama_model_default_params()`
# and fills it in before it loads the model, and the class catches that assignment. Both
# things it relies on (the field, the assignment) are checked on every load, so a version
# that slipped past check_version and changed either fails at load instead of decoding on AMX.

def logits_from(llm, ids: list[int], first: int, *, keep: int = 0):
    """Evaluate `ids` and return the logits at positions first .. len(ids)-1 only (a float32
    array, one row per position). The tokens before `first` go through llama-cpp-python's
    eval() with its private `_logits_all` off, so the LM head runs and a vocabulary-wide row is
    copied only where they are read (fidelity: a prompt is ~5x its answer); the rest go
    through our own batches with every position's logits asked for, read straight from
    llama.cpp's output buffer. So any model works, whatever it was loaded with: eval's decoder
    (logits_all off, its `scores` only n_batch rows) and fidelity's alike. The first `keep`
    tokens' KV cache entries are kept (the caller checked that the context holds `ids[:keep]`;
    keep <= first), as llama-cpp-python's own completions keep them from one prompt to the
    next: after a completion for the same prompt, only the answer's positions are computed.
    Afterwards the context holds `ids`, as eval() would leave it, so the next completion
    reuses what it shares with them."""
    import numpy as np

    if not 0 <= keep <= min(first, llm.n_tokens):
        raise ValueError(f"keep={keep}: the context holds {llm.n_tokens} tokens and the logits start at {first}")
    if first >= len(ids):
        raise ValueError(f"no logits to read: {len(ids)} ids, the first read at {first}")
    llm.reset()
    llm.n_tokens = keep
    saved, llm._logits_all = llm._logits_all, False
    try:
        if first > keep:
            llm.eval(ids[keep:first])  # drops the KV cache from n_tokens on, as below
    finally:
        llm._logits_all = saved
    llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
    n_vocab = llm.n_vocab()
    out = np.empty((len(ids) - first, n_vocab), dtype=np.float32)
    for at in range(first, len(ids), llm.n_batch):
        batch = ids[at: at + llm.n_batch]
        llm._batch.set_batch(batch=batch, n_past=llm.n_tokens, logits_all=True)
        llm._ctx.decode(llm._batch)
        out[at - first: at - first + len(batch)] = np.ctypeslib.as_array(llm._ctx.get_logits(),
                                                                         shape=(len(batch), n_vocab))
        llm.input_ids[llm.n_tokens: llm.n_tokens + len(batch)] = batch
        llm.n_tokens += len(batch)
    llm._requires_eval = False  # as eval() leaves it: the last position's logits are live
    return out


# ---------------------------------------------------------------- repeat penalty over the context
#
# llama.cpp's penalties sampler (llama_sampler_init_penalties: repeat, frequency, presence)
# penalises each token that occurs in its window, the last `penalty_last_n` tokens accepted
# into it. llama-server and Ollama's llama runner accept every prompt token into it before
# generating (vendor/llama.cpp/tools/server/server-context.cpp: common_sampler_accept for each
# prompt token; Ollama's runner/llamarunner NewSequence: sc.Accept(input.token, false)), so
# their window is the last n tokens of the context, prompt included. llama-cpp-python builds a
# fresh chain per completion and accepts only the tokens it samples: its window holds the
# answer alone, and the same repeat_penalty in a request gives other answers than Ollama's.
# So every model opened here penalises itself, as llama-server does, and hands its chain no
# penalty: one rule (penalise below) for eval's decoder, predict and tuneforge.serve alike,
# checked against llama.cpp's own sampler by tests/test_repeat_penalty.py.

def penalise(logits, window, repeat: float, freq: float = 0.0, present: float = 0.0) -> None:
    """llama.cpp's penalties sampler on `logits` (float32, one per vocabulary entry) in place:
    each distinct token of `window` that occurs c times has its logit divided by `repeat` when
    positive, else multiplied, then c * freq + present subtracted; float32 arithmetic, as there."""
    import numpy as np

    if (repeat, freq, present) == (1.0, 0.0, 0.0) or len(window) == 0:
        return
    tokens, counts = np.unique(np.asarray(window, dtype=np.int64), return_counts=True)
    vals = logits[tokens]
    vals = np.where(vals <= 0, vals * np.float32(repeat), vals / np.float32(repeat))
    vals -= counts.astype(np.float32) * np.float32(freq) + np.float32(present)
    logits[tokens] = vals


def _penalise_context(llm, idx: int | None):
    """The logits llm.sample(idx=...) reads, penalised in place by the completion's penalties
    over the last llm.last_n_tokens_size tokens of its context (prompt and answer so far)."""
    import numpy as np
    from llama_cpp import llama_cpp as C

    ridx = idx - llm.n_tokens if idx is not None else -1
    logits = np.ctypeslib.as_array(C.llama_get_logits_ith(llm._ctx.ctx, ridx), shape=(llm._n_vocab,))
    last_n = llm.last_n_tokens_size
    if last_n > 0:
        penalise(logits, llm._input_ids[max(0, llm.n_tokens - last_n): llm.n_tokens], *llm.penalties)
    return logits


def without_extra_bufts(params):
    """`params` (a llama_model_params) with use_extra_bufts off."""
    # a setattr on a ctypes Structure without that field would add a Python attribute and
    # change nothing in what llama.cpp reads
    if "use_extra_bufts" not in {name for name, *_ in type(params)._fields_}:
        raise RuntimeError("llama_cpp's llama_model_params has no use_extra_bufts field: cannot keep "
                           "weights out of llama.cpp's AMX buffer (a segfault on AMX CPUs); update "
                           "llama_private.without_extra_bufts for this llama-cpp-python version")
    params.use_extra_bufts = False
    return params


_PLAIN_LLAMA = None


def _plain_llama_class():
    """llama_cpp.Llama loading its weights into plain CPU buffers (see above). Built lazily:
    llama_cpp is an optional import."""
    global _PLAIN_LLAMA
    if _PLAIN_LLAMA is not None:
        return _PLAIN_LLAMA
    from llama_cpp import Llama

    class PlainBuffersLlama(Llama):
        @property
        def model_params(self):
            return self.__dict__["model_params"]

        @model_params.setter
        def model_params(self, params) -> None:  # Llama.__init__'s assignment, before the load
            self.__dict__["model_params"] = without_extra_bufts(params)

        # the current completion's (repeat, frequency, presence) penalties; they are applied
        # here over the context (see penalise above), and the chain gets none
        penalties = (1.0, 0.0, 0.0)

        def _take_penalties(self, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                            presence_penalty: float = 0.0) -> None:
            """Keep a completion's penalties for _penalise_context: the one place both classes
            set them (GrammarFirstLlama's _init_sampler cannot call this one's)."""
            self.penalties = (repeat_penalty, frequency_penalty, presence_penalty)

        def _init_sampler(self, *, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                          presence_penalty: float = 0.0, **kwargs: Any):
            self._take_penalties(repeat_penalty, frequency_penalty, presence_penalty)
            return super()._init_sampler(**kwargs)

        def sample(self, *, idx: int | None = None, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                   presence_penalty: float = 0.0, **kwargs: Any) -> int:
            if self._sampler is None:  # a call outside generate: Llama.sample builds a one-off chain
                self._take_penalties(repeat_penalty, frequency_penalty, presence_penalty)
            _penalise_context(self, idx)
            return super().sample(idx=idx, **kwargs)

        def __init__(self, model_path: str, *args: Any, **kwargs: Any):
            super().__init__(model_path, *args, **kwargs)
            if "model_params" not in self.__dict__:
                self.close()
                raise RuntimeError("llama_cpp.Llama.__init__ no longer assigns self.model_params: "
                                   f"{model_path} may have loaded into llama.cpp's AMX buffer (a "
                                   "segfault on AMX CPUs); update llama_private._plain_llama_class")

    _PLAIN_LLAMA = PlainBuffersLlama
    return _PLAIN_LLAMA


# ---------------------------------------------------------------- grammar-first sampling

_GRAMMAR_FIRST = None


def _grammar_first_class():
    """llama-cpp-python applies a grammar to every vocabulary entry (49k strings matched
    against the grammar's stacks) before picking a token, at every step. For greedy decoding
    that is wasted work whenever the argmax is allowed, and then it is also the allowed argmax.
    So, as llama.cpp's own common sampler does: check the argmax alone, and mask the whole
    vocabulary only when the grammar rejects it. Same tokens (ties go to the lowest id either
    way), ~2x faster under the JSON grammar. Built lazily: llama_cpp is an optional import."""
    global _GRAMMAR_FIRST
    if _GRAMMAR_FIRST is not None:
        return _GRAMMAR_FIRST
    import numpy as np
    from llama_cpp import llama_cpp as C

    token_dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)],
                           align=True)

    class GrammarFirstLlama(_plain_llama_class()):
        _grammar_sampler = None
        _vocab_buffer = None  # the full-vocabulary array, allocated at the first rejection
        _closers: list[int] | None = None
        rejected_argmax = 0  # since the last completion started: how often the full mask ran
        close_after: int | None = None  # set by decode.chat_greedy(close=True)
        closed_at_cap = False  # the last completion reached close_after and was closed
        # set by decode.chat_greedy: a test of the answer's text so far (Task.answer_check);
        # `steered` counts the tokens it turned away from the allowed argmax this completion
        answer_check: Any = None
        steered = 0
        # no token the grammar allows passed the check: the rest of this answer is the grammar's
        # alone (eval's figures count what it names), rather than a decoder that cannot go on
        cornered = False
        _answer_bytes = b""
        _sampled = 0

        def _init_sampler(self, *, temp: float = 0.8, grammar=None, repeat_penalty: float = 1.0,
                          frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                          logits_processor=None, **_: Any):
            # Called once per completion by Llama.generate: a fresh grammar state each time.
            if temp != 0.0 or logits_processor:
                raise ValueError("GrammarFirstLlama decodes greedily only (temperature 0, no "
                                 "logits processors)")
            self._take_penalties(repeat_penalty, frequency_penalty, presence_penalty)
            self._free_grammar()
            self.rejected_argmax, self._sampled, self.closed_at_cap = 0, 0, False
            self.steered, self._answer_bytes, self.cornered = 0, b"", False
            if grammar is not None:
                self._grammar_sampler = C.llama_sampler_init_grammar(
                    self._model.vocab, grammar._grammar.encode(), grammar._root.encode())
            return self  # Llama.sample only needs a non-None sampler; ours is self.sample

        def sample(self, *, idx: int | None = None, **_: Any) -> int:
            # penalised first, as llama.cpp's chain penalises before its grammar and greedy pick
            logits = _penalise_context(self, idx)
            token = int(np.argmax(logits))
            if self._grammar_sampler is not None:
                # close at the token budget, or where what is left of the context could only
                # just hold the way out (a long entry)
                if self.close_after is not None and (self._sampled >= self.close_after or
                                                     self.n_tokens + CLOSE_RESERVE >= self.n_ctx()):
                    self.closed_at_cap = True
                    token = self._closing_token(logits)
                elif not self._allowed(token, float(logits[token])):
                    self.rejected_argmax += 1
                    token = self._allowed_argmax(logits)
                if self.answer_check is not None and not self.closed_at_cap and not self.cornered:
                    token = self._checked(token, logits)
                C.llama_sampler_accept(self._grammar_sampler, token)
            self._sampled += 1
            return token

        def _checked(self, token: int, logits) -> int:
            """`token` (the allowed argmax) if the answer with it passes answer_check, else
            the most likely token the grammar allows with which it does (ties: the lowest id,
            as argmax). Where none does (the grammar can leave one way on only, which the
            check refuses), `token` stands and the check is off for the rest of the answer
            (`cornered`)."""
            if not self._passes(token):
                self.steered += 1
                allowed = self._grammar_masked(logits)
                allowed = allowed[allowed["logit"] != -np.inf]
                for t in allowed["id"][np.lexsort((allowed["id"], -allowed["logit"]))]:
                    if self._passes(int(t)):
                        token = int(t)
                        break
                else:
                    self.cornered = True
            self._answer_bytes += self._piece(token)
            return token

        def _piece(self, token: int) -> bytes:
            return b"" if token == self.token_eos() else self.detokenize([token], special=False)

        def _passes(self, token: int) -> bool:
            if token == self.token_eos():
                return True
            # a character still being written (the lead byte of a UTF-8 sequence) is checked as
            # U+FFFD, which no diff's name holds: a token that could only be finished into a
            # refused name is refused itself, not left for its last byte to be refused
            text = (self._answer_bytes + self._piece(token)).decode("utf-8", errors="replace")
            return bool(self.answer_check(text))

        def _closing_token(self, logits) -> int:
            """The way out of a JSON answer: end it if the grammar is done, else close the
            string, array or object it is in, else the separator towards the next key; where
            none of those fits (a key's name, an enum value, an escape, a string's first
            character) the best token the grammar allows. Strings are closed as soon as they
            may be, so what remains is the keys and the shortest values the grammar takes."""
            if self._closers is None:
                singles = [self.tokenize(c.encode(), add_bos=False, special=False) for c in '"]},:']
                self._closers = [self.token_eos()] + [t[0] for t in singles if len(t) == 1]
            for token in self._closers:
                if self._allowed(token, 0.0):
                    return token
            return self._allowed_argmax(logits)

        def _allowed(self, token: int, logit: float) -> bool:
            one = (C.llama_token_data * 1)(C.llama_token_data(token, logit, 0.0))
            arr = C.llama_token_data_array(one, 1, -1, False)
            C.llama_sampler_apply(self._grammar_sampler, ctypes.byref(arr))
            return one[0].logit != float("-inf")

        def _allowed_argmax(self, logits) -> int:
            view = self._grammar_masked(logits)
            return int(view["id"][np.argmax(view["logit"])])

        def _grammar_masked(self, logits):
            """Every token with its logit, -inf where the grammar refuses it."""
            if self._vocab_buffer is None:  # one buffer per model, refilled at every rejection
                self._vocab_buffer = (C.llama_token_data * self._n_vocab)()
                self._token_ids = np.arange(self._n_vocab, dtype=np.int32)
            data = self._vocab_buffer
            view = np.frombuffer(data, dtype=token_dtype)
            view["id"], view["logit"], view["p"] = self._token_ids, logits, 0.0
            arr = C.llama_token_data_array(data, self._n_vocab, -1, False)
            C.llama_sampler_apply(self._grammar_sampler, ctypes.byref(arr))
            return view[:arr.size]

        def _free_grammar(self) -> None:
            if self._grammar_sampler is not None:
                C.llama_sampler_free(self._grammar_sampler)
                self._grammar_sampler = None

        def close(self) -> None:
            self._free_grammar()
            super().close()

    _GRAMMAR_FIRST = GrammarFirstLlama
    return _GRAMMAR_FIRST
