"""Eval metrics for label predictions against a gold holdout (pure functions, no models).

A prediction is the raw model text; it counts as parsed only when the task's strict
parser accepts the whole text. An unparsed answer is wrong on every field and appears
as the predicted class `UNPARSED` in the confusion matrix (a miss for the gold kind,
never a false positive for another kind).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

UNPARSED = "(unparsed)"
# A task grades two label fields (tuneforge.tasks.Task.class_field, .second_field): its class
# (changelog: kind; commits: type), which confusion and per-class figures use, and a second one
# (severity; breaking). Figures are named after them: "kind_agreement", "type_agreement".
FIELDS = ("kind", "severity")


def headline_keys(fields: tuple[str, str] = FIELDS) -> tuple[str, ...]:
    """The figures eval puts first: metrics' headline, the report's and ladder.csv's columns."""
    return (f"{fields[0]}_agreement", f"{fields[1]}_agreement", "parse_rate", "macro_f1")


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, bool) else str(v)  # breaking: "true"/"false"


@dataclass(frozen=True)
class Scored:
    """One holdout row's outcome: the class (gold_kind, pred_kind) and the second field, as
    strings, whatever the task names them."""

    gold_kind: str
    gold_severity: str
    pred_kind: str        # UNPARSED when the text did not parse
    pred_severity: str
    parsed: bool
    error: str | None = None


def score_prediction(text: str, gold: dict, parse: Callable[[str], Any],
                     fields: tuple[str, str] = FIELDS) -> Scored:
    c, s = fields
    try:
        label = parse(text)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        return Scored(gold[c], _value(gold[s]), UNPARSED, UNPARSED, False, _reason(e))
    data = label.model_dump(mode="json") if hasattr(label, "model_dump") else dict(label)
    return Scored(gold[c], _value(gold[s]), data[c], _value(data[s]), True)


def _reason(e: ValueError) -> str:
    """One line saying why a text did not parse: pydantic's first error with its field."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
        return f"{loc}: {first.get('msg', '')}"[:200]
    return f"{type(e).__name__}: {str(e).splitlines()[0]}"[:200] if str(e) else type(e).__name__


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def wilson_ci95(successes: int, n: int) -> tuple[float | None, float | None]:
    """95% Wilson score interval of a share: at 40 holdout rows a kind agreement of 0.525
    is anything from ~0.37 to ~0.67, which a gate threshold and a metrics diff should show."""
    if not n:
        return None, None
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)


def per_class(rows: list[Scored], classes: list[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and gold support of each kind."""
    out = {}
    for k in classes:
        tp = sum(r.gold_kind == k and r.pred_kind == k for r in rows)
        fp = sum(r.gold_kind != k and r.pred_kind == k for r in rows)
        fn = sum(r.gold_kind == k and r.pred_kind != k for r in rows)
        p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = round(2 * p * r / (p + r), 6) if p and r else 0.0
        out[k] = {"precision": p, "recall": r, "f1": f1, "support": tp + fn, "predicted": tp + fp}
    return out


def confusion(rows: list[Scored]) -> dict[str, dict[str, int]]:
    """gold kind -> predicted kind -> count (only cells that occur)."""
    cells = Counter((r.gold_kind, r.pred_kind) for r in rows)
    out: dict[str, dict[str, int]] = {}
    for (g, p), n in sorted(cells.items()):
        out.setdefault(g, {})[p] = n
    return out


def summarize(rows: list[Scored], classes: list[str], min_support: int = 5,
              fields: tuple[str, str] = FIELDS) -> dict[str, Any]:
    """The contract's figures for one model on one holdout pass."""
    c, s = fields
    n = len(rows)
    pcs = per_class(rows, classes)
    well = [k for k in classes if pcs[k]["support"] >= min_support]
    macro = round(sum(pcs[k]["f1"] for k in well) / len(well), 6) if well else None
    unknown = pcs.get("unknown", {})
    kind_hits = sum(r.gold_kind == r.pred_kind for r in rows)
    ci_low, ci_high = wilson_ci95(kind_hits, n)
    return {
        "n": n,
        "parse_rate": _ratio(sum(r.parsed for r in rows), n),
        "parse_errors": sum(not r.parsed for r in rows),
        f"{c}_agreement": _ratio(kind_hits, n),
        f"{c}_agreement_ci95_low": ci_low,
        f"{c}_agreement_ci95_high": ci_high,
        f"{s}_agreement": _ratio(sum(r.gold_severity == r.pred_severity for r in rows), n),
        "macro_f1": macro,
        "macro_f1_kinds": well,
        "unknown_precision": unknown.get("precision"),
        "unknown_recall": unknown.get("recall"),
        "per_kind": pcs,
        "confusion": confusion(rows),
    }


def ablation(with_hint: dict[str, Any], without_hint: dict[str, Any],
             fields: tuple[str, str] = FIELDS) -> dict[str, Any]:
    """Hint ablation: both passes' headline figures and the delta (with - without)."""
    return compare(with_hint, without_hint, fields, ("with_hint", "without_hint"))


def compare(one: dict[str, Any], other: dict[str, Any], fields: tuple[str, str],
            names: tuple[str, str]) -> dict[str, Any]:
    """Two passes over the same rows: each one's headline figures under its name, and the
    delta (one - other)."""
    keys = headline_keys(fields)
    delta = {k: (round(one[k] - other[k], 6) if one[k] is not None and other[k] is not None else None)
             for k in keys}
    return {names[0]: {k: one[k] for k in keys}, names[1]: {k: other[k] for k in keys}, "delta": delta}


def parity(a: list[str], b: list[str]) -> float | None:
    """Share of rows whose two output texts are identical (whitespace at the ends aside)."""
    if len(a) != len(b):
        raise ValueError(f"parity needs equal-length outputs, got {len(a)} and {len(b)}")
    return _ratio(sum(x.strip() == y.strip() for x, y in zip(a, b, strict=True)), len(a))


def gate(summary: dict[str, Any], gates: dict[str, Any], parity_value: float | None,
         class_field: str = FIELDS[0]) -> list[str]:
    """The release gates a model fails (empty = passes), each as a readable reason."""
    failed = []
    key = f"{class_field}_agreement"
    ka = summary[key] or 0.0
    if ka < gates["min_class_agreement"]:
        ci = ""
        if summary.get(f"{key}_ci95_high") is not None:
            ci = (f" (95% CI {summary[f'{key}_ci95_low']:.2f}-"
                  f"{summary[f'{key}_ci95_high']:.2f} over {summary['n']} rows)")
        failed.append(f"{key} {ka:.3f} < {gates['min_class_agreement']}{ci}")
    failed += count_gates(summary["parse_errors"], summary.get("closed_by_decoder", 0), gates)
    if parity_value is None or parity_value < gates["min_parity"]:
        shown = "n/a" if parity_value is None else f"{parity_value:.3f}"
        failed.append(f"parity {shown} < {gates['min_parity']}")
    return failed


def count_gates(parse_errors: int, closed_by_decoder: int, gates: dict[str, Any]) -> list[str]:
    """The gates on counts of answers, which more rows can only raise: a model over one of them
    on some rows is over it on every superset of them, so eval's confirmation stops decoding a
    candidate there (the rest of its rows could not change its verdict)."""
    failed = []
    if parse_errors > gates["max_parse_errors"]:
        failed.append(f"parse_errors {parse_errors} > {gates['max_parse_errors']}")
    # optional gate: an answer the decoder closed at the token cap parses, but the model never
    # finished it (a loop); eval counts them for GGUFs (decoded under the grammar)
    cap = gates.get("max_closed_by_decoder")
    if cap is not None and closed_by_decoder > cap:
        failed.append(f"closed_by_decoder {closed_by_decoder} > {cap}")
    return failed


def versus(model_hits: list[bool], labeler_hits: list[bool]) -> dict[str, Any]:
    """The model against the rule labeler on the same rows (a class field right or wrong on
    each): both shares, the rows only one gets right, and the exact one-sided sign test on
    those rows of "the labeler is better" (p of the labeler winning at least that many of them
    by chance). Written out because it is one binomial tail (math.comb; no scipy here)."""
    n = len(model_hits)
    if len(labeler_hits) != n:
        raise ValueError(f"versus needs the same rows, got {n} and {len(labeler_hits)}")
    model_only = sum(m and not r for m, r in zip(model_hits, labeler_hits, strict=True))
    labeler_only = sum(r and not m for m, r in zip(model_hits, labeler_hits, strict=True))
    split = model_only + labeler_only
    p_worse = sum(math.comb(split, k) for k in range(labeler_only, split + 1)) / 2**split
    return {"n": n, "model": _ratio(sum(model_hits), n), "labeler": _ratio(sum(labeler_hits), n),
            "model_only": model_only, "labeler_only": labeler_only, "p_labeler_better": round(p_worse, 6)}
