"""Scoring answers against gold rows: the gold reader and the figures the eval stage and
by-hand evaluation (tuneforge.evaluate) share, so their figures for the same rows agree."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.decode import Answer
from tuneforge.io import read_jsonl, read_models
from tuneforge.metrics import score_prediction, summarize, versus
from tuneforge.names import gold_subset
from tuneforge.records import SftSample
from tuneforge.tasks import Task
from tuneforge.text import content_key


def load_gold(path: str | Path, task: Task) -> list[dict]:
    """Gold rows, each label validated by the task's strict parser (fail early, name the row)."""
    rows, bad = [], []
    for i, row in enumerate(read_jsonl(path), 1):
        try:
            task.parse_label(json.dumps(row["label"]))
            rows.append(row)
        except (KeyError, ValueError) as e:
            bad.append(f"line {i}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    if bad:
        raise ValueError(f"{path}: {len(bad)} gold rows are invalid: " + "; ".join(bad[:5]))
    if not rows:
        raise ValueError(f"{path} holds no gold rows")
    return rows


def score(task: Task, rows: list[dict], outputs: list[str], classes: list[str],
          min_support: int) -> tuple[dict, list]:
    scored = [score_prediction(o, r["label"], task.parse_label, task.fields)
              for o, r in zip(outputs, rows, strict=True)]
    return summarize(scored, classes, min_support, task.fields), scored


def closed_figures(answers: list[Answer]) -> dict[str, Any]:
    """How many answers the decoder closed at the cap, and their share: they parse, so
    parse_rate alone would count a looping model's junk as a good answer."""
    n = sum(a.closed_by_decoder for a in answers)
    return {"closed_by_decoder": n, "closed_by_decoder_rate": round(n / len(answers), 6) if answers else None}


def decoder_figures(task: Task, answers: list[Answer]) -> dict[str, Any]:
    """What the decoder did to answers decoded under the grammar: closed_figures, and for a task
    with an answer check (Task.answer_check) how many answers it turned from the model's own
    first choice at least once, and their share (what the check hides of the model)."""
    out = closed_figures(answers)
    if task.answer_check is not None:
        n = sum(a.steered > 0 for a in answers)
        out.update(steered_answers=n, steered_rate=round(n / len(answers), 6) if answers else None)
    return out


def labeler_subsets(rows: list[dict], trained_products: set[str] | None) -> dict[str, list[bool]]:
    """Which gold rows each comparison with the rule labeler reads: all of them; the gold rows
    never read while the labeler was tuned (names.gold_subset of the text's content key, as the
    score stage splits them); the rows of products that gave the SFT export no row; and those of
    them never read while the labeler was tuned, the only rows neither side was fit to (on the
    rest of unseen_products the labeler's figure is in-sample). trained_products None (no SFT
    export to read them from, as in a by-hand eval elsewhere): the two unseen subsets are left
    out, since which products the model saw is unknown."""
    untouched = [gold_subset(content_key(r["text"])) == "untouched" for r in rows]
    subsets = {"all": [True] * len(rows), "untouched": untouched}
    if trained_products is not None:
        unseen = [r.get("product") not in trained_products for r in rows]
        subsets["unseen_products"] = unseen
        subsets["unseen_untouched"] = [a and b for a, b in zip(unseen, untouched, strict=True)]
    return subsets


def labeler_answers(task: Task, rows: list[dict], with_hint: bool = True) -> list[str]:
    """The task's rule labeler on `rows`, rendered as a model's answer would be."""
    return [task.render_label(task.rule_label(r["text"], r.get("hint") if with_hint else None, r.get("product"),
                                              r.get("version"))[0]) for r in rows]


def trained_products(sft_train: str | Path) -> set[str]:
    """The products an SFT export's train split holds a row of."""
    return {s.product for s in read_models(sft_train, SftSample)}


def versus_labeler(task: Task, rows: list[dict], model_classes: list[str], labeler_classes: list[str],
                   trained: set[str] | None) -> dict[str, dict]:
    """A model's predicted classes against the rule labeler's, row by row, on each of
    labeler_subsets (tuneforge.metrics.versus; trained None: no unseen-product subsets)."""
    gold = [task.label_class(r["label"]) for r in rows]

    def hits(predicted: list[str], subset: list[bool]) -> list[bool]:
        return [p == g for p, g, keep in zip(predicted, gold, subset, strict=True) if keep]

    return {name: versus(hits(model_classes, subset), hits(labeler_classes, subset))
            for name, subset in labeler_subsets(rows, trained).items()}
