"""Text normalisation shared by dedupe, gold exclusion and leakage checks."""
from __future__ import annotations

import hashlib
import re
import unicodedata

_WS = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def content_key(text: str) -> str:
    """sha256 of the text with case, punctuation, markup and spacing removed.

    NFKC folds Unicode compatibility forms (full-width letters, ligatures) so a
    confusable copy of a gold entry still collides with it.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return hashlib.sha256(_NON_WORD.sub("", folded).encode("utf-8")).hexdigest()


def word_shingles(text: str, n: int = 3) -> set[str]:
    words = _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split()
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
