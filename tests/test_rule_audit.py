"""tools.rule_audit: precision of the labeler's rule-2 breaking per stratum, on the rows both
annotators agree on, weighted by the strata's population shares."""
from collections import Counter

from tools.rule_audit import audit, stratum


def row(i, text, batch="a"):
    return {"id": str(i), "batch": batch, "stratum": stratum(text), "text": text, "hint": None}


def lab(kind):
    return {"kind": kind, "severity": "low"}


def test_precision_counts_consensus_rows_only_and_weights_the_strata():
    sample = [row(1, "Remove the `--foo` option."), row(2, "Remove unused helpers."),
              row(3, "Rename `bar` to `baz`."), row(4, "The `qux` command is no longer available.")]
    labels = {"1": (lab("breaking"), lab("breaking")), "2": (lab("unknown"), lab("unknown")),
              "3": (lab("breaking"), lab("deprecation")),  # no consensus: left out
              "4": (lab("breaking"), lab("breaking"))}
    out = audit(sample, labels, Counter(leading=3, other=1))
    assert [s["stratum"] for s in sample] == ["leading", "leading", "leading", "other"]
    assert out["strata"]["leading"]["consensus_rows"] == 2
    assert out["strata"]["leading"]["precision"] == 0.5
    assert out["strata"]["other"]["precision"] == 1.0
    assert out["precision_weighted"] == 0.625  # 3/4 x 0.5 + 1/4 x 1.0
    assert out["batches"]["a"]["consensus_rows"] == 3
    assert out["labeler_now"]["consensus_rows"] == 3
