"""score: a deterministic scorer (never a model) gives each record one category.

Run: python -m stages.score
In:  paths.evidence, params.score
Out: paths.scored (ScoredRecord JSONL), <quarantine_dir>/score.jsonl (the rejected),
     <receipts_dir>/score.json, paths.labeler_report (the rule labeler measured on
     every record that also carries a gold label, with and without its hint)

Categories: accepted / partially_accepted / rejected / needs_human_review, each
with sorted reason codes. Candidate precedence: gold > human > teacher > replay > rules. Hand
labels (gold, human) skip the rule checks but not STYLE; a replay answer that disagrees with
the rule labeler goes to review like a teacher's.
"""
from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from tuneforge import config, metrics
from tuneforge.batch import records_in_memory
from tuneforge.forkmap import ordered_map
from tuneforge.io import atomic_path, canonical_json, read_models, write_json
from tuneforge.names import gold_subset
from tuneforge.receipts import Receipt
from tuneforge.records import (
    CandidateLabel,
    EvidenceRecord,
    LabelSource,
    QuarantineReason,
    QuarantineRecord,
    ScoreCategory,
    ScoredRecord,
)
from tuneforge.tasks import Task, get_task

log = logging.getLogger("score")
PRECEDENCE = [LabelSource.gold, LabelSource.human, LabelSource.teacher, LabelSource.replay, LabelSource.rules]
HAND_LABELED = {LabelSource.gold, LabelSource.human}


def schema_error(task: Task, label: dict | None) -> str | None:
    if label is None:
        return "no label"
    try:
        task.output_model.model_validate(label)
        return None
    except ValidationError as e:
        return str(e).splitlines()[0]


def score_record(task: Task, rec: EvidenceRecord, cfg: dict) -> ScoredRecord:
    by_source = {c.source: c for c in rec.candidates}
    chosen: CandidateLabel = next(by_source[s] for s in PRECEDENCE if s in by_source)
    reasons: list[str] = []
    category = ScoreCategory.accepted
    if schema_error(task, chosen.label):
        category, reasons = ScoreCategory.rejected, ["label_schema_invalid"]
    elif chosen.source in HAND_LABELED:
        # A hand label is trusted over every rule, but not over STYLE: one that breaks it is
        # kept out of SFT (partially accepted, its codes named) until someone revises it.
        reasons += task.style_problems(chosen.label, rec.text, rec.hint)
        if reasons:
            category = ScoreCategory.partially_accepted
    else:
        label = chosen.label
        kind = task.label_class(label)
        reasons += task.style_problems(label, rec.text, rec.hint)
        if task.is_content_free(rec.text) and kind != task.abstain_class:
            category = ScoreCategory.rejected
            reasons.append("content_free_text")
        hinted = task.hint_class(rec.hint)
        if hinted is not None and hinted != kind and kind not in task.firm_classes:
            reasons.append("hint_rule_disagree")
        others = [c for c in rec.candidates if c is not chosen and c.label is not None
                  and schema_error(task, c.label) is None]
        if any(task.label_class(c.label) != kind for c in others):
            reasons.append("label_sources_disagree")
        if chosen.rule == task.abstain_rule and not task.unknown_cue(rec.text, rec.hint):
            reasons.append("unknown_without_cue")
        if category is not ScoreCategory.rejected:
            if "hint_rule_disagree" in reasons:
                category = ScoreCategory(cfg["hint_disagreement"])
            if "unknown_without_cue" in reasons:
                category = ScoreCategory(cfg["unknown_without_cue"])
            if "label_sources_disagree" in reasons:
                category = ScoreCategory.needs_human_review
            if category is ScoreCategory.accepted and any(r.startswith("style_") for r in reasons):
                category = ScoreCategory.partially_accepted
    alternatives = [c for c in rec.candidates if c is not chosen]
    return ScoredRecord(
        id=rec.id, task=rec.task, text=rec.text, hint=rec.hint, product=rec.product,
        version=rec.version, format=rec.format, provenance=rec.provenance, category=category,
        reasons=sorted(set(reasons)),
        label=chosen.label,
        label_source=chosen.source, rule=chosen.rule, alternatives=alternatives,
        scorer_version=cfg["scorer_version"],
    )


def rules_label(task: Task, rec: EvidenceRecord, hint: str | None) -> dict:
    """The rule labeler's label for `rec` shown `hint`: evidence already computed it for the
    record's own hint (when evidence.rules is on), so only other hints are labeled here."""
    if hint == rec.hint:
        rules = next((c for c in rec.candidates if c.source is LabelSource.rules), None)
        if rules is not None:
            return rules.label
    return task.rule_label(rec.text, hint, rec.product, rec.version)[0]


def labeler_rows(task: Task, rec: EvidenceRecord) -> list[tuple[str, metrics.Scored]]:
    """The rule labeler measured against a record's hand label: (bucket, scored) rows for the
    labeler report (with_hint, without_hint, the gold subset; human_labels for a training row's
    hand label), [] for a record without one. Computed beside the record's scoring, on the same worker, so
    only these small rows travel back, never the record."""
    gold = next((c for c in rec.candidates if c.source is LabelSource.gold), None)
    if gold is None:
        human = next((c for c in rec.candidates if c.source is LabelSource.human), None)
        if human is None:
            return []
        return [("human_labels", metrics.score_prediction(
            task.render_label(rules_label(task, rec, rec.hint)), human.label, task.parse_label, task.fields))]
    out = []
    for variant, hint in (("with_hint", rec.hint), ("without_hint", None)):
        label = rules_label(task, rec, hint)
        scored = metrics.score_prediction(task.render_label(label), gold.label, task.parse_label, task.fields)
        out.append((variant, scored))
        if variant == "with_hint":
            out.append((gold_subset(rec.id), scored))
    return out


def labeler_report(task: Task, measured: list[tuple[str, metrics.Scored]]) -> dict:
    """Rule labeler vs gold (labeler_rows of every hand-labeled record, in file order): the
    contract's figures, the hint ablation, and the tuning/untouched split of the gold set; plus
    the same kind/severity figures on the hand-labeled training rows (a second, larger check;
    their errors were read too)."""
    rows: dict[str, list] = {"with_hint": [], "without_hint": [], "tuning": [], "untouched": [],
                             "human_labels": []}
    for bucket, scored in measured:
        rows[bucket].append(scored)
    classes = list(task.classes)
    with_hint = metrics.summarize(rows["with_hint"], classes, fields=task.fields)
    without_hint = metrics.summarize(rows["without_hint"], classes, fields=task.fields)

    def figures(name: str) -> dict:
        summary = metrics.summarize(rows[name], classes, fields=task.fields)
        return {k: summary[k] for k in ("n", *metrics.headline_keys(task.fields)) if k != "parse_rate"}

    return {"labeler": "rules", "gold_records": len(rows["with_hint"]),
            "with_hint": with_hint, "hint_ablation": metrics.ablation(with_hint, without_hint, task.fields),
            "gold_subsets": {name: figures(name) for name in ("tuning", "untouched")},
            "human_labels": figures("human_labels") if rows["human_labels"] else None}


def score_lines(task: Task, path: Path, cfg: dict) -> Iterator[tuple]:
    """Each evidence line of `path` read, scored and serialised, in file order, on forked workers
    (tuneforge.forkmap): (category, reasons or quarantine detail, JSON line, the record's
    labeler_rows: empty unless it carries a hand label)."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]

    def one(i: int) -> tuple:
        try:
            ev = EvidenceRecord.model_validate_json(lines[i])
        except ValidationError:
            return None, None, None, None  # the caller re-reads the file for read_models' error
        rec = score_record(task, ev, cfg)
        measured = labeler_rows(task, ev)  # [] for a record without a hand label
        if rec.category is ScoreCategory.rejected:
            row = QuarantineRecord(
                id=rec.id, stage="score", reason=QuarantineReason.score_rejected,
                detail=",".join(rec.reasons), source_file=rec.provenance.source_file,
                line=rec.provenance.line)
            return rec.category, row.detail, canonical_json(row.model_dump(mode="json")), measured
        return rec.category, rec.reasons, canonical_json(rec.model_dump(mode="json")), measured

    for result in ordered_map(one, len(lines)):
        if result[0] is None:  # a line that is not an EvidenceRecord: the error names file and line
            for _ in read_models(path, EvidenceRecord):
                pass
            raise AssertionError(f"{path}: a line failed to parse once and not again")
        yield result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("score", argv)
    cfg, paths, task = params.section("score"), params.paths, get_task(params.task_name)
    receipt = Receipt("score", {"task": task.name, "score": cfg})
    receipt.inputs.append(paths.evidence)

    quarantine_path = paths.quarantine("score")
    records_in, n_rejected, measured = 0, 0, []
    categories: Counter = Counter()
    reasons: Counter = Counter()
    # both files written as the records come (atomic: renamed into place only on success)
    with atomic_path(paths.scored) as scored_tmp, atomic_path(quarantine_path) as rejected_tmp, \
            open(scored_tmp, "w", encoding="utf-8") as scored, \
            open(rejected_tmp, "w", encoding="utf-8") as rejected:
        for category, why, line, rows in tqdm(score_lines(task, paths.evidence, cfg), desc="score",
                                               unit="record", disable=None):
            records_in += 1
            measured += rows
            if category is ScoreCategory.rejected:
                rejected.write(line + "\n")
                n_rejected += 1
                reasons.update(why.split(","))
            else:
                scored.write(line + "\n")
                categories[category.value] += 1
                reasons.update(why)
    report = labeler_report(task, measured)
    write_json(paths.labeler_report, report)
    receipt.outputs += [paths.scored, quarantine_path, paths.labeler_report]
    extra = {f"category_{k}": v for k, v in categories.items()}
    extra.update({f"reason_{k}": v for k, v in reasons.items()})
    receipt.finish(paths.receipt("score"),
                   records_in=records_in, records_out=sum(categories.values()),
                   quarantined=n_rejected, extra=extra)
    log.info("categories: %s; rejected: %d", dict(sorted(categories.items())), n_rejected)
    c, s = (f"{f}_agreement" for f in task.fields)
    log.info("rule labeler on %d gold records: %s %s (untouched subset %s), %s %s", report["gold_records"],
             c, report["with_hint"][c], report["gold_subsets"]["untouched"][c], s, report["with_hint"][s])
    return 0


if __name__ == "__main__":
    records_in_memory()  # a process of its own: no cyclic garbage collection (tuneforge.batch says why)
    sys.exit(main())
