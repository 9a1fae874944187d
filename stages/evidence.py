"""evidence: one evidence record per entry, with provenance and every candidate label.

Run: python -m stages.evidence
In:  paths.entries, paths.gold, paths.human_labels, params.evidence
Out: paths.evidence (EvidenceRecord JSONL), <receipts_dir>/evidence.json

Label sources: (a) the deterministic rule labeler, (b) an optional teacher
endpoint (off by default: the default path makes zero model calls),
(c) hand-labeled training rows (paths.human_labels, when evidence.human_labels is on),
(d) the hand-labeled gold labels; both matched by normalised content hash.
"""
from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from tuneforge import config, teacher
from tuneforge.io import read_jsonl, read_models, sig_hash, write_jsonl
from tuneforge.receipts import Receipt
from tuneforge.records import CandidateLabel, EvidenceRecord, LabelSource, Provenance, RawEntry
from tuneforge.tasks import Task, get_task
from tuneforge.text import content_key

log = logging.getLogger("evidence")


def hand_labels(path: str | Path) -> dict[str, dict]:
    """content key -> labeled row; a missing file is an error, not an empty set."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: hand-labeled file missing (see its README.md)")
    return {content_key(row["text"]): row for row in read_jsonl(path)}


def teacher_candidate(task: Task, row: dict) -> CandidateLabel:
    if "error" in row:
        return CandidateLabel(source=LabelSource.teacher, label=None, error=row["error"],
                              model=row["model"])
    try:
        label = task.parse_label(row["content"]).model_dump(mode="json")
        return CandidateLabel(source=LabelSource.teacher, label=label, model=row["model"])
    except ValueError as e:  # pydantic.ValidationError is a ValueError
        return CandidateLabel(source=LabelSource.teacher, label=None, model=row["model"],
                              error=f"not a valid label: {str(e).splitlines()[0]}")


def rule_labels(task: Task, entries: list[RawEntry], workers: int) -> Iterator[tuple[dict, int]]:
    """The rule labeler over every entry, in entry order, on `workers` processes; yielded as
    they come, so the caller builds records while the workers label."""
    args = [(e.text, e.hint, e.product, e.version) for e in entries]
    if workers <= 1 or len(args) < 2:
        yield from (task.rule_label(*a) for a in args)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(functools.partial(_rule_label, task.name), args,
                             chunksize=max(1, min(512, len(args) // (4 * workers))))


def _rule_label(task_name: str, args: tuple) -> tuple[dict, int]:
    return get_task(task_name).rule_label(*args)


def build_record(task: Task, entry: RawEntry, gold: dict | None, human: dict | None,
                 teacher_row: dict | None, rules: tuple[dict, int] | None) -> EvidenceRecord:
    candidates = []
    if rules is not None:
        label, rule = rules
        candidates.append(CandidateLabel(source=LabelSource.rules, label=label, rule=rule))
    if teacher_row is not None:
        candidates.append(teacher_candidate(task, teacher_row))
    if human is not None:
        candidates.append(CandidateLabel(source=LabelSource.human, label=human["label"],
                                         rule=human.get("rule")))
    if gold is not None:
        candidates.append(CandidateLabel(source=LabelSource.gold, label=gold["label"],
                                         rule=gold.get("rule")))
    return EvidenceRecord(
        id=entry.id, task=task.name, text=entry.text, hint=entry.hint, product=entry.product,
        version=entry.version, format=entry.format,
        provenance=Provenance(source_file=entry.source_file, line=entry.line,
                              sig_hash=sig_hash(entry.model_dump(mode="json"))),
        candidates=candidates,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("evidence", argv)
    cfg, paths, task = params.section("evidence"), params.paths, get_task(params.task_name)
    receipt = Receipt("evidence", {"task": task.name, "evidence": cfg})
    receipt.inputs += [paths.entries, params.task.gold, params.task.human_labels]
    if not cfg["rules"] and not cfg["teacher"]["enabled"]:
        raise SystemExit("evidence: no label source enabled (evidence.rules / evidence.teacher.enabled)")

    entries = list(read_models(paths.entries, RawEntry))
    gold = hand_labels(params.task.gold)
    human = hand_labels(params.task.human_labels) if cfg["human_labels"] else {}
    overlap = set(gold) & set(human)
    if overlap:
        raise SystemExit(f"evidence: {len(overlap)} hand-labeled training rows are also in the "
                         f"gold holdout ({params.task.human_labels} vs {params.task.gold})")
    teacher_rows: dict[str, dict] = {}
    model_calls = 0
    if cfg["teacher"]["enabled"]:
        budget = cfg["teacher"]["max_records"] or len(entries)
        chosen = sorted(entries, key=lambda e: e.id)[:budget]
        prompts = {e.id: task.messages(e.text, e.hint, e.product) for e in chosen}
        teacher_rows, model_calls = teacher.label_all(prompts, cfg["teacher"], paths.teacher_cache)
        receipt.outputs.append(paths.teacher_cache)

    rules = (rule_labels(task, entries, cfg["workers"] or os.cpu_count() or 1) if cfg["rules"]
             else [None] * len(entries))
    records = []
    for e, r in tqdm(zip(entries, rules, strict=True), total=len(entries), desc="evidence",
                     unit="entry", disable=None):
        key = content_key(e.text)
        records.append(build_record(task, e, gold.get(key), human.get(key), teacher_rows.get(e.id), r))
    write_jsonl(paths.evidence, records)
    receipt.outputs.insert(0, paths.evidence)
    with_gold = sum(1 for r in records if any(c.source is LabelSource.gold for c in r.candidates))
    with_human = sum(1 for r in records if any(c.source is LabelSource.human for c in r.candidates))
    receipt.finish(paths.receipt("evidence"), records_in=len(entries),
                   records_out=len(records),
                   extra={"with_gold": with_gold, "with_human": with_human, "teacher_answers": len(teacher_rows),
                          "model_calls": model_calls})
    log.info("%d evidence records (%d carry a gold label)", len(records), with_gold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
