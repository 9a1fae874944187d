"""A memo of model answers, so an eval rerun decodes only what it has not seen.

Decoding is greedy and deterministic, so an answer is a function of the model file's
SHA-256, the decoder (its package version and tuneforge's own decoding code, see
decode.code_sha256) and its settings, and the prompt. The key hashes all of them; a change to
any one is a miss. Each entry stores its key and a checksum of key and answer; an entry
that fails either check on read (edited, cut short, copied under another key) is
discarded, counted and decoded again, never served. An entry stores the answer with its
`closed_by_decoder` flag and its `steered` count (decode.Answer), all under the checksum. The
memo is machine-local (under paths.cache_dir, like pip's cache), never a DVC output: deleting it only costs time. A
clean build starts without it, so `full_build_s` in the benchmark measures real decoding.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.decode import Answer
from tuneforge.io import sig_hash, write_json

log = logging.getLogger(__name__)

# Part of every key: a memo written in another entry format is a miss, never misread.
# 2: entries carry closed_by_decoder (format 1 had the answer text alone). 3: and steered.
FORMAT = 3


def _checksum(key: str, answer: str, closed: bool, steered: int) -> str:
    return sig_hash({"key": key, "answer": answer, "closed_by_decoder": closed, "steered": steered})


class PredictionCache:
    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None  # None: caching off, every prompt decodes
        self.hits = 0
        self.misses = 0
        self.corrupt = 0  # entries found but discarded (they were decoded again)

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def _read(self, key: str) -> Answer | None:
        """The stored answer for `key`, or None; a bad entry is removed and counted."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            answer, closed, steered = entry["answer"], entry["closed_by_decoder"], entry["steered"]
            ok = (entry["key"] == key and isinstance(answer, str) and isinstance(closed, bool)
                  and type(steered) is int and entry["sha256"] == _checksum(key, answer, closed, steered))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            ok = False
        if ok:
            return Answer(answer, closed, steered)
        self.corrupt += 1
        log.warning("eval cache: %s fails its checksum; discarded, decoding again", path)
        path.unlink(missing_ok=True)
        return None

    def answers(self, model: dict[str, Any], prompts: list[Any],
                decode: Callable[[list[Any]], list[Answer]]) -> list[Answer]:
        """Answers for `prompts`; `decode` runs once, on the prompts not in the memo.
        `model` names everything the answers depend on besides the prompt."""
        keys = [sig_hash({"format": FORMAT, "model": model, "prompt": p}) for p in prompts]
        found: dict[int, Answer] = {}
        if self.root is not None:
            for i, key in enumerate(keys):
                answer = self._read(key)
                if answer is not None:
                    found[i] = answer
        missing = [i for i in range(len(prompts)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            fresh = decode([prompts[i] for i in missing])
            for i, answer in zip(missing, fresh, strict=True):  # one answer per prompt
                found[i] = answer
                if self.root is not None:
                    text, closed, steered = answer
                    write_json(self._path(keys[i]), {"key": keys[i], "answer": text, "closed_by_decoder": closed,
                                                     "steered": steered,
                                                     "sha256": _checksum(keys[i], text, closed, steered)})
        return [found[i] for i in range(len(prompts))]
