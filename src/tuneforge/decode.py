"""Decoding: the one way a task's entries become a model's answers, for eval, predict, bench
and by-hand evaluation alike.

A GGUF decodes with llama.cpp, greedily (temperature 0, top_k 1, seed 0) through the GGUF's own
chat template, under the grammar compiled from the task's output schema (tuneforge.grammar),
with params.yaml's eval.max_tokens / n_ctx / n_threads and its repeat penalty,
eval.repeat_penalty over the context's last eval.repeat_last_n tokens as llama-server and
Ollama apply it (Settings; tuneforge.llama_private.penalise; the registered Modelfile sets the
same PARAMETERs): the same file and entry give the same answer wherever they are decoded. An answer still open at
max_tokens is closed by the decoder, and its Answer says so. A task with an answer check
(Task.answer_check: commit-messages names only identifiers its diff shows) has each token checked
too: where the model's choice fails it, the decoder takes its next most likely token that the
grammar allows and that passes, and the Answer counts those tokens (`steered`). The llama.cpp classes it decodes
with reach into llama-cpp-python's private API and live apart, pinned to the version they were
written against (tuneforge.llama_private). Eval's HF models decode here too (decode_hf:
transformers, no grammar). With a PredictionCache, only prompts not answered before decode.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from tuneforge import grammar, llama_private, llm
from tuneforge.gguf_tools import behaviour_sha256
from tuneforge.grammar import compile_gbnf, json_gbnf
from tuneforge.io import sha256_file, sha256_text
from tuneforge.llama_private import CLOSE_RESERVE, open_gguf
from tuneforge.llm import hf_generate
from tuneforge.tasks import Task
from tuneforge.toolchain import toolchain

if TYPE_CHECKING:
    from tuneforge.predcache import PredictionCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What an answer depends on besides the model and the prompt (params.yaml's eval section)."""
    max_tokens: int
    n_ctx: int
    n_threads: int  # resolved: eval.n_threads 0 means every core
    # llama.cpp's repeat penalty and its window (the context's last tokens, prompt included);
    # 1.0: none. Not defaulted from params: a test that builds Settings gets no penalty.
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64

    @classmethod
    def from_eval(cls, cfg: dict) -> Settings:
        return cls(max_tokens=cfg["max_tokens"], n_ctx=cfg["n_ctx"],
                   n_threads=cfg["n_threads"] or os.cpu_count() or 1,
                   repeat_penalty=cfg["repeat_penalty"], repeat_last_n=cfg["repeat_last_n"])

    def without_penalty(self) -> Settings:
        """These settings decoding as transformers' greedy generate does: no repeat penalty."""
        return dataclasses.replace(self, repeat_penalty=1.0)


class Answer(NamedTuple):
    """One decoded answer. `closed_by_decoder`: it was still open at max_tokens (or near the
    end of the context) and the decoder closed it the shortest way the grammar allows, so
    it parses, but its end is the decoder's, not the model's (a loop, usually). `steered`: how
    many of its tokens the task's answer check (Task.answer_check) turned the model away from."""
    text: str
    closed_by_decoder: bool = False
    steered: int = 0


def prompts(task: Task, rows: list[dict], with_hint: bool = True) -> list[list[dict]]:
    """The chat prompt of each row ({"text", "hint"?, "product"?}: a gold row or an entry)."""
    return [task.messages(r["text"], r.get("hint") if with_hint else None, r.get("product"))
            for r in rows]


def task_gbnf(task: Task, text: str | None = None) -> str:
    """The grammar an answer to `text` is decoded under: the task's output schema, narrowed to
    that input where the task narrows (Task.narrow_schema); without a text, the whole schema."""
    return json_gbnf(task.output_schema(text))


def task_check(task: Task, text: str | None):
    """The test an answer to `text` is decoded under besides its grammar (Task.answer_check;
    None: the grammar alone)."""
    return None if task.answer_check is None or text is None else task.answer_check(text)


def check_keys(task: Task, texts: list[str]) -> list[str | None]:
    """What each text's answer check depends on, for the memo: the check's own source file and
    the input it checks against (the prompt shows a bounded view of it, not all of it)."""
    if task.answer_check is None:
        return [None] * len(texts)
    fn = task.answer_check
    name = fn.module if hasattr(fn, "module") else fn.__module__  # a Lazy member, or a function
    importlib.import_module(name)
    code = code_sha256(sys.modules[name])
    return [sha256_text(code + text) for text in texts]


def task_gbnfs(task: Task, texts: list[str]) -> list[str]:
    """task_gbnf for each text, each distinct schema converted once (~1 ms a conversion: a task
    that never narrows has one schema for every input). Per call, not a module-level cache,
    so a converter patched in a test is the one used."""
    converted: dict[str, str] = {}
    out = []
    for text in texts:
        schema = task.output_schema(text)
        key = json.dumps(schema, sort_keys=True)
        if key not in converted:
            converted[key] = json_gbnf(schema)
        out.append(converted[key])
    return out


def decode(path: Path, task: Task, rows: list[dict], settings: Settings, *, with_hint: bool = True,
           cache: PredictionCache | None = None, sha256: str | None = None,
           decoder: Decoder | DecoderPool | None = None) -> list[Answer]:
    """The GGUF's answer to each row, under the task's output grammar for that row, each
    flagged when the decoder closed it at the cap; with a cache, only the prompts it has not
    answered before are decoded (`sha256`: the file's, when the caller has verified it already;
    `decoder`: that file already open, kept open for the caller)."""
    return decode_chats(path, task, prompts(task, rows, with_hint), [r["text"] for r in rows], settings,
                        cache=cache, sha256=sha256, desc=f"{path.stem}{'' if with_hint else ' (no hint)'}",
                        decoder=decoder)


def decode_chats(path: Path, task: Task, todo: list[list[dict]], texts: list[str], settings: Settings, *,
                 cache: PredictionCache | None = None, sha256: str | None = None, desc: str = "",
                 decoder: Decoder | DecoderPool | None = None) -> list[Answer]:
    """decode's answers to chats built elsewhere (eval's retrieval pass: worked examples first);
    `texts[i]` is the input chat i answers, which its grammar is narrowed to."""
    if len(texts) != len(todo):
        raise ValueError(f"{len(todo)} chats and {len(texts)} input texts: each chat answers one input")
    gbnfs = task_gbnfs(task, texts)  # decoded under, and keyed on
    checks = [task_check(task, t) for t in texts]
    desc = desc or path.stem
    if cache is None:
        return gguf_answers(path, todo, gbnfs, settings=settings, desc=desc, decoder=decoder, checks=checks)
    model = gguf_key(path, settings, sha256)
    # each prompt is keyed with the grammar it is decoded under (each grammar hashed once), and
    # with its answer check where the task has one
    by_key = {sha256_text(g): g for g in dict.fromkeys(gbnfs)}
    digest = {g: k for k, g in by_key.items()}
    keyed = []
    for chat, g, checked in zip(todo, gbnfs, check_keys(task, texts), strict=True):
        keyed.append({"messages": chat, "grammar": digest[g], **({"check": checked} if checked else {})})
    at = {id(p): i for i, p in enumerate(keyed)}  # the memo hands back the prompts it lacks
    return cache.answers(model, keyed, lambda ps: gguf_answers(
        path, [p["messages"] for p in ps], [by_key[p["grammar"]] for p in ps], settings=settings, desc=desc,
        decoder=decoder, checks=[checks[at[id(p)]] for p in ps]))


@functools.lru_cache(maxsize=64)
def _behaviour(path: str, sha256: str) -> str:
    """gguf_tools.behaviour_sha256 of the file whose bytes have `sha256` (read once per file per
    process: eval's confirmation asks for each row)."""
    return behaviour_sha256(path)


def gguf_key(path: Path, settings: Settings, sha256: str | None = None) -> dict[str, Any]:
    """What a GGUF's memoised answer depends on besides its prompt and grammar: the file's
    behaviour (every byte but its provenance, gguf_tools.behaviour_sha256), the decoder and its
    code, the settings (`sha256`: the file's, when the caller verified it)."""
    return {"behaviour": _behaviour(str(path), sha256 or sha256_file(path)), "decoder": toolchain(["llama_cpp_python"]),
            "code": code_sha256(sys.modules[__name__], grammar, llama_private),
            "max_tokens": settings.max_tokens, "n_ctx": settings.n_ctx, "n_threads": settings.n_threads,
            "repeat_penalty": settings.repeat_penalty, "repeat_last_n": settings.repeat_last_n}


def decode_free(path: Path, task: Task, rows: list[dict], settings: Settings, cache: PredictionCache,
                sha256: str | None = None) -> list[Answer]:
    """The GGUF's answers decoded as decode_hf decodes a transformers model: greedy, no grammar,
    the same prompts, through the memo (keyed apart from the grammar-constrained answers). Eval's
    conversion check: exact-text parity with the merged model means something only when both
    decode alike, since under its grammar a GGUF answers what the grammar allows (commit-messages
    narrows `ignore` to each diff's paths, every answer is closed at the cap), and without a
    repeat penalty, as transformers' greedy generate decodes."""
    settings = settings.without_penalty()
    model = {**gguf_key(path, settings, sha256), "grammar": None}
    return cache.answers(model, prompts(task, rows), lambda ps: gguf_answers(
        path, ps, None, settings=settings, desc=f"{path.stem} (as the HF model decodes)"))


def decode_hf(model_dir: Path, task: Task, rows: list[dict], settings: Settings, cache: PredictionCache,
              desc: str, sha256: str | None = None) -> list[Answer]:
    """A transformers model's answers (unconstrained: no grammar, so none is closed by the
    decoder), through the cache; `sha256` is that of its model.safetensors when known."""
    todo = prompts(task, rows)
    model = {"sha256": sha256 or sha256_file(model_dir / "model.safetensors"),
             "decoder": toolchain(["transformers", "torch"]), "code": code_sha256(llm),
             "max_tokens": settings.max_tokens}
    return cache.answers(model, todo, lambda p: [Answer(text) for text in
                                                 hf_generate(model_dir, p, settings.max_tokens, desc=desc)])


def code_sha256(*modules: ModuleType) -> str:
    """SHA-256 over the source files of the modules that decode (part of a cache key). Whole
    files, not single functions: a decoder calls helpers, and a key that misses one of them
    would serve an old decoder's answers; a change elsewhere in a file only costs a re-decode."""
    h = hashlib.sha256()
    for module in modules:
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- llama.cpp

def chat_greedy(llm, messages: list[dict], grammar, max_tokens: int, *, close: bool = False,
                check=None, repeat_penalty: float = 1.0) -> dict:
    """One greedy chat completion (the GGUF's own chat template); temperature 0, `repeat_penalty`
    over the window the model was opened with (llama_private.penalise; 1.0: none): the same
    file and prompt give the same text. With `close` (and a grammar) an
    answer still open after `max_tokens` tokens is closed within CLOSE_RESERVE more, the
    shortest way the grammar allows, so it always parses; an answer that ends within
    `max_tokens` is the same either way. `check` (decode.task_check; with a grammar only): the
    answer's text so far must pass it, token by token."""
    llm.close_after = max_tokens if close and grammar is not None else None
    llm.answer_check = check if grammar is not None else None
    if llm.close_after is not None:
        max_tokens += CLOSE_RESERVE
    try:
        return llm.create_chat_completion(messages, temperature=0.0, top_k=1, repeat_penalty=repeat_penalty,
                                          max_tokens=max_tokens, grammar=grammar, seed=0)
    finally:
        llm.close_after = llm.answer_check = None


class Decoder:
    """A GGUF open for answers: greedy completions under the grammar each answer is given
    (None: free), each still open at settings.max_tokens closed by the decoder. The file is
    loaded at first use (`llm`), so a caller whose answers all come from the memo loads
    nothing. `last` is llama.cpp's last completion (usage, finish_reason); `ran_out`, whether
    that answer, under a grammar, stopped short of closing (the end of the context)."""

    def __init__(self, path: str | Path, settings: Settings):
        self.path, self.settings, self.max_tokens = path, settings, settings.max_tokens
        self._llm = None
        self.compiled: dict[str, Any] = {}  # each distinct grammar compiled once
        self.last: dict[str, Any] = {}
        self.ran_out = False

    @property
    def llm(self):
        if self._llm is None:
            self._llm = open_gguf(self.path, n_ctx=self.settings.n_ctx, n_threads=self.settings.n_threads,
                                  repeat_last_n=self.settings.repeat_last_n)
        return self._llm

    def grammar(self, gbnf: str | None):
        if gbnf is None:
            return None
        if gbnf not in self.compiled:
            self.compiled[gbnf] = compile_gbnf(gbnf)
        return self.compiled[gbnf]

    def answer(self, messages: list[dict], gbnf: str | None = None, check=None) -> Answer:
        """The answer under `gbnf` (an input's own grammar, decode.task_gbnf; None: free) and
        `check` (its answer check, decode.task_check; only with a grammar)."""
        if check is not None and gbnf is None:
            raise ValueError("an answer check needs a grammar: the free decode is the model's own")
        self.last = chat_greedy(self.llm, messages, self.grammar(gbnf), self.max_tokens, close=True, check=check,
                                repeat_penalty=self.settings.repeat_penalty)
        self.ran_out = gbnf is not None and self.last["choices"][0]["finish_reason"] != "stop"
        if check is not None and self.llm.cornered:
            log.warning("%s: the answer check found no token the grammar allows after %r; the rest of the "
                        "answer is the grammar's alone", Path(self.path).name, self.llm._answer_bytes[-60:])
        return Answer(self.last["choices"][0]["message"]["content"] or "", bool(self.llm.closed_at_cap),
                      int(self.llm.steered) if check is not None else 0)

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gguf_answers(path: str | Path, prompts: list[list[dict]], gbnf: str | list[str] | None, *,
                 settings: Settings, desc: str = "generate", decoder: Decoder | DecoderPool | None = None,
                 checks: list | None = None) -> list[Answer]:
    """Greedy chat completions with llama.cpp, constrained by the GBNF grammar when given (one
    for every prompt, or a list: one per prompt). Under a grammar every answer is complete: one
    still open at max_tokens (a model looping inside a string) is closed (chat_greedy), and its
    Answer says so. `checks`: one answer check per prompt (decode.task_check), or None.
    `decoder`: `path` already open (the caller closes it): one Decoder, or a DecoderPool whose
    decoders share the prompts out; else it is opened and closed here (a DecoderPool of one
    single-threaded decoder per core when settings give more than one thread)."""
    from contextlib import nullcontext

    from tqdm import tqdm

    gbnfs = gbnf if isinstance(gbnf, list) else [gbnf] * len(prompts)
    if len(gbnfs) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts and {len(gbnfs)} grammars: give one grammar, or one per prompt")
    checks = checks if checks is not None else [None] * len(prompts)
    if len(checks) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts and {len(checks)} answer checks: give one per prompt")
    bar = tqdm(total=len(prompts), desc=desc, unit="ex", disable=len(prompts) < 2)
    if decoder is not None and (str(decoder.path), decoder.settings) != (str(path), settings):
        # the caller's memo keys these answers on `path` and `settings` (gguf_key)
        raise ValueError(f"a decoder of {decoder.path} under {decoder.settings} asked to answer for "
                         f"{path} under {settings}")
    if isinstance(decoder, DecoderPool):
        outs, cut = decoder.answer_all(prompts, gbnfs, checks, bar)
    elif decoder is None and (workers := decode_workers(settings, len(prompts))) > 1:
        with DecoderPool(path, settings, workers) as pool:
            outs, cut = pool.answer_all(prompts, gbnfs, checks, bar)
    else:
        outs, cut = [], 0
        with nullcontext(decoder) if decoder is not None else Decoder(path, settings) as open_decoder:
            for messages, g, check in zip(prompts, gbnfs, checks, strict=True):
                outs.append(open_decoder.answer(messages, g, check))
                cut += open_decoder.ran_out
                bar.update()
    bar.close()
    closed = sum(a.closed_by_decoder for a in outs)
    if closed:
        log.warning("%s: %d of %d answers were still open at max_tokens=%d or near the end of the "
                    "context (a loop, usually) and were closed the shortest way the grammar allows",
                    desc, closed, len(prompts), settings.max_tokens)
    if cut:  # only a prompt that leaves less than CLOSE_RESERVE tokens of n_ctx gets here
        log.warning("%s: %d answers ran out of context (n_ctx=%d) before they closed: those entries "
                    "are too long for n_ctx", desc, cut, settings.n_ctx)
    return outs


# ---------------------------------------------------------------- one decoder per core
#
# A 135M model's token is ~30 layers of small matrix-vector products: llama.cpp's threads meet at
# a barrier after every op, and at two threads the second core spends much of a token waiting
# there (10 commit-messages rows, the base model's Q4_1 GGUF, 2 cores: 22.0 s on one 2-thread
# decoder, 30.5 s on one 1-thread decoder, 18.4 s on two 1-thread decoders side by side). So a
# batch of prompts is shared out over one single-threaded decoder per core, each taking the next
# prompt when it is done with one (a loop to the cap takes ~5x a plain answer). Each answer is
# the one a lone decoder gives: llama.cpp computes every output element on one thread whatever
# the thread count, and an answer does not depend on the prompt decoded before it on the same
# context (its shared prefix's KV entries are the same numbers either way); tests/test_grammar.py
# holds both. Threads, not processes: llama.cpp runs with the GIL released, the memo stays in
# this process, and two processes of one decoder each measured 26.8 s on the same 10 rows.

def decode_workers(settings: Settings, n_prompts: int) -> int:
    """How many single-threaded decoders answer `n_prompts` prompts side by side: one per thread
    settings allow, no more than there are prompts."""
    return max(1, min(settings.n_threads, n_prompts))


class DecoderPool:
    """`workers` decoders of one GGUF, one thread each, answering a batch side by side (each
    takes the next prompt not yet taken), kept open from one batch to the next: eval's
    confirmation decodes a row per decoder at a time, and opening two decoders for every two
    rows cost more than a tenth of its time. Loaded at first use, as a Decoder is."""

    def __init__(self, path: str | Path, settings: Settings, workers: int):
        one = dataclasses.replace(settings, n_threads=1)
        self.path, self.settings = path, settings
        self.decoders = [Decoder(path, one) for _ in range(workers)]

    def answer_all(self, prompts: list[list[dict]], gbnfs: list[str | None], checks: list,
                   bar) -> tuple[list[Answer], int]:
        """gguf_answers' answers, in prompt order, and how many ran out of context; `bar`
        counts them. One decoder's error ends the batch: the others take no more prompts."""
        import threading
        from concurrent.futures import ThreadPoolExecutor

        outs: list[Answer | None] = [None] * len(prompts)
        ran_out = [False] * len(prompts)
        todo, lock, failed = iter(range(len(prompts))), threading.Lock(), threading.Event()

        def work(decoder: Decoder) -> None:
            while not failed.is_set():
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                try:
                    outs[i] = decoder.answer(prompts[i], gbnfs[i], checks[i])
                except BaseException:
                    failed.set()
                    raise
                ran_out[i] = decoder.ran_out
                bar.update()

        busy = self.decoders[:len(prompts)]
        for d in busy:  # loaded here, one after another: llama_private builds its classes once
            _ = d.llm
        with ThreadPoolExecutor(max_workers=len(busy) or 1) as pool:
            for done in [pool.submit(work, d) for d in busy]:
                done.result()  # a decoder's error is raised here
        answered = [a for a in outs if a is not None]
        if len(answered) != len(prompts):  # every decoder returned without an error: cannot happen
            raise RuntimeError(f"{self.path}: {len(prompts) - len(answered)} of {len(prompts)} prompts went unanswered")
        return answered, sum(ran_out)

    def close(self) -> None:
        for d in self.decoders:
            d.close()

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
