"""evidence: one evidence record per entry, with provenance and every candidate label.

Run: python -m stages.evidence
In:  paths.entries, tasks.<task>.gold / .human_labels / .replay_log, params.evidence,
     params.export's near-duplicate measure
Out: paths.evidence (EvidenceRecord JSONL), <receipts_dir>/evidence.json

Label sources: (a) the deterministic rule labeler, (b) an optional teacher
endpoint (off by default: the default path makes zero model calls),
(c) hand-labeled training rows (paths.human_labels, when evidence.human_labels is on),
(d) the hand-labeled gold labels; both matched by normalised content hash,
(e) accepted answers of the replay log (tuneforge.replay; when evidence.replay_labels is on):
the latest per input, never for a gold entry or a near-duplicate of one (export's measure); an
input the snapshot lacks becomes a record of its own, its provenance the log's line.
"""
from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from tuneforge import config, teacher
from tuneforge.batch import records_in_memory
from tuneforge.decontam import GoldCheck
from tuneforge.forkmap import ordered_map
from tuneforge.io import atomic_path, canonical_json, read_jsonl, read_models, sig_hash
from tuneforge.names.shapes import ReplayRecord
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


REPLAY_FORMAT = "replay"  # RawEntry.format of an input only the replay log holds


def replay_answers(path: Path, task: Task, gold: GoldCheck) -> tuple[dict[str, tuple[int, ReplayRecord]], Counter]:
    """content key -> (log line, record) of the latest accepted answer per input, and what
    became of every line: used, superseded (an earlier answer for the same input), not_accepted,
    other_task, gold_near_duplicate (a gold entry or a near-duplicate by export's measure)."""
    latest: dict[str, tuple[int, ReplayRecord]] = {}
    counts: Counter = Counter()
    for line, rec in enumerate(read_models(path, ReplayRecord), 1):
        counts["lines"] += 1
        key = content_key(rec.text)
        if rec.task != task.name:
            counts["other_task"] += 1
        elif rec.label is None:
            counts["not_accepted"] += 1
        elif gold.why_not(rec.text):
            counts["gold_near_duplicate"] += 1
        else:
            counts["superseded"] += key in latest
            latest[key] = (line, rec)
    counts["used"] = len(latest)
    return latest, counts


def replay_candidate(rec: ReplayRecord) -> CandidateLabel:
    escalated = rec.verdict == "escalated_accepted"  # the teacher's answer, the model's failed
    return CandidateLabel(source=LabelSource.replay, label=rec.label,
                          model="teacher" if escalated else f"gguf:{rec.model_sha256[:16]}")


def replay_entry(path: Path, line: int, rec: ReplayRecord) -> RawEntry:
    """An input the snapshot lacks, as a backfilled entry whose source is the log's line."""
    return RawEntry(id=content_key(rec.text), text=rec.text, hint=rec.hint, product=rec.product or "",
                    version=None, source_file=str(path), line=line, format=REPLAY_FORMAT, redactions=0)


def build_record(task: Task, entry: RawEntry, gold: dict | None, human: dict | None,
                 teacher_row: dict | None, rules: tuple[dict, int] | None,
                 replay: ReplayRecord | None = None) -> EvidenceRecord:
    candidates = []
    if rules is not None:
        label, rule = rules
        candidates.append(CandidateLabel(source=LabelSource.rules, label=label, rule=rule))
    if teacher_row is not None:
        candidates.append(teacher_candidate(task, teacher_row))
    if replay is not None:
        candidates.append(replay_candidate(replay))
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

    replay: dict[str, tuple[int, ReplayRecord]] = {}
    replay_counts: Counter = Counter()
    if cfg["replay_labels"]:
        log_path = params.task.replay_log
        receipt.inputs.append(log_path)
        check = GoldCheck([r["text"] for r in gold.values()], params.export.near_dup_threshold,
                          params.export.near_dup_min_contained_words)
        replay, replay_counts = replay_answers(log_path, task, check)
        known = {content_key(e.text) for e in entries}
        new = [replay_entry(log_path, line, rec) for key, (line, rec) in sorted(replay.items())
               if key not in known]
        replay_counts["new_records"] = len(new)
        entries = entries + new

    def record(i: int) -> tuple[bool, bool, str]:
        """Entry i labeled and made a record, serialised: on forked workers (tuneforge.forkmap)."""
        e = entries[i]
        key = content_key(e.text)
        answer = replay.get(key)
        rules = task.rule_label(e.text, e.hint, e.product, e.version) if cfg["rules"] else None
        rec = build_record(task, e, gold.get(key), human.get(key), teacher_rows.get(e.id), rules,
                           answer[1] if answer else None)
        return key in gold, key in human, canonical_json(rec.model_dump(mode="json"))

    with_gold = with_human = written = 0
    with atomic_path(paths.evidence) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for has_gold, has_human, line in tqdm(ordered_map(record, len(entries), cfg["workers"]),
                                              total=len(entries), desc="evidence", unit="entry",
                                              disable=None):
            out.write(line + "\n")
            written += 1
            with_gold += has_gold
            with_human += has_human
    receipt.outputs.insert(0, paths.evidence)
    receipt.finish(paths.receipt("evidence"), records_in=len(entries),
                   records_out=written,
                   extra={"with_gold": with_gold, "with_human": with_human, "teacher_answers": len(teacher_rows),
                          "model_calls": model_calls,
                          **{f"replay_{k}": v for k, v in sorted(replay_counts.items())}})
    log.info("%d evidence records (%d carry a gold label)", written, with_gold)
    return 0


if __name__ == "__main__":
    records_in_memory()  # a process of its own: no cyclic garbage collection (tuneforge.batch says why)
    sys.exit(main())
