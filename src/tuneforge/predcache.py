"""A memo of model answers, so an eval rerun decodes only what it has not seen.

Decoding is greedy and deterministic, so an answer is a function of the model file's
SHA-256, the decoder and its settings, and the prompt. The key hashes all of them;
a change to any one is a miss. The memo is machine-local (under paths.cache_dir, like
pip's cache), never a DVC output: deleting it only costs time. A clean build starts
without it, so `full_build_s` in the benchmark measures real decoding.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.io import sig_hash, write_json


class PredictionCache:
    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None  # None: caching off, every prompt decodes
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def answers(self, model: dict[str, Any], prompts: list[Any],
                decode: Callable[[list[Any]], list[str]]) -> list[str]:
        """Answers for `prompts`; `decode` runs once, on the prompts not in the memo.
        `model` names everything the answers depend on besides the prompt."""
        keys = [sig_hash({"model": model, "prompt": p}) for p in prompts]
        found: dict[int, str] = {}
        if self.root is not None:
            for i, key in enumerate(keys):
                path = self._path(key)
                if path.is_file():
                    found[i] = json.loads(path.read_text(encoding="utf-8"))["answer"]
        missing = [i for i in range(len(prompts)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            fresh = decode([prompts[i] for i in missing])
            for i, answer in zip(missing, fresh, strict=True):  # one answer per prompt
                found[i] = answer
                if self.root is not None:
                    write_json(self._path(keys[i]), {"answer": answer})
        return [found[i] for i in range(len(prompts))]
