"""Rendered chat text that more than one stage needs: whole SFT conversations as training
renders them (the fidelity stage's tokenizer round trip, quantize's importance-matrix text).
Kept apart from tuneforge.fidelity so that quantize depends on these few lines only, not on
the decoders, grammar and metrics fidelity pulls in (each one a dvc.yaml dep of quantize)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.io import read_jsonl


@dataclass(frozen=True)
class Text:
    """One rendered text, and where it came from (for an error message)."""
    where: str  # e.g. "data/gold/holdout.jsonl row 3f2a... (prompt)"
    text: str


def render(tok: Any, messages: list[dict], *, prompt: bool) -> str:
    """The chat template's text: a prompt ending in the assistant's turn opener (`prompt`,
    eval's add_generation_prompt) or a whole conversation (as training renders a row)."""
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


def train_texts(tok: Any, path: Path, limit: int) -> Iterator[Text]:
    """The first `limit` (0 = all) SFT rows, each whole conversation as training renders it."""
    for n, row in enumerate(read_jsonl(path), 1):
        if limit and n > limit:
            return
        yield Text(f"{path}:{n} row {row.get('id')}", render(tok, row["messages"], prompt=False))
