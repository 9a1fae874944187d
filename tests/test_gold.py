"""The committed gold holdout and hand-labeled training rows keep their promises."""
from collections import Counter

import pytest

from tuneforge.io import read_jsonl
from tuneforge.tasks.changelog_actions.schema import ActionItem, Kind
from tuneforge.text import content_key

from .conftest import ROOT

GOLD = ROOT / "data/gold/holdout.jsonl"
HUMAN = ROOT / "data/labeled/train.jsonl"


@pytest.mark.parametrize("path", [GOLD, HUMAN], ids=["gold", "human"])
def test_rows_validate_and_are_unique(path):
    rows = list(read_jsonl(path))
    assert rows
    keys = Counter(content_key(r["text"]) for r in rows)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:3]
    for row in rows:
        ActionItem.model_validate(row["label"])
        # the gold and the first 240 training rows name the kind rule that decided; rows imported
        # through make review name who labeled them instead (labeler, contract), a rule if given
        assert 1 <= row["rule"] <= 10 if "rule" in row or path == GOLD else row["labeler"]
        assert row["text"] and row["product"]


def test_gold_is_stratified_and_diverse():
    rows = list(read_jsonl(GOLD))
    assert len(rows) >= 300
    kinds = Counter(r["label"]["kind"] for r in rows)
    assert all(kinds[k.value] >= 15 for k in Kind), kinds
    assert len({r["format"] for r in rows}) >= 5
    assert len({r["product"] for r in rows}) >= 20


def test_gold_and_training_rows_are_disjoint():
    gold = {content_key(r["text"]) for r in read_jsonl(GOLD)}
    assert not gold & {content_key(r["text"]) for r in read_jsonl(HUMAN)}


def test_built_exports_hold_no_gold_entry():
    """Checks the real build's exports, when this checkout has them (dvc repro or dvc pull)."""
    exports = sorted((ROOT / "data/changelog-actions/exports").glob("*/*.jsonl"))
    if not exports:
        pytest.skip("no exports in this checkout: run dvc repro or dvc pull")
    gold = {content_key(r["text"]) for r in read_jsonl(GOLD)}
    for path in exports:
        for row in read_jsonl(path):
            if "messages" in row:
                text = row["messages"][1]["content"].split("Entry: ", 1)[1]
            elif "prompt" in row:
                text = row["prompt"][1]["content"].split("Entry: ", 1)[1]
            else:
                text = row["text"]
            assert content_key(text) not in gold, (path, row["id"])
