"""tools.kind_audit: a seeded draw per labeler kind, and each kind's precision weighted by its
share of the accepted rule labels."""
from collections import Counter

import pytest

from tools.kind_audit import accepted_rule_records, draw, report
from tuneforge.io import write_jsonl
from tuneforge.text import content_key


class NoGold:
    def why_not(self, text):
        return "near gold" if "gold" in text else None


def rec(i, kind, text=None, category="accepted", source="rules"):
    return {"id": f"id{i}", "text": text or f"entry {i}", "hint": None, "product": "p", "version": None,
            "category": category, "label_source": source, "label": {"kind": kind}, "rule": 5}


def test_draw_takes_n_per_kind_in_a_seeded_order_and_skips_labeled_and_gold_texts():
    records = [rec(i, "fix" if i % 2 else "feature") for i in range(20)] + [rec(99, "fix", "a gold text")]
    exclude = {content_key("entry 1")}
    one = draw(records, 3, seed=7, exclude=exclude, gold=NoGold())
    assert draw(list(reversed(records)), 3, seed=7, exclude=exclude, gold=NoGold()) == one  # input order is irrelevant
    assert draw(records, 3, seed=8, exclude=exclude, gold=NoGold()) != one
    assert Counter(s["labeler_kind"] for s in one) == {"feature": 3, "fix": 3}
    assert not {"entry 1", "a gold text"} & {s["text"] for s in one}
    assert all(s["rule"] == 5 for s in one)
    assert {s["labeler_kind"] for s in draw(records, 3, 7, exclude, NoGold(), kinds={"fix"})} == {"fix"}


def test_only_accepted_rule_labels_count_once_per_text(tmp_path):
    path = tmp_path / "scored.jsonl"
    write_jsonl(path, [rec(1, "fix"), rec(2, "fix", "entry 1"), rec(3, "fix", category="needs_human_review"),
                       rec(4, "fix", source="human")])
    assert [r["id"] for r in accepted_rule_records(path)] == ["id1"]


def test_report_counts_each_kinds_precision_and_weights_by_population():
    sample = [{"id": "a", "labeler_kind": "fix"}, {"id": "b", "labeler_kind": "fix"},
              {"id": "c", "labeler_kind": "feature"}, {"id": "d", "labeler_kind": "feature"}]
    labeled = {"a": {"kind": "fix"}, "b": {"kind": "unknown"}, "c": {"kind": "feature"}, "d": {"kind": "feature"}}
    twice = [{"id": "a", "label": {"kind": "fix", "severity": "low"}},
             {"id": "c", "label": {"kind": "docs", "severity": "low"}}]
    out = report(sample, labeled, Counter(fix=3, feature=1), (twice, twice))
    assert out["kinds"]["fix"]["precision"] == 0.5
    assert out["kinds"]["fix"]["annotators_said"] == {"fix": 1, "unknown": 1}
    assert out["kinds"]["feature"]["precision"] == 1.0
    assert out["overall_precision_weighted"] == 0.625  # 3/4 x 0.5 + 1/4 x 1.0
    assert out["double_labeled"] == {"rows": 2, "kind_kappa": 1.0, "kind_agreement": 1.0}
    with pytest.raises(ValueError, match="1 sampled rows have no annotator label"):
        report(sample, {k: v for k, v in labeled.items() if k != "d"}, Counter(fix=1, feature=1))
