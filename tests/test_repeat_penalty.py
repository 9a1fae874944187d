"""The repeat penalty every model opened here decodes with (tuneforge.llama_private.penalise):
llama.cpp's own penalties rule, over the window llama-server and Ollama's llama runner use (the
context's last n tokens, prompt included), the same for eval's decoder and for the plain
llama_cpp.Llama that tuneforge.serve answers with, and part of the eval memo's key."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from tests.tiny_gguf import write_tiny_gguf

pytest.importorskip("llama_cpp")

from llama_cpp import llama_cpp as C  # noqa: E402

from tuneforge.decode import Settings, chat_greedy, gguf_key  # noqa: E402
from tuneforge.llama_private import load_llama, logits_from, open_gguf, penalise  # noqa: E402

ENTRY_DTYPE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class LlamaCppPenalties:
    """llama.cpp's penalties sampler (llama_sampler_init_penalties), as llama-server drives it:
    every token accepted into it, then applied to a whole vocabulary's logits."""

    def __init__(self, n_vocab: int, last_n: int, repeat: float, freq: float = 0.0, present: float = 0.0):
        self.n_vocab = n_vocab
        self.smpl = C.llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, present)

    def accept(self, tokens) -> None:
        for t in tokens:
            C.llama_sampler_accept(self.smpl, int(t))

    def apply(self, logits: np.ndarray) -> np.ndarray:
        data = (C.llama_token_data * self.n_vocab)()
        view = np.frombuffer(data, dtype=ENTRY_DTYPE)
        view["id"], view["logit"], view["p"] = np.arange(self.n_vocab), logits, 0.0
        arr = C.llama_token_data_array(data, self.n_vocab, -1, False)
        C.llama_sampler_apply(self.smpl, ctypes.byref(arr))
        out = np.empty(self.n_vocab, dtype=np.float32)
        out[view["id"][:arr.size]] = view["logit"][:arr.size]
        return out

    def close(self) -> None:
        C.llama_sampler_free(self.smpl)


@pytest.mark.parametrize("repeat,freq,present", [(1.1, 0.0, 0.0), (1.3, 0.25, 0.5), (0.9, 0.0, 0.0)])
def test_penalise_is_llama_cpp_s_own_penalties_sampler(repeat, freq, present):
    """Bit for bit, with positive, negative and zero logits and repeated tokens in the window."""
    rng = np.random.default_rng(0)
    n_vocab = 500
    logits = (rng.standard_normal(n_vocab) * 4).astype(np.float32)
    logits[:20] = 0.0  # a zero logit stays zero
    window = rng.integers(0, 60, size=64)  # tokens 0-59, most of them repeated
    ref = LlamaCppPenalties(n_vocab, len(window), repeat, freq, present)
    try:
        ref.accept(window)
        expected = ref.apply(logits)
    finally:
        ref.close()
    ours = logits.copy()
    penalise(ours, window, repeat, freq, present)
    assert (expected != logits).sum() > 15  # the penalty did something
    np.testing.assert_array_equal(ours, expected)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("penalty") / "random.gguf", seed=1)


MESSAGES = [{"role": "user", "content": "the fix the fix kind tags path 0000 aaaa v1 the fix"}]


def test_each_step_s_window_is_the_context_s_last_n_tokens(tiny, monkeypatch):
    """The tokens each step penalises: the last n of the context (prompt, then the answer so far)."""
    from tuneforge import llama_private

    windows = []
    original = llama_private.penalise
    monkeypatch.setattr(llama_private, "penalise", lambda logits, window, *a: (windows.append(list(window)),
                                                                              original(logits, window, *a)))
    last_n = 16
    for llm in (open_gguf(tiny, n_ctx=512, n_threads=1, repeat_last_n=last_n),
                load_llama(tiny, n_ctx=512, n_threads=1, seed=0, last_n_tokens_size=last_n, verbose=False)):
        windows.clear()
        try:
            res = chat_greedy(llm, MESSAGES, None, 12, repeat_penalty=1.3)
            ids, n_prompt = list(llm._input_ids), res["usage"]["prompt_tokens"]
        finally:
            llm.close()
        assert n_prompt > last_n and len(windows) == res["usage"]["completion_tokens"] >= 10
        assert windows == [ids[n_prompt + step - last_n: n_prompt + step] for step in range(len(windows))]


def test_the_window_is_the_context_prompt_included(tiny):
    """eval's decoder (open_gguf) and the plain llama_cpp.Llama tuneforge.serve loads (load_llama)
    answer greedily as llama-server does: at each step, llama.cpp's penalties sampler fed the
    prompt's tokens and then the answer's so far, over the model's raw logits. A window of the
    answer alone (llama-cpp-python's own chain) picks other tokens on this prompt."""
    repeat, last_n, steps = 1.3, 64, 40
    ours = open_gguf(tiny, n_ctx=512, n_threads=1, repeat_last_n=last_n)
    plain = load_llama(tiny, n_ctx=512, n_threads=1, seed=0, last_n_tokens_size=last_n, verbose=False)
    try:
        answers = []
        for llm in (ours, plain):
            res = chat_greedy(llm, MESSAGES, None, steps, repeat_penalty=repeat)
            answers.append(list(llm._input_ids[res["usage"]["prompt_tokens"]:]))
        assert answers[0] == answers[1]
        n_prompt = res["usage"]["prompt_tokens"]
        ids = list(plain._input_ids)  # prompt + answer, as the completion left the context
        answer = ids[n_prompt:]
        assert len(answer) >= 10
        raw = logits_from(plain, ids, n_prompt - 1)  # the unpenalised logits before each answer token

        def replay(prompt_in_window: bool) -> list[int]:
            ref = LlamaCppPenalties(plain.n_vocab(), last_n, repeat)
            try:
                if prompt_in_window:
                    ref.accept(ids[:n_prompt])
                picked = []
                for step in range(len(answer)):
                    token = int(np.argmax(ref.apply(raw[step])))
                    picked.append(token)
                    ref.accept([answer[step]])  # the context goes on as the completion did
                return picked
            finally:
                ref.close()

        assert replay(prompt_in_window=True) == answer
        assert replay(prompt_in_window=False) != answer  # so the prompt's tokens mattered here
        unpenalised = chat_greedy(ours, MESSAGES, None, steps)
        assert list(ours._input_ids[n_prompt:]) != answer, unpenalised  # and so did the penalty
    finally:
        ours.close()
        plain.close()


def test_the_memo_keys_answers_by_the_penalty(tiny):
    base = Settings(max_tokens=8, n_ctx=256, n_threads=1)
    keys = [gguf_key(tiny, s) for s in (base, Settings(8, 256, 1, repeat_penalty=1.1),
                                        Settings(8, 256, 1, repeat_penalty=1.1, repeat_last_n=32))]
    assert len({repr(sorted(k.items())) for k in keys}) == 3
    assert base.without_penalty() == base and Settings(8, 256, 1, 1.1).without_penalty() == base
