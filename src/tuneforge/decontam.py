"""Gold decontamination: which texts are near-duplicates of a gold holdout entry (issue 17).

Texts are compared as word sequences: NFKC, case-folded, split on every non-word
character, the folding `text.content_key` hashes. A text's score against a gold entry
is the larger of

* edit similarity  1 - lev(gold, text) / max(len): word-level Levenshtein, so one
  substituted, inserted or deleted word costs one word wherever it sits and however
  long it is (a 5-word entry with one word changed scores 0.8, a 16-word one 0.94);
* containment      1 - semi(gold, text) / len(gold): the gold entry found inside a
  longer text with that few edits, counted only for gold entries of at least
  `min_contained_words` words (a 3-word entry sits inside many unrelated ones).

Why not the measures tried first, on the real snapshot: word 3-shingle Jaccard (the
old filter) loses three shingles per edited word, 0.62 for a 3-word insertion in a
14-word entry; character 5-gram Dice scores a one-word edit of a 5-word entry 0.51-0.8
depending on the word's length, while unrelated 2-word entries sharing one long word
("SIMD optimizations" / "Memory optimizations") score 0.65.

Why own code: rapidfuzz computes Levenshtein on sequences but has no index, and
comparing every row with every gold entry (18M pairs a build) in Python takes
minutes. A prefix filter (Bayardo et al. 2007, "Scaling up all pairs similarity
search") finds every pair scoring at least `floor` while comparing few of them.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

from tuneforge.text import content_key

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split()


def tagged(ws: list[str]) -> set[str]:
    """The words as a set with repeats numbered ("the#1", "the#2"): set intersection
    is then multiset intersection, an upper bound on the matches of any alignment."""
    seen: dict[str, int] = {}
    out = set()
    for w in ws:
        n = seen[w] = seen.get(w, 0) + 1
        out.add(f"{w}#{n}")
    return out


def levenshtein(a: list[str], b: list[str], free_ends: bool = False) -> int:
    """Word edits turning `a` into `b`; with free_ends, into the best substring of `b`."""
    prev = [0] * (len(b) + 1) if free_ends else list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return min(prev) if free_ends else prev[-1]


@dataclass(frozen=True)
class Match:
    gold: int  # index into the gold texts
    score: float
    how: str  # "edit" | "contained"


class GoldMatcher:
    """Every gold entry a text scores at least `floor` against (floor <= threshold).

    Upper bound used to skip pairs: any alignment matches at most k = |tagged(g) &
    tagged(t)| words, so both scores are at most k / len(g). A text reaching `floor`
    therefore shares one of the first len(g) - ceil(floor * len(g)) + 1 words of g in
    a fixed order (rarest in gold first); only those are indexed.
    """

    def __init__(self, gold_texts: list[str], floor: float, min_contained_words: int):
        if not 0 < floor <= 1:
            raise ValueError(f"floor must be in (0, 1], got {floor}")
        self.floor, self.min_contained = floor, min_contained_words
        self.words = [words(t) for t in gold_texts]
        self.tags = [tagged(ws) for ws in self.words]
        df = Counter(x for tags in self.tags for x in tags)
        self.index: dict[str, list[int]] = defaultdict(list)
        for i, tags in enumerate(self.tags):
            n = len(tags)
            prefix = n - math.ceil(floor * n - 1e-9) + 1
            for x in sorted(tags, key=lambda x: (df[x], x))[:prefix]:
                self.index[x].append(i)

    def matches(self, text: str) -> list[Match]:
        """Gold entries scoring >= floor, best first (ties: lower gold index first)."""
        ws = words(text)
        tags = tagged(ws)
        cands = {i for x in tags for i in self.index.get(x, ())}
        out = []
        for i in sorted(cands):
            g = self.words[i]
            k = len(self.tags[i] & tags)
            best = None
            if k / max(len(g), len(ws)) >= self.floor:
                best = Match(i, 1 - levenshtein(g, ws) / max(len(g), len(ws)), "edit")
            if len(g) >= self.min_contained and len(ws) > len(g) and k / len(g) >= self.floor:
                score = 1 - levenshtein(g, ws, free_ends=True) / len(g)
                if best is None or score > best.score:
                    best = Match(i, score, "contained")
            if best is not None and best.score >= self.floor:
                out.append(best)
        return sorted(out, key=lambda m: (-m.score, m.gold))


class GoldCheck:
    """Whether a text may be labeled for training: not a gold entry, nor a near-duplicate of one
    (export's measure at its threshold). The gold keys and the matcher are built once; review's
    queue and import and evidence's replay answers share it."""

    def __init__(self, gold_texts: list[str], threshold: float, min_contained_words: int):
        self.keys = {content_key(g) for g in gold_texts}
        self.threshold = threshold
        self.matcher = GoldMatcher(gold_texts, threshold, min_contained_words)

    def why_not(self, text: str) -> str | None:
        if content_key(text) in self.keys:
            return "is a gold entry"
        best = next(iter(self.matcher.matches(text)), None)
        if best is not None and best.score >= self.threshold:
            return f"near-duplicate of gold entry {best.gold + 1} ({best.how} similarity {best.score:.2f})"
        return None
