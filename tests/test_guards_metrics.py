"""tuneforge.metrics decides whether a model is released (gate) and what the report claims.

Figures here are worked by hand from small confusion tables or taken from published Wilson
interval tables, so a wrong count, a swapped ratio or a loosened gate fails a test.
"""
from __future__ import annotations

from enum import Enum

import pytest
from pydantic import BaseModel, ValidationError

from tuneforge import metrics
from tuneforge.metrics import UNPARSED, Scored


def _six(x: float) -> bool:
    """Report figures carry 6 decimals, so `dvc metrics diff` stays stable."""
    return abs(x * 1e6 - round(x * 1e6)) < 1e-6


class _Label(BaseModel):
    kind: str
    severity: str


def _parse(text: str) -> _Label:
    return _Label.model_validate_json(text)


GOLD = {"kind": "fix", "severity": "high"}


def test_score_prediction_parsed_model_and_dict():
    s = metrics.score_prediction('{"kind": "docs", "severity": "low"}', GOLD, _parse)
    assert s == Scored("fix", "high", "docs", "low", True, None)
    s = metrics.score_prediction("ignored", GOLD, lambda t: {"kind": "fix", "severity": "high", "x": 1})
    assert s == Scored("fix", "high", "fix", "high", True, None)


class _Kind(str, Enum):
    fix = "fix"


class _EnumLabel(BaseModel):
    kind: _Kind
    severity: str


def test_score_prediction_takes_plain_strings_from_enum_labels():
    """The real task's label has str-Enum fields; in Python 3.11 str(Kind.fix) is 'Kind.fix', so a
    prediction kept as the enum would print that into reports. Scored holds the JSON value."""
    s = metrics.score_prediction("x", GOLD, lambda t: _EnumLabel(kind=_Kind.fix, severity="low"))
    assert type(s.pred_kind) is str and str(s.pred_kind) == "fix" and f"{s.pred_kind}" == "fix"


def test_score_prediction_unparsed_carries_pydantic_reason():
    s = metrics.score_prediction('{"kind": "docs"}', GOLD, _parse)
    assert (s.gold_kind, s.gold_severity, s.pred_kind, s.pred_severity, s.parsed) == \
        ("fix", "high", UNPARSED, UNPARSED, False)
    assert s.error == "severity: Field required"


def test_score_prediction_other_errors_propagate():
    def broken(text):
        raise KeyError("bug in the parser, not a bad answer")
    with pytest.raises(KeyError):
        metrics.score_prediction("x", GOLD, broken)


def test_reason_forms():
    try:
        _parse("not json")
    except ValidationError as e:
        assert metrics._reason(e).startswith("(root): Invalid JSON")
    assert metrics._reason(ValueError("first line\nsecond")) == "ValueError: first line"
    assert metrics._reason(ValueError("")) == "ValueError"
    assert metrics._reason(ValueError("y" * 500)) == "ValueError: " + "y" * 188

    class Many(ValueError):
        def errors(self):
            return [{"loc": ("a", 0), "msg": "m" * 300}, {"loc": ("b",), "msg": "second"}]
    assert metrics._reason(Many()) == ("a.0: " + "m" * 300)[:200]

    class NoLoc(ValueError):
        def errors(self):
            return [{}]
    assert metrics._reason(NoLoc()) == "(root): "


def test_ratio():
    assert metrics._ratio(1, 3) == 0.333333
    assert metrics._ratio(2, 3) == 0.666667
    assert metrics._ratio(0, 5) == 0.0
    assert metrics._ratio(3, 0) is None


@pytest.mark.parametrize("k,n,low,high", [
    (5, 10, 0.2366, 0.7634),   # published Wilson 95% interval for 5/10
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (21, 40, 0.3750, 0.6707),  # worked by hand: centre 0.5228, half-width 0.1478
    (1, 1, 0.2065, 1.0),
])
def test_wilson_ci95_matches_published_values(k, n, low, high):
    lo, hi = metrics.wilson_ci95(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    assert _six(lo) and _six(hi)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_ci95_empty():
    assert metrics.wilson_ci95(0, 0) == (None, None)


def _rows() -> list[Scored]:
    """gold -> predicted: fix 3 (2 fix, 1 docs); docs 2 (1 docs, 1 unparsed); feature 1 (fix)."""
    return [Scored("fix", "low", "fix", "low", True), Scored("fix", "high", "fix", "low", True),
            Scored("fix", "low", "docs", "low", True), Scored("docs", "low", "docs", "high", True),
            Scored("docs", "low", UNPARSED, UNPARSED, False, "bad"),
            Scored("feature", "high", "fix", "high", True)]


def test_per_class_by_hand():
    pc = metrics.per_class(_rows(), ["fix", "docs", "feature", "unknown"])
    # fix: tp 2, fp 1 (feature->fix), fn 1 (fix->docs)
    assert pc["fix"] == {"precision": 0.666667, "recall": 0.666667, "f1": 0.666667, "support": 3, "predicted": 3}
    # docs: tp 1, fp 1 (fix->docs), fn 1 (unparsed)
    assert pc["docs"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2}
    # feature: tp 0, fp 0, fn 1: precision undefined, f1 0
    assert pc["feature"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert pc["unknown"] == {"precision": None, "recall": None, "f1": 0.0, "support": 0, "predicted": 0}
    assert list(pc) == ["fix", "docs", "feature", "unknown"]


def test_per_class_f1_unequal_precision_recall():
    rows = [Scored("a", "", "a", "", True)] + [Scored("b", "", "a", "", True)] * 3 + \
        [Scored("a", "", "b", "", True)]
    pc = metrics.per_class(rows, ["a"])["a"]
    # P 1/4, R 1/2 -> F1 = 2PR/(P+R) = 1/3
    assert (pc["precision"], pc["recall"], pc["f1"]) == (0.25, 0.5, 0.333333)


def test_confusion_sorted_cells_only():
    conf = metrics.confusion(_rows())
    assert conf == {"docs": {UNPARSED: 1, "docs": 1}, "feature": {"fix": 1}, "fix": {"docs": 1, "fix": 2}}
    assert list(conf) == ["docs", "feature", "fix"]
    assert list(conf["docs"]) == [UNPARSED, "docs"]


def test_summarize_by_hand():
    s = metrics.summarize(_rows(), ["fix", "docs", "feature", "unknown"], min_support=2)
    assert s["n"] == 6
    assert s["parse_rate"] == 0.833333 and s["parse_errors"] == 1
    assert s["kind_agreement"] == 0.5  # fix, fix, docs
    assert (s["kind_agreement_ci95_low"], s["kind_agreement_ci95_high"]) == metrics.wilson_ci95(3, 6)
    assert s["severity_agreement"] == 0.5  # rows 1, 3, 6
    assert s["macro_f1_kinds"] == ["fix", "docs"]  # support >= 2
    assert s["macro_f1"] == round((0.666667 + 0.5) / 2, 6)
    assert s["unknown_precision"] is None and s["unknown_recall"] is None
    assert s["per_kind"] == metrics.per_class(_rows(), ["fix", "docs", "feature", "unknown"])
    assert s["confusion"] == metrics.confusion(_rows())
    assert set(s) == {"n", "parse_rate", "parse_errors", "kind_agreement", "kind_agreement_ci95_low",
                      "kind_agreement_ci95_high", "severity_agreement", "macro_f1", "macro_f1_kinds",
                      "unknown_precision", "unknown_recall", "per_kind", "confusion"}


def test_summarize_min_support_default_and_unknown():
    rows = [Scored("unknown", "", "unknown", "", True)] * 5 + [Scored("fix", "", "unknown", "", True)] * 4
    s = metrics.summarize(rows, ["unknown", "fix"])
    assert s["kind_agreement"] == 0.555556 and s["severity_agreement"] == 1.0  # 5 of 9; all ""
    assert s["macro_f1_kinds"] == ["unknown"]  # fix has support 4 < 5
    assert s["unknown_precision"] == 0.555556 and s["unknown_recall"] == 1.0
    assert s["macro_f1"] == metrics.per_class(rows, ["unknown"])["unknown"]["f1"]
    empty = metrics.summarize([], ["fix"])
    assert empty["n"] == 0 and empty["kind_agreement"] is None and empty["macro_f1"] is None
    assert empty["kind_agreement_ci95_low"] is None


def test_ablation_delta_and_none():
    a = {"kind_agreement": 0.8, "severity_agreement": 0.5, "parse_rate": None, "macro_f1": 0.25, "n": 9}
    b = {"kind_agreement": 0.6, "severity_agreement": 0.7, "parse_rate": 1.0, "macro_f1": 0.5, "n": 9}
    ab = metrics.ablation(a, b)
    assert ab == {
        "with_hint": {"kind_agreement": 0.8, "severity_agreement": 0.5, "parse_rate": None, "macro_f1": 0.25},
        "without_hint": {"kind_agreement": 0.6, "severity_agreement": 0.7, "parse_rate": 1.0, "macro_f1": 0.5},
        "delta": {"kind_agreement": 0.2, "severity_agreement": -0.2, "parse_rate": None, "macro_f1": -0.25},
    }
    odd = metrics.ablation(dict(a, kind_agreement=0.1234567), dict(b, kind_agreement=0.0))
    assert odd["delta"]["kind_agreement"] == 0.123457
    b["parse_rate"], a["parse_rate"] = None, 1.0
    assert metrics.ablation(a, b)["delta"]["parse_rate"] is None


def test_parity():
    assert metrics.parity([" a\n", "b", "c"], ["a", "B", "c "]) == 0.666667
    assert metrics.parity([], []) is None
    with pytest.raises(ValueError, match="parity needs equal-length outputs, got 2 and 1"):
        metrics.parity(["a", "b"], ["a"])


GATES = {"min_class_agreement": 0.6, "max_parse_errors": 1, "min_parity": 0.9}


def _summary(ka, errors, n=40, low=None, high=None):
    return {"kind_agreement": ka, "parse_errors": errors, "n": n, "kind_agreement_ci95_low": low,
            "kind_agreement_ci95_high": high}


def test_gate_passes_at_the_thresholds():
    assert metrics.gate(_summary(0.6, 1), GATES, 0.9) == []
    assert metrics.gate(_summary(0.95, 0), GATES, 1.0) == []


def test_gate_reasons_exact():
    failed = metrics.gate(_summary(0.525, 2, low=0.3736, high=0.6707), GATES, 0.5)
    assert failed == ["kind_agreement 0.525 < 0.6 (95% CI 0.37-0.67 over 40 rows)",
                      "parse_errors 2 > 1", "parity 0.500 < 0.9"]
    assert metrics.gate(_summary(0.59999, 0), GATES, None) == ["kind_agreement 0.600 < 0.6",
                                                               "parity n/a < 0.9"]
    # nothing parsed at all: kind_agreement None counts as 0, never as a pass
    assert metrics.gate(_summary(None, 0, n=0), GATES, 0.95) == ["kind_agreement 0.000 < 0.6"]
    assert metrics.gate(_summary(0.7, 0), GATES, 0.8999) == ["parity 0.900 < 0.9"]


def test_versus_counts_the_rows_only_one_gets_right_and_their_exact_sign_test():
    model = [True, True, False, False, False, True, False]
    labeler = [True, False, True, True, True, True, False]
    v = metrics.versus(model, labeler)
    assert (v["n"], v["model"], v["labeler"], v["model_only"], v["labeler_only"]) == (7, 0.428571, 0.714286, 1, 3)
    # 4 rows split 1:3 for the labeler: P(X >= 3 | 4, 1/2) = (4 + 1) / 16
    assert v["p_labeler_better"] == 5 / 16
    assert metrics.versus([True] * 5, [False] * 5)["p_labeler_better"] == 1.0  # the labeler won none
    assert metrics.versus([False] * 5, [True] * 5)["p_labeler_better"] == 1 / 32
    assert metrics.versus([True, False], [True, False])["p_labeler_better"] == 1.0  # no row split them
    with pytest.raises(ValueError, match="same rows"):
        metrics.versus([True], [True, False])


def test_labeler_behind_fails_only_where_the_labeler_leads_beyond_chance():
    from tuneforge.gates import labeler_behind

    def v(model_only, labeler_only, n=40):
        return metrics.versus([True] * model_only + [False] * labeler_only + [True] * (n - model_only - labeler_only),
                              [False] * model_only + [True] * labeler_only + [True] * (n - model_only - labeler_only))

    gates = {"max_p_labeler_better": 0.05}
    even = {"all": v(6, 6), "untouched": v(2, 3, 13), "unseen_products": v(1, 2, 9), "unseen_untouched": v(1, 1, 5)}
    assert labeler_behind(even, gates) == []
    behind = {**even, "unseen_untouched": v(0, 6, 9)}  # p = 1/64
    [reason] = labeler_behind(behind, gates, "kind")
    assert reason.startswith("rule labeler ahead on unseen_untouched rows: kind 1.000 vs 0.333 over 9 rows")
    assert labeler_behind(behind, {"max_p_labeler_better": None}) == []
    assert labeler_behind({**behind, "unseen_untouched": metrics.versus([], [])}, gates) == []  # no such rows
    # the labeler ahead only where it is in-sample (all rows, unseen products it was tuned on) fails nothing
    assert labeler_behind({**even, "all": v(0, 20), "unseen_products": v(0, 6, 9)}, gates) == []


def test_labeler_subsets_split_rows_as_the_score_stage_and_the_sft_export_do():
    from tuneforge.names import gold_subset
    from tuneforge.scoring import labeler_subsets
    from tuneforge.text import content_key

    texts = [f"Fixed crash number {i} in the parser." for i in range(12)]
    rows = [{"text": t, "product": p} for t, p in zip(texts, ["git", "tar", None] * 4, strict=True)]
    sub = labeler_subsets(rows, {"git"})
    assert sub["all"] == [True] * 12
    assert sub["unseen_products"] == [False, True, True] * 4
    assert sub["untouched"] == [gold_subset(content_key(t)) == "untouched" for t in texts]
    assert sub["unseen_untouched"] == [a and b for a, b in zip(sub["unseen_products"], sub["untouched"], strict=True)]
    assert 0 < sum(sub["unseen_untouched"]) < sum(sub["unseen_products"])
    assert 0 < sum(sub["untouched"]) < 12  # both subsets occur in 12 rows


def test_without_trained_products_the_unseen_subsets_are_left_out():
    """A by-hand eval with no SFT export (tuneforge.evaluate elsewhere) cannot know which products
    the model saw: versus_labeler leaves those two subsets out instead of calling every row unseen."""
    from tuneforge.scoring import labeler_subsets, versus_labeler
    from tuneforge.tasks import get_task

    rows = [{"text": f"Fixed crash number {i} in the parser.", "product": "git", "label": {"kind": "fix"}}
            for i in range(6)]
    assert set(labeler_subsets(rows, None)) == {"all", "untouched"}
    vs = versus_labeler(get_task("changelog-actions"), rows, ["fix"] * 6, ["docs"] * 6, None)
    assert set(vs) == {"all", "untouched"} and vs["all"]["model_only"] == 6
    assert set(versus_labeler(get_task("changelog-actions"), rows, ["fix"] * 6, ["docs"] * 6, set())) == {
        "all", "untouched", "unseen_products", "unseen_untouched"}
