"""Fidelity: does every GGUF compute what the merged HF model computes? (issue 20, items 1-2)

No generation, two checks:

- Tokenizer round trip (`round_trip`): llama.cpp tokenises with the vocabulary and merges the
  converter wrote into the GGUF, not with tokenizer.json. So each rendered text (the chat
  template's prompt, as eval renders it, and whole conversations) must give the same ids from
  the merged model's HF tokenizer and from every GGUF's own vocabulary, tokenised as eval's
  chat completion tokenises its prompt (llama-cpp-python: no BOS added, since the template
  holds its own specials; special tokens parsed). A lost or reordered merge shows here, naming
  the row and the first token that differs, instead of as a user's text that decodes oddly.
- Logit fidelity (`compare`): each eval row's prompt followed by its gold answer and the
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.chat_text import Text, render
from tuneforge.decode import prompts
from tuneforge.llama_private import load_llama, logits_from
from tuneforge.names import prediction_id
from tuneforge.tasks import Task

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
    """Every GGUF at once (a row goes through all of them while its HF log-probs are in
    memory), with logits kept for every position; n_batch = n_ctx, so a row is one decode."""
    llms: dict[str, Any] = {}
    threads = n_threads or os.cpu_count() or 1  # 0 = every core, as eval (llama.cpp's own default is half)
    try:
        for key, path in paths.items():
            llms[key] = load_llama(path, n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, n_threads_batch=threads,
                                   logits_all=True, seed=0, verbose=False)
        yield llms
    finally:
        for llm in llms.values():
            llm.close()


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
    for key in llms:
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


def compare(model: Any, llms: dict[str, Any], rows: list[Forced]) -> dict[str, dict]:
    """Teacher-forced KL(HF || GGUF) and top-1 agreement at the answer positions, per GGUF.
    Row by row: a row's Reference (answer tokens x vocabulary, float64, twice) and one GGUF's
    log-probs are the only large arrays alive, whatever the number of rows."""
    from tqdm import tqdm

    tallies = {key: Tally() for key in llms}
    for row in tqdm(rows, desc="fidelity", unit="row"):
        # the logits at position i predict token i+1: the answer's tokens are predicted from
        # start-1 (the turn opener's last token) to the second-to-last id (before end of turn)
        ref = Reference.of(log_softmax(hf_logits(model, row.ids, row.start - 1)[:-1]))
        for key, llm in llms.items():
            scores = gguf_logits(llm, row.ids, row.start)  # positions from start-1, as ref's
            if scores.shape[-1] != ref.logp.shape[-1]:
                raise ValueError(f"the {key} GGUF has {scores.shape[-1]} vocabulary entries, the merged model "
                                 f"{ref.logp.shape[-1]}: not the same model")
            tallies[key].add(row.row_id, *kl_and_agreement(ref, scores[: len(ref.logp)]))
    return {key: t.summary() for key, t in tallies.items()}


def verdicts(figures: dict[str, dict], cfg: dict) -> dict[str, dict]:
    """Each GGUF's figures with its bounds (params fidelity.max_kl_mean / max_kl_p99, per type)
    and whether it keeps within both."""
    out = {}
    for key, fig in figures.items():
        mean_bound, p99_bound = cfg["max_kl_mean"][key], cfg["max_kl_p99"][key]
        out[key] = {**fig, "max_kl_mean": mean_bound, "max_kl_p99": p99_bound,
                    "passed": fig["kl_mean"] <= mean_bound and fig["kl_p99"] <= p99_bound}
    return out
