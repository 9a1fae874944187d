"""The data half's set work in DuckDB (issue 23 item 1) answers as the plain-Python code it
replaced: the gold anti-join against GoldMatcher text by text, the stratified split and the
review draw against the loops they were (kept here as the references)."""
from __future__ import annotations

import hashlib
import random
from collections import defaultdict

import pytest

from tuneforge.dataset_sql import GoldSets, round_robin_draw, stratified_split
from tuneforge.decontam import GoldMatcher
from tuneforge.io import read_jsonl
from tuneforge.text import content_key

from .conftest import ROOT


def seeded_unit(seed: int, *parts: str) -> float:  # export's draw, as it was
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def variants(text: str, rng: random.Random) -> list[str]:
    """Near and far copies of a gold text: one word dropped, swapped or added, text around it,
    folded forms (case, full-width, ligature, accents) that only Python's NFKC folding sees."""
    ws = text.split()
    out = [text, text.upper(), "  " + text + " !!", "Also: " + text + " and more words after it here",
           text.replace("a", "\uff41"), text.replace("fi", "\ufb01"), "caf\u00e9 " + text]
    if len(ws) > 2:
        i = rng.randrange(len(ws))
        out += [" ".join(ws[:i] + ws[i + 1:]), " ".join(ws[:i] + ["zzz"] + ws[i + 1:]),
                " ".join(ws[:i] + ["extra"] + ws[i:]), " ".join(ws[: len(ws) // 2])]
    return out


@pytest.fixture(scope="module")
def gold() -> list[str]:
    return [r["text"] for r in read_jsonl(ROOT / "data/gold/holdout.jsonl")]


@pytest.mark.parametrize("floor, min_contained", [(0.5, 10), (0.75, 10), (0.75, 4), (1.0, 1)])
def test_gold_sets_answer_like_the_matcher_text_by_text(gold, floor, min_contained):
    rng = random.Random(floor)
    texts = [v for g in rng.sample(gold, 60) for v in variants(g, rng)]
    texts += [r["text"] for r in read_jsonl(ROOT / "data/labeled/train.jsonl")][:400]  # unrelated rows
    texts += ["", "!!!", "the the the the", "\u00e9\u00e9 \u00e9"]
    matcher = GoldMatcher(gold, floor, min_contained)
    keys = [content_key(g) for g in gold]
    got = GoldSets(matcher, keys).check(texts)
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    want = [(first.get(content_key(t)), matcher.matches(t)) for t in texts]
    assert got == want
    assert sum(1 for e, _ in got if e is not None) > 60 and sum(1 for _, m in got if m) > 100


def reference_split(rows, seed, fraction):  # export.split_strata as it was, on (id, class, product)
    strata = defaultdict(list)
    for i, (rid, cls, product) in enumerate(rows):
        strata[(cls, product)].append((i, rid))
    train, valid = [], []
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda m: seeded_unit(seed, "split", m[1]))
        n_valid = round(len(members) * fraction)
        valid += members[:n_valid]
        train += members[n_valid:]
    order = lambda m: seeded_unit(seed, "order", m[1])  # noqa: E731
    return [i for i, _ in sorted(train, key=order)], [i for i, _ in sorted(valid, key=order)]


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.25, 0.5, 1.0])
def test_stratified_split_matches_the_python_split(fraction):
    """Strata of 2 and 6 rows at 0.25 put n x fraction on .5: Python rounds half to even."""
    rng = random.Random(7)
    rows = [(f"{rng.getrandbits(64):016x}", rng.choice("abc"), rng.choice(["p", "q", "r", "sé"]))
            for _ in range(500)]
    rows += [(f"id{i}", "x", "two") for i in range(2)] + [(f"id{i}", "x", "six") for i in range(6)]
    rows += [rows[0], rows[1]]  # a repeated id: ties fall where the stable sort puts them
    assert stratified_split(rows, 3, fraction) == reference_split(rows, 3, fraction)


def reference_draw(rows, n, seed):  # review.draw as it was, on (id, class, product)
    def rank(key):
        return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()

    def round_robin(groups):
        out, groups = [], [list(g) for g in groups]
        while any(groups):
            out += [g.pop(0) for g in groups if g]
        return out

    by_class = defaultdict(lambda: defaultdict(list))
    for i, (rid, cls, product) in enumerate(rows):
        by_class[cls][product].append((i, rid))
    classes = [round_robin([sorted(members, key=lambda m: rank(m[1]))
                            for _, members in sorted(products.items(), key=lambda kv: rank(kv[0]))])
               for _, products in sorted(by_class.items(), key=lambda kv: rank(kv[0]))]
    return [i for i, _ in round_robin(classes)[:n]]


@pytest.mark.parametrize("n", [0, 1, 17, 400, 10_000])
def test_round_robin_draw_matches_the_python_draw(n):
    rng = random.Random(n)
    rows = [(f"r{rng.getrandbits(32)}", rng.choice(["fix", "unknown", "docs", "None"]),
             rng.choice(["", "git", "vim", "curl", "zsh"])) for _ in range(900)]
    rows += [(rows[3][0], rows[3][1], rows[3][2])]
    assert round_robin_draw(rows, n, 11) == reference_draw(rows, n, 11)
