"""Fidelity: does every GGUF compute what the merged HF model computes? (issue 20, items 1-2)

No generation, two checks:

- Tokenizer round trip (`round_trip`): llama.cpp tokenises with the vocabulary and merges the
  converter wrote into the GGUF, not with tokenizer.json. So each rendered text (the chat
  template's prompt, as eval renders it, and whole conversations) must give the same ids from
  the merged model's HF tokenizer and from every GGUF's own vocabulary, tokenised as eval's
  chat completion tokenises its prompt (llama-cpp-python: no BOS added, since the template
  holds its own specials; special tokens parsed). A lost or reordered merge shows here, naming
  the row and the first token that differs, instead of as a user's text that decodes oddly.
- Logit fidelity (`Check`, on eval's decoders): each eval row's prompt followed by its gold
  answer and the
  end-of-turn token, tokenised once by the HF tokenizer; the same ids go through the merged
  model (transformers, fp32, one forward) and every GGUF (llama.cpp, one teacher-forced pass).
  At each answer position the next-token distributions are compared: KL(HF || GGUF) and top-1
  agreement. Exact-text parity on a few rows flips with one token; KL over every answer token
  says how far each distribution moved, and a broken conversion moves it by orders of
  magnitude more than f16 rounding does.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.chat_text import Text, render
from tuneforge.decode import code_sha256, prompts
from tuneforge.llama_private import load_llama, logits_from
from tuneforge.names import prediction_id
from tuneforge.tasks import Task
from tuneforge.toolchain import toolchain

log = logging.getLogger(__name__)

CONTEXT = 3  # tokens shown on each side of the first difference in a round-trip error


class TokenizerMismatch(ValueError):
    """The HF tokenizer and a GGUF's vocabulary split a rendered text differently."""


@dataclass(frozen=True)
class Forced:
    """One teacher-forced row: ids = prompt ids + answer ids; answer tokens from `start`."""
    row_id: str
    ids: list[int]
    start: int


# ---------------------------------------------------------------- rendering

def hf_ids(tok: Any, text: str) -> list[int]:
    # add_special_tokens=False: as apply_chat_template(tokenize=True) and eval's GGUF prompt
    # (add_bos=False) do; the template's own <|im_start|> etc. are parsed as specials either way
    return list(tok(text, add_special_tokens=False)["input_ids"])


def end_of_turn(tok: Any) -> str:
    """What ends an answer: the token eval's decoders stop on (HF generate's eos_token_id,
    llama.cpp's stop = the template's eos_token)."""
    if not tok.eos_token:
        raise ValueError("the merged model's tokenizer has no eos_token: no end of turn to score")
    return tok.eos_token


def forced_rows(task: Task, tok: Any, rows: list[dict]) -> list[Forced]:
    """Each gold row's prompt, as eval renders it, then its gold answer and the end of turn.
    Prompt and answer are tokenised apart, as at decode time: the prompt is tokenised alone,
    then the model emits the answer a token at a time (the answer's own tokenisation is the
    closest those tokens have to a canonical form)."""
    eot, out = end_of_turn(tok), []
    for row, messages in zip(rows, prompts(task, rows), strict=True):
        prompt = hf_ids(tok, render(tok, messages, prompt=True))
        answer = hf_ids(tok, task.render_label(row["label"]) + eot)
        out.append(Forced(prediction_id(row["text"]), prompt + answer, len(prompt)))
    return out


def gold_texts(task: Task, tok: Any, rows: list[dict], source: str) -> Iterator[Text]:
    """Per gold row: its prompt as eval renders it, and the whole conversation with its answer."""
    for row, messages in zip(rows, prompts(task, rows), strict=True):
        where = f"{source} row {prediction_id(row['text'])}"
        yield Text(f"{where} (prompt)", render(tok, messages, prompt=True))
        answer = {"role": "assistant", "content": task.render_label(row["label"])}
        yield Text(f"{where} (with its answer)", render(tok, [*messages, answer], prompt=False))


# ---------------------------------------------------------------- GGUFs

@contextmanager
def open_ggufs(paths: dict[str, Path], n_ctx: int, n_threads: int) -> Iterator[dict[str, Any]]:
    """GGUFs opened for teacher forcing outside eval (tests, by-hand checks); n_batch = n_ctx,
    so a row is one decode (logits_from reads the answer positions'
    logits from llama.cpp's own buffer: no logits_all)."""
    llms: dict[str, Any] = {}
    threads = n_threads or os.cpu_count() or 1  # 0 = every core, as eval (llama.cpp's own default is half)
    try:
        for key, path in paths.items():
            llms[key] = load_llama(path, n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, n_threads_batch=threads,
                                   seed=0, verbose=False)
        yield llms
    finally:
        for llm in llms.values():
            llm.close()


class Vocab:
    """A GGUF's vocabulary alone (llama.cpp's vocab_only: no weights), tokenising as
    Llama.tokenize does but in one llama_tokenize call: Llama.tokenize sizes its buffer by the
    model's n_ctx_train, which a vocab-only load reports as 0, so it tokenised every text twice
    (half the round trip's time). Without a BOS a text has at most one token per byte."""

    def __init__(self, path: Path):
        from llama_cpp import llama_cpp as C

        self.llm = load_llama(path, vocab_only=True, verbose=False)
        self._vocab = C.llama_model_get_vocab(self.llm.model)

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        from llama_cpp import llama_cpp as C

        room = len(text) + 2  # the BOS and EOS a template may ask llama.cpp to add
        buf = (C.llama_token * room)()
        n = C.llama_tokenize(self._vocab, text, len(text), buf, room, add_bos, special)
        if n < 0:
            raise RuntimeError(f"llama_tokenize wanted {-n} tokens for {len(text)} bytes")
        return buf[:n]

    def detokenize(self, ids: list[int], special: bool = True) -> bytes:
        return self.llm.detokenize(ids, special=special)

    def close(self) -> None:
        self.llm.close()


@contextmanager
def open_vocabs(paths: dict[str, Path]) -> Iterator[dict[str, Vocab]]:
    """Each GGUF's vocabulary alone (no weights), for the round trip."""
    vocabs: dict[str, Vocab] = {}
    try:
        for key, path in paths.items():
            vocabs[key] = Vocab(path)
        yield vocabs
    finally:
        for vocab in vocabs.values():
            vocab.close()


def gguf_logits(llm: Any, ids: list[int], start: int) -> np.ndarray:
    """The GGUF's logits at positions start-1 .. len(ids)-1, where the answer is predicted.
    The context keeps what the last row shares with this one (the system turn), as eval's
    chat completions keep it; the prompt's other positions get no LM head
    (tuneforge.llama_private.logits_from)."""
    held = llm.input_ids[: llm.n_tokens].tolist()
    return logits_from(llm, ids, start - 1, keep=min(first_difference(held, ids), start - 1))


# ---------------------------------------------------------------- tokenizer round trip

def first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _pieces(ids: list[int], at: int, piece) -> str:
    lo, hi = max(0, at - CONTEXT), at + CONTEXT + 1
    shown = [(">>" if i == at else "") + repr(piece(t)) + ("<<" if i == at else "")
             for i, t in enumerate(ids[lo:hi], lo)]
    return ("... " if lo else "") + " ".join(shown) + (" ..." if hi < len(ids) else "")


def mismatch(item: Text, key: str, tok: Any, llm: Any, want: list[int], got: list[int],
             also: list[str] | None = None) -> str:
    """`also`: the GGUFs whose tokenizer bytes equal `key`'s (so they split the text the same)."""
    at = first_difference(want, got)
    char = len(tok.decode(want[:at]))  # where in the text the two splits part
    near = item.text[max(0, char - 40): char + 40]
    same = f" (and {', '.join(also)}: the same tokenizer bytes)" if also else ""
    return (f"{item.where}: the HF tokenizer and the {key} GGUF's vocabulary{same} split the rendered text "
            f"differently from token {at} (HF {len(want)} tokens, GGUF {len(got)}): "
            f"HF {_pieces(want, at, lambda t: tok.decode([t]))} vs "
            f"GGUF {_pieces(got, at, lambda t: llm.detokenize([t], special=True).decode('utf-8', 'replace'))}; "
            f"text there: {near!r}")


def round_trip(tok: Any, llms: dict[str, Any], texts: Iterable[Text], vocab: dict[str, str] | None = None) -> int:
    """Check every text on every GGUF's vocabulary; raise TokenizerMismatch naming the first
    text that differs and how many do (all are checked: one count says whether it is a corner
    or the rule). Returns how many texts were checked. `vocab`: each GGUF's
    gguf_tools.tokenizer_digest. GGUFs with the same digest hold the same tokenizer byte for
    byte, so a text is tokenised once per digest, by the first GGUF that holds it (quantize
    copies the converter's vocabulary: one digest, usually); a GGUF whose vocabulary differs
    in any byte is tokenised on its own."""
    groups: dict[str, list[str]] = {}
    for key in (vocab if vocab is not None else llms):  # with `vocab`, llms needs the first GGUF of each digest only
        groups.setdefault(vocab[key] if vocab is not None else key, []).append(key)
    n, bad = 0, []
    for item in texts:
        want = hf_ids(tok, item.text)
        for keys in groups.values():
            llm = llms[keys[0]]
            got = llm.tokenize(item.text.encode("utf-8"), add_bos=False, special=True)
            if got != want:
                bad.append(mismatch(item, keys[0], tok, llm, want, got, also=keys[1:]))
                break
        n += 1
    if bad:
        raise TokenizerMismatch(f"{len(bad)} of {n} texts tokenise differently; the first: {bad[0]}")
    return n


# ---------------------------------------------------------------- logit fidelity

def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)  # float64: KL of ~1e-7 is below float32's noise
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Reference:
    """One row's reference distributions (the merged model's log-probs), with what every GGUF
    is compared against computed once: the probabilities and the argmax."""
    logp: np.ndarray
    p: np.ndarray
    top: np.ndarray

    @classmethod
    def of(cls, logp: np.ndarray) -> Reference:
        return cls(logp, np.exp(logp), logp.argmax(axis=-1))


def kl_and_agreement(ref: Reference, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position: KL(ref || other) from ref's log-probs, and whether the argmaxes agree."""
    other = log_softmax(logits)
    kl = (ref.p * (ref.logp - other)).sum(axis=-1)
    return np.maximum(kl, 0.0), ref.top == other.argmax(axis=-1)  # rounding can dip below 0


@dataclass
class Tally:
    """One GGUF's per-token figures over every row so far."""
    kl: list[np.ndarray] = field(default_factory=list)
    agree: list[np.ndarray] = field(default_factory=list)
    worst: tuple[float, str] = (-1.0, "")  # the largest KL of any token, and its row

    def add(self, row_id: str, kl: np.ndarray, agree: np.ndarray) -> None:
        self.kl.append(kl)
        self.agree.append(agree)
        if kl.size and float(kl.max()) > self.worst[0]:
            self.worst = (float(kl.max()), row_id)

    def summary(self) -> dict[str, Any]:
        kl, agree = np.concatenate(self.kl), np.concatenate(self.agree)
        return {"kl_mean": sig(kl.mean()), "kl_p99": sig(np.quantile(kl, 0.99)), "kl_max": sig(kl.max()),
                "kl_max_row": self.worst[1], "top1": round(float(agree.mean()), 6),
                "tokens": int(kl.size), "rows": len(self.kl)}


def sig(x: float) -> float:
    return float(f"{float(x):.6g}")  # 6 significant digits: KL spans 1e-9 (f16) to 1e-1 (Q4)


def hf_model(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()


def hf_logits(model: Any, ids: list[int], first: int = 0) -> np.ndarray:
    """The merged model's logits at positions first .. len(ids)-1, one forward pass over all
    of `ids` (logits_to_keep: the LM head, 49k wide, runs only where they are read)."""
    import torch

    with torch.inference_mode():
        return model(torch.tensor([ids]), logits_to_keep=len(ids) - first).logits[0].float().numpy()


# ---------------------------------------------------------------- riding on eval's decoders

# Part of every memo key: entries in another format are a miss, never misread.
MEMO_FORMAT = 1


class KLMemo:
    """One GGUF's teacher-forced figures on one row (per answer token: KL and top-1 agreement),
    memoised as eval's answers are (tuneforge.predcache, machine-local, under eval's memo), so
    an eval rerun that decodes nothing forces nothing either. Each entry holds its key and a
    checksum over key and figures; an entry that fails either check is discarded, counted and
    computed again. Floats are stored as JSON numbers, which round-trip float64 exactly."""

    def __init__(self, root: Path | None):
        self.root = root  # None: off, every row is forced
        self.corrupt = 0

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self.root is None or not self._path(key).is_file():
            return None
        import json

        from tuneforge.io import sig_hash
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
            ok = entry["key"] == key and entry["sha256"] == sig_hash([key, entry["kl"], entry["agree"]])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            ok = False
        if ok:
            return np.array(entry["kl"], dtype=np.float64), np.array(entry["agree"], dtype=bool)
        self.corrupt += 1
        log.warning("fidelity memo: %s fails its checksum; discarded, forcing again", self._path(key))
        self._path(key).unlink(missing_ok=True)
        return None

    def put(self, key: str, kl: np.ndarray, agree: np.ndarray) -> None:
        if self.root is None:
            return
        from tuneforge.io import sig_hash, write_json

        figures = [float(x) for x in kl], [bool(x) for x in agree]
        write_json(self._path(key), {"key": key, "kl": figures[0], "agree": figures[1],
                                     "sha256": sig_hash([key, *figures])})


class Check:
    """The teacher-forced KL check on eval's own decoders: a row is teacher-forced right
    after eval answered it, on the same llama.cpp context, so the prompt's KV cache entries are
    reused (logits_from keeps them) and only the answer's positions are computed; the logits are
    those of a fresh pass, bit for bit (tests/test_fidelity.py). The merged model's reference
    for a row is computed when a GGUF first needs it (the memo may answer every GGUF), and kept
    for the others. `seconds`: the time the check itself took (references, forced passes, KL)."""

    def __init__(self, rows: list[Forced], merged: Path, merged_sha256: str, memo: KLMemo, n_threads: int):
        self.rows, self.merged, self.memo = rows, merged, memo
        self.tallies: dict[str, Tally] = {}
        self.seconds, self.hits, self.forced = 0.0, 0, 0
        self.round_trip_s = 0.0  # the tokenizer round trip's time, when the caller ran one
        self._model: Any = None
        self._refs: dict[int, Reference] = {}
        self._key = {"format": MEMO_FORMAT, "reference": merged_sha256, "n_threads": n_threads,
                     "toolchain": toolchain(["llama_cpp_python", "transformers", "torch"]),
                     "code": code_sha256(sys.modules[__name__], sys.modules[logits_from.__module__])}

    def reference(self, i: int) -> Reference:
        if i not in self._refs:
            if self._model is None:
                self._model = hf_model(self.merged)
            row = self.rows[i]
            # the logits at position k predict token k+1: from start-1 to the second-to-last id
            self._refs[i] = Reference.of(log_softmax(hf_logits(self._model, row.ids, row.start - 1)[:-1]))
        return self._refs[i]

    def measure(self, key: str, sha256: str, llm: Callable[[], Any], i: int) -> None:
        """Row i on the GGUF `key` (its SHA-256; `llm()` gives its open llama.cpp model, loaded
        only if the memo misses), added to that GGUF's tally."""
        import time

        from tuneforge.io import sig_hash

        started, row = time.monotonic(), self.rows[i]
        memo_key = sig_hash({**self._key, "gguf": sha256, "ids": row.ids, "start": row.start})
        got = self.memo.get(memo_key)
        if got is None:
            model = llm()
            if len(row.ids) > model.n_ctx():
                raise ValueError(f"fidelity row {row.row_id}: prompt and gold answer are {len(row.ids)} tokens, more "
                                 f"than the {key} GGUF's context (eval.n_ctx {model.n_ctx()})")
            ref = self.reference(i)
            scores = gguf_logits(model, row.ids, row.start)  # positions from start-1, as ref's
            if scores.shape[-1] != ref.logp.shape[-1]:
                raise ValueError(f"the {key} GGUF has {scores.shape[-1]} vocabulary entries, the merged model "
                                 f"{ref.logp.shape[-1]}: not the same model")
            got = kl_and_agreement(ref, scores[: len(ref.logp)])
            self.memo.put(memo_key, *got)
            self.forced += 1
        else:
            self.hits += 1
        self.tallies.setdefault(key, Tally()).add(row.row_id, *got)
        self.seconds += time.monotonic() - started

    def figures(self) -> dict[str, dict]:
        return {key: t.summary() for key, t in self.tallies.items()}

    def close(self) -> None:
        self._model, self._refs = None, {}


def check_bounds(cfg: dict, types: list[str], params_path: Path | str) -> None:
    """Every GGUF measured has both bounds (params fidelity.max_kl_mean / max_kl_p99), before
    any model is loaded."""
    from tuneforge import config

    for key in ("max_kl_mean", "max_kl_p99"):
        missing = [t for t in types if t not in cfg[key]]
        if missing:
            where = config.key_line(params_path, ["fidelity", key])
            raise SystemExit(f"{params_path}:{where}: fidelity.{key} has no bound for {', '.join(missing)} "
                             "(convert.outtype and every quantize.types entry need one)")


def converter_failure(name: str, key: str, fig: dict, where: Path | str) -> str | None:
    """Why the converter's output is not the merged model (its figures over their bounds), or None."""
    if fig["passed"]:
        return None
    return (f"the converter's output ({name}) is not the merged model: teacher-forced KL mean "
            f"{fig['kl_mean']:.3g} (fidelity.max_kl_mean.{key} {fig['max_kl_mean']:g}), p99 {fig['kl_p99']:.3g} "
            f"(fidelity.max_kl_p99.{key} {fig['max_kl_p99']:g}), top-1 agreement {fig['top1']:.4f} over "
            f"{fig['tokens']} answer tokens; worst row {fig['kl_max_row']}. A broken conversion breaks every "
            f"model; figures in {where}")


def verdicts(figures: dict[str, dict], cfg: dict) -> dict[str, dict]:
    """Each GGUF's figures with its bounds (params fidelity.max_kl_mean / max_kl_p99, per type)
    and whether it keeps within both."""
    out = {}
    for key, fig in figures.items():
        mean_bound, p99_bound = cfg["max_kl_mean"][key], cfg["max_kl_p99"][key]
        out[key] = {**fig, "max_kl_mean": mean_bound, "max_kl_p99": p99_bound,
                    "passed": fig["kl_mean"] <= mean_bound and fig["kl_p99"] <= p99_bound}
    return out
