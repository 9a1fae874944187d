"""tools.compare_answers: two builds' answers on the same gold rows, the sign test between them."""
from __future__ import annotations

import pytest

from tools.compare_answers import compare


def rows(kinds: list[str], gold: list[str]) -> list[dict]:
    return [{"text": f"entry {i}", "gold": {"kind": g}, "kind": k}
            for i, (k, g) in enumerate(zip(kinds, gold, strict=True))]


def test_second_better_on_the_rows_they_split():
    gold = ["fix"] * 8
    first = rows(["fix", "fix", "docs", "docs", "docs", "docs", "docs", "docs"], gold)
    second = rows(["fix", "docs", "fix", "fix", "fix", "fix", "fix", "docs"], gold)
    r = compare(first, second)
    assert (r["first"], r["second"], r["first_only"], r["second_only"]) == (0.25, 0.75, 1, 5)
    assert r["p_second_better"] == pytest.approx(7 / 64)   # P(>= 5 of 6 by chance)
    assert compare(second, first)["p_second_better"] == pytest.approx(63 / 64)


def test_different_gold_rows_are_refused():
    gold = ["fix", "docs"]
    with pytest.raises(SystemExit, match="line 2: the two files hold different gold rows"):
        compare(rows(["fix", "docs"], gold), rows(["fix", "docs"], ["fix", "fix"]))
    with pytest.raises(SystemExit, match="1 rows against 2"):
        compare(rows(["fix"], ["fix"]), rows(["fix", "docs"], gold))
