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
    """Word edits turning `a` into `b`; with free_ends, into the best substring of `b`.

    The unit-cost edit distance, bit-parallel (Myers 1999, "A fast bit-vector algorithm for
    approximate string matching based on dynamic programming", in Hyyrö's formulation): one
    column of the DP over `a` is a pair of bit vectors (Python ints), and a word of `b`
    advances it in a dozen integer operations, whatever len(a). The plain DP (kept in
    tests/test_decontam.py as the reference, compared on random word lists in both modes)
    took export 12 s for commit-messages' 2,000 diffs, hundreds of words each.
    Why own code: rapidfuzz's Levenshtein takes word sequences but has no free-ends
    (semi-global) mode, which containment needs; one algorithm serves both modes."""
    if not free_ends and len(a) < len(b):
        a, b = b, a  # symmetric: the longer one in the bit vectors, the shorter one looped over
    m = len(a)
    if m == 0:
        return 0 if free_ends else len(b)
    peq: dict[str, int] = {}  # word -> the positions of `a` holding it, as bits
    for i, x in enumerate(a):
        peq[x] = peq.get(x, 0) | (1 << i)
    mask, high = (1 << m) - 1, 1 << (m - 1)
    pv, mv, score = mask, 0, m  # vertical deltas all +1: column 0 is 0, 1, ..., m
    best = score
    for y in b:
        eq = peq.get(y, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        # row 0 of the DP: 0, 1, 2, ... (a +1 step shifted in) or, with free ends, all 0
        ph = ((ph << 1) | (0 if free_ends else 1)) & mask
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
        if score < best:
            best = score
    return best if free_ends else score


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
