"""The commit-messages figures eval reports beyond parse rate and type / breaking agreement
(which the generic eval computes from the Task's class_field and second_field): the
contract's Evaluation list, for one model's answers to the gold rows.

How an answer that does not parse (strict JSON against the schema) counts, figure by figure:
it is a miss for every agreement or quality figure (scope agreement, chrF, which scores it as
an empty subject, exact subject, ignore recall, style-clean), and a bad answer for every
"share of bad answers" figure (scope not in the diff, invented identifiers, junk left out),
so a model can never improve a figure by failing to answer. It predicts no ignore path, so
it adds nothing to ignore precision's denominator.
"""
from __future__ import annotations

from pydantic import ValidationError
from sacrebleu.metrics import CHRF

from tuneforge.tasks.commit_messages.normalise import normalise_subject
from tuneforge.tasks.commit_messages.schema import parse_label
from tuneforge.tasks.commit_messages.style import not_in_diff, style_problems


def _parse(text: str) -> dict | None:
    try:
        return parse_label(text).model_dump(mode="json")
    except (ValidationError, ValueError):
        return None


def _share(hits: int, n: int) -> float:
    return round(hits / n, 6) if n else 0.0


def _same_subject(answer: str, gold: str, diff: str) -> bool:
    """Equal once both go through the label normaliser (prefix, period, verb form) and case."""
    norm = lambda s: " ".join(normalise_subject(s, diff)[1].lower().split())  # noqa: E731
    return norm(answer) == norm(gold)


def eval_figures(rows: list[dict], outputs: list[str]) -> dict:
    """rows: gold rows ({"text": diff, "label": {...}, ...}); outputs: the raw answer texts,
    one per row in the same order. Flat, JSON-able, rounded to 6 places."""
    if len(rows) != len(outputs):
        raise ValueError(f"{len(rows)} gold rows but {len(outputs)} answers")
    answers = [_parse(o) for o in outputs]
    n = len(rows)
    pairs = list(zip(rows, answers, strict=True))
    scoped = [(r, a) for r, a in pairs if r["label"].get("scope")]
    scope_hits = sum(a is not None and a["scope"] == r["label"]["scope"] for r, a in scoped)
    bad_scope = sum(a is None or (a["scope"] is not None and a["scope"].lower() not in r["text"].lower())
                    for r, a in pairs)
    hyps = [a["subject"] if a else "" for a in answers]
    refs = [r["label"]["subject"] for r in rows]
    chrf = CHRF().corpus_score(hyps, [refs]).score if n else 0.0
    exact = sum(a is not None and _same_subject(a["subject"], r["label"]["subject"], r["text"])
                for r, a in pairs)
    invented = sum(a is None or bool(not_in_diff(f"{a['subject']}\n{a['body'] or ''}", r["text"]))
                   for r, a in pairs)
    junk_rows = [(r, a) for r, a in pairs if r["label"].get("ignore")]
    true_pos = predicted = gold_paths = left_out = 0
    for r, a in junk_rows:
        gold, said = set(r["label"]["ignore"]), set(a["ignore"]) if a else set()
        true_pos += len(gold & said)
        predicted += len(said)
        gold_paths += len(gold)
        left_out += not gold <= said
    clean = sum(a is not None and not style_problems(a, r["text"]) for r, a in pairs)
    return {
        "rows": n,
        "scope_rows": len(scoped),
        "scope_agreement": _share(scope_hits, len(scoped)),
        "scope_not_in_diff_share": _share(bad_scope, n),
        "subject_chrf": round(chrf, 6),
        "subject_exact": _share(exact, n),
        "invented_identifier_share": _share(invented, n),
        "junk_rows": len(junk_rows),
        "ignore_precision": _share(true_pos, predicted),
        "ignore_recall": _share(true_pos, gold_paths),
        "junk_left_out_share": _share(left_out, len(junk_rows)),
        "style_clean_share": _share(clean, n),
    }
