"""Bad input: run the cases through the real data stages and account for every record."""
from __future__ import annotations

import gzip
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tools.faults.cases import Case, build_cases
from tools.faults.roots import DATA_STAGES, FIXTURES, PATHS, TASK, make_root, run_inproc, task_entry
from tuneforge.harvest import walk_sorted
from tuneforge.io import read_jsonl
from tuneforge.redact import redact
from tuneforge.sources import UnknownFormatError, detect_format
from tuneforge.tasks import get_task
from tuneforge.text import content_key, normalise_ws

FILE_LEVEL_REASONS = {"unknown_format", "unreadable_file", "no_entries"}


def decode_like_backfill(raw: bytes) -> str:
    return raw.decode("utf-8", errors="surrogateescape").replace("\r\n", "\n").replace("\r", "\n")


def expected_entries(snapshot: Path, cfg: dict) -> tuple[list[tuple[str, int, str]], list[str]]:
    """Our own read of every snapshot file: (file, line, text) per parsed entry, and the files
    no parser reads (or cannot be read).  Backfill must account for each of them."""
    entries, file_level = [], []
    for rel in walk_sorted(snapshot):
        raw = (snapshot / rel).read_bytes()
        name = rel
        if rel.endswith(".gz"):
            try:
                raw = gzip.decompress(raw)
                name = rel.removesuffix(".gz")
            except Exception:  # noqa: BLE001 - unreadable member
                file_level.append(rel)
                continue
        if len(raw) > cfg["max_file_mb"] << 20:
            file_level.append(name)
            continue
        text = decode_like_backfill(raw)
        try:
            fmt = detect_format(name, text, get_task(TASK).source_formats)  # what backfill tries for the task
        except UnknownFormatError:
            file_level.append(name)
            continue
        parsed = [(name, e.line, e.text) for e in fmt.parse(name, text)]
        if not parsed:  # read, but no entry in it: backfill quarantines the file
            file_level.append(name)
        entries += parsed
    return entries, file_level


@dataclass
class Accounting:
    lost: list[str] = field(default_factory=list)  # one line per record with no trace
    bad_quarantine: list[str] = field(default_factory=list)  # rows without reason / file / line
    receipt_errors: list[str] = field(default_factory=list)
    injection_errors: list[str] = field(default_factory=list)
    dedupe_errors: list[str] = field(default_factory=list)
    quarantined: Counter = field(default_factory=Counter)
    records: int = 0


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path)] if path.exists() else []


def check_root(root: Path, cases: list[Case] | None = None) -> Accounting:
    """Every record accounted for, every quarantine row with a reason, file and line."""
    from tuneforge.records import QuarantineRecord, StageReceipt

    acc = Accounting()
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    receipts = {s: StageReceipt.model_validate_json(
        (root / PATHS.receipt(s)).read_text(encoding="utf-8")) for s in DATA_STAGES}
    for s, r in receipts.items():
        c = r.counts
        if not r.invariant_holds or c.records_in != c.records_out + c.quarantined + c.deduplicated:
            acc.receipt_errors.append(f"{s}: invariant broken {c}")
    chain = [("evidence", "backfill"), ("score", "evidence"), ("export", "score")]
    for down, up in chain:
        if receipts[down].counts.records_in - receipts[down].counts.extra.get("unknown_augment", 0) \
                != receipts[up].counts.records_out:
            acc.receipt_errors.append(f"{down} read {receipts[down].counts.records_in} records, "
                                      f"{up} wrote {receipts[up].counts.records_out}")
    files = {"backfill": (root / PATHS.entries, root / PATHS.quarantine("backfill")),
             "evidence": (root / PATHS.evidence, None),
             "score": (root / PATHS.scored, root / PATHS.quarantine("score"))}
    for s, (out, q) in files.items():
        n_out = sum(1 for _ in read_jsonl(out))
        if n_out != receipts[s].counts.records_out:
            acc.receipt_errors.append(f"{s}: {out.name} has {n_out} rows, receipt says "
                                      f"{receipts[s].counts.records_out}")
        if q is not None and (n_q := sum(1 for _ in read_jsonl(q))) != receipts[s].counts.quarantined:
            acc.receipt_errors.append(f"{s}: {q.name} has {n_q} rows, receipt says "
                                      f"{receipts[s].counts.quarantined}")

    # quarantine rows: a reason from the taxonomy, the file, and (per record) the line
    for stage in DATA_STAGES:
        qp = root / PATHS.quarantine(stage)
        if not qp.exists():
            continue
        for row in read_jsonl(qp):
            try:
                rec = QuarantineRecord.model_validate(row)
            except Exception as e:  # noqa: BLE001
                acc.bad_quarantine.append(f"{qp.name}: invalid row {e}")
                continue
            acc.quarantined[f"{stage}:{rec.reason.value}"] += 1
            if not rec.source_file:
                acc.bad_quarantine.append(f"{qp.name}: {rec.id} names no file")
            if rec.reason.value in FILE_LEVEL_REASONS:
                if rec.source_file not in rec.detail:
                    acc.bad_quarantine.append(f"{qp.name}: {rec.reason.value} detail does not name "
                                              f"{rec.source_file}")
            elif not rec.line or rec.line < 1:
                acc.bad_quarantine.append(f"{qp.name}: {rec.source_file} {rec.reason.value} has no line")
            elif stage == "backfill" and f"{rec.source_file}:{rec.line}" not in rec.detail:
                acc.bad_quarantine.append(f"{qp.name}: detail {rec.detail!r} does not name file:line")

    # backfill: each entry our own read finds is an entry, a quarantine row or a duplicate
    entries = list(read_jsonl(root / PATHS.entries))
    entry_ids = {e["id"] for e in entries}
    at = {(e["source_file"], e["line"]) for e in entries}
    q_back = list(read_jsonl(root / PATHS.quarantine("backfill")))
    q_at = {(q["source_file"], q["line"]) for q in q_back}
    q_files = {q["source_file"] for q in q_back if q["reason"] in FILE_LEVEL_REASONS}
    expected, file_level = expected_entries(root / task_entry(params)["snapshot"], params["backfill"])
    acc.records = len(expected) + len(file_level)
    for name in file_level:
        if name not in q_files:
            acc.lost.append(f"{name}: unreadable/unknown file not quarantined")
    for name, line, text in expected:
        if (name, line) in at or (name, line) in q_at:
            continue
        if content_key(redact(normalise_ws(text))[0]) in entry_ids:
            continue  # counted duplicate of an entry kept elsewhere
        acc.lost.append(f"{name}:{line}: entry neither kept, quarantined nor a duplicate")
    dedup = receipts["backfill"].counts.deduplicated
    kept_or_q = sum(1 for n, ln, _ in expected if (n, ln) in at or (n, ln) in q_at)
    if len(expected) - kept_or_q != dedup:
        acc.receipt_errors.append(f"backfill: {len(expected) - kept_or_q} entries are duplicates "
                                  f"by our count, receipt says {dedup}")

    # downstream: ids flow entries -> evidence -> scored | score quarantine -> sft | export quarantine
    ev_ids = set(_ids(root / PATHS.evidence))
    for i in sorted(entry_ids - ev_ids):
        acc.lost.append(f"evidence: entry {i[:12]} missing")
    scored = set(_ids(root / PATHS.scored))
    q_score = set(_ids(root / PATHS.quarantine("score")))
    for i in sorted(ev_ids - scored - q_score):
        acc.lost.append(f"score: evidence {i[:12]} neither scored nor quarantined")
    sft_ids = set(_ids(root / PATHS.sft("train"))) | set(_ids(root / PATHS.sft("valid")))
    q_export = set(_ids(root / PATHS.quarantine("export")))
    for i in sorted(scored - sft_ids - q_export):
        acc.lost.append(f"export: scored {i[:12]} neither exported nor quarantined")

    # prompt-injection text stays data: three turns, the task's system prompt, a valid label
    from tuneforge.tasks import get_task

    task = get_task(TASK)
    for split in ("train", "valid"):
        for row in read_jsonl(root / PATHS.sft(split)):
            msgs = row["messages"]
            roles = [m["role"] for m in msgs]
            if roles != ["system", "user", "assistant"] or msgs[0]["content"] != task.system_prompt:
                acc.injection_errors.append(f"{split} {row['id'][:12]}: turns {roles}")
                continue
            try:
                task.parse_label(msgs[2]["content"])
            except Exception as e:  # noqa: BLE001
                acc.injection_errors.append(f"{split} {row['id'][:12]}: label invalid: {e}")
    # duplicate cases: no two kept entries share a content key (by construction of ids) and
    # every duplicate case left at least one duplicate counted
    for case in cases or []:
        if "dedupe" in case.checks:
            mine = [e for e in entries if e["source_file"].startswith(case.id + "/")]
            keys = [content_key(e["text"]) for e in mine]
            if len(keys) != len(set(keys)):
                acc.dedupe_errors.append(f"{case.id}: duplicate entries kept")
    return acc


@dataclass
class BatchResult:
    crashes: list[dict] = field(default_factory=list)
    acc: list[Accounting] = field(default_factory=list)
    records: int = 0


def run_cases(cases: list[Case], scratch: Path, batch_size: int = 40) -> BatchResult:
    """Run cases in batches (one pipeline root each); a failing batch is split case by case,
    so every crashing case is counted and every other case is still accounted."""
    res = BatchResult()
    batches: list[list[Case]] = []
    light = [c for c in cases if not c.heavy]
    batches += [light[i:i + batch_size] for i in range(0, len(light), batch_size)]
    batches += [[c] for c in cases if c.heavy]
    fixtures = {str(p.relative_to(FIXTURES)): p.read_bytes() for p in FIXTURES.rglob("*") if p.is_file()}
    n = 0

    def one(batch: list[Case]) -> tuple[str, str] | None:
        nonlocal n
        n += 1
        root = scratch / f"batch{n:04d}"
        files = dict(fixtures)  # real excerpts keep every stage fed (e.g. the SFT split)
        for c in batch:
            files.update(c.files)
        make_root(root, files)
        failure = run_inproc(root)
        if failure is None:
            acc = check_root(root, batch)
            res.acc.append(acc)
            res.records += acc.records
        shutil.rmtree(root, ignore_errors=True)
        return failure

    for batch in batches:
        failure = one(batch)
        if failure is None:
            continue
        if len(batch) == 1:
            res.crashes.append({"case": batch[0].id, "stage": failure[0], "error": failure[1][:500]})
            continue
        for c in batch:  # isolate
            f = one([c])
            if f is not None:
                res.crashes.append({"case": c.id, "stage": f[0], "error": f[1][:500]})
    return res


def bad_input_suite(seed: int, quick: bool, scratch: Path) -> dict:
    start = time.monotonic()
    cases = build_cases(seed, quick)
    res = run_cases(cases, scratch)
    lost = [x for a in res.acc for x in a.lost]
    quarantined = Counter()
    for a in res.acc:
        quarantined.update(a.quarantined)
    problems = {
        "receipt_errors": [x for a in res.acc for x in a.receipt_errors],
        "quarantine_rows_without_reason_file_or_line": [x for a in res.acc for x in a.bad_quarantine],
        "prompt_injection_breaks": [x for a in res.acc for x in a.injection_errors],
        "duplicates_kept": [x for a in res.acc for x in a.dedupe_errors],
    }
    return {
        "cases": len(cases),
        "by_category": dict(sorted(Counter(c.category for c in cases).items())),
        "by_format": dict(sorted(Counter(c.fmt for c in cases).items())),
        "bytes": sum(len(b) for c in cases for b in c.files.values()),
        "records_checked": res.records,
        "crashes": res.crashes,
        "lost_records": lost[:50],
        "lost_count": len(lost) + len(problems["receipt_errors"]),
        "quarantined_by_reason": dict(sorted(quarantined.items())),
        **{k: v[:20] for k, v in problems.items()},
        "problem_count": sum(len(v) for v in problems.values()),
        "seconds": round(time.monotonic() - start, 1),
    }
