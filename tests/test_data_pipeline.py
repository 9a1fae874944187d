"""backfill -> evidence -> score -> export on real release-note excerpts, in tmp_path."""
import json
from pathlib import Path

import pytest
import yaml

from tuneforge.io import read_jsonl
from tuneforge.records import (
    DriftReport,
    EvidenceRecord,
    QuarantineRecord,
    RawEntry,
    ScoredRecord,
    SftSample,
    StageReceipt,
)
from tuneforge.text import content_key

from .conftest import ROOT, TASK, snapshot_tree

STAGES = ("backfill", "evidence", "score", "export")


def receipts(root: Path) -> dict[str, StageReceipt]:
    return {s: StageReceipt.model_validate_json((root / f"reports/changelog-actions/receipts/{s}.json").read_text())
            for s in STAGES}


def test_every_record_is_accounted_for(workdir, run_pipeline):
    run_pipeline()
    got = receipts(workdir)
    for stage, r in got.items():
        c = r.counts
        assert r.invariant_holds, stage
        assert c.records_in == c.records_out + c.quarantined + c.deduplicated, stage
    # each stage's output feeds the next: nothing vanishes between stages
    assert got["evidence"].counts.records_in == got["backfill"].counts.records_out
    assert got["score"].counts.records_in == got["evidence"].counts.records_out
    assert got["export"].counts.records_in == got["score"].counts.records_out
    # the files agree with the receipts
    entries = list(read_jsonl(workdir / "data/changelog-actions/entries.jsonl"))
    assert len(entries) == got["backfill"].counts.records_out
    q = list(read_jsonl(workdir / "data/changelog-actions/quarantine/backfill.jsonl"))
    assert len(q) == got["backfill"].counts.quarantined
    for row in q:
        QuarantineRecord.model_validate(row)
    for row in entries:
        RawEntry.model_validate(row)


def test_outputs_validate_against_their_models(workdir, run_pipeline):
    run_pipeline()
    for row in read_jsonl(workdir / "data/changelog-actions/evidence.jsonl"):
        rec = EvidenceRecord.model_validate(row)
        assert rec.provenance.sig_hash and rec.candidates
    for row in read_jsonl(workdir / "data/changelog-actions/scored.jsonl"):
        ScoredRecord.model_validate(row)
    train = [SftSample.model_validate(r)
             for r in read_jsonl(workdir / "data/changelog-actions/exports/sft/train.jsonl")]
    assert train, "no SFT rows from the fixtures"
    assert all(s.messages[2].role == "assistant" for s in train)
    DriftReport.model_validate_json((workdir / "reports/changelog-actions/drift.json").read_text())


def test_two_runs_are_byte_identical(workdir, run_pipeline, tmp_path_factory):
    run_pipeline()
    first = snapshot_tree(workdir)
    for p in (workdir / "data").rglob("*.jsonl"):
        if "gold" not in p.parts:
            p.unlink()
    run_pipeline()
    assert snapshot_tree(workdir) == first


def test_stages_run_as_processes_write_what_they_write_in_process(workdir, run_pipeline):
    """dvc runs each data stage as `python -m stages.<name>`, where evidence, score and export turn
    the cyclic garbage collector off (tuneforge.batch); called in-process, as here, main() leaves
    it alone. Same bytes either way, and the caller's collector is still on."""
    import gc
    import os
    import subprocess
    import sys

    run_pipeline()
    assert gc.isenabled()
    first = snapshot_tree(workdir)
    for p in (workdir / "data").rglob("*.jsonl"):
        if "gold" not in p.parts:
            p.unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    # each stage's __main__ block, as `python -m` runs it, saying at exit whether the collector was on;
    # backfill by plain -m: its process pool pickles its parser by module name, which runpy's is not
    probe = ("import atexit, gc, runpy; atexit.register(lambda: print('collector on:', gc.isenabled())); "
             "runpy.run_module({!r}, run_name='__main__')")
    for stage in STAGES:
        cmd = ["-m", f"stages.{stage}"] if stage == "backfill" else ["-c", probe.format(f"stages.{stage}")]
        done = subprocess.run([sys.executable, *cmd, TASK], cwd=workdir, env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, (stage, done.stderr[-2000:])
        if stage != "backfill":
            assert "collector on: False" in done.stdout, (stage, done.stdout[-500:])
    assert snapshot_tree(workdir) == first


def test_output_does_not_depend_on_worker_count(workdir, run_pipeline, monkeypatch):
    """backfill parses on a process pool, and evidence and score do their per-record work on
    forked workers (tuneforge.forkmap); order and bytes must not follow the number of workers.
    The fixtures hold a few hundred records: spans of 3 make every stage fork. (export works in
    its own process: forked, it was slower on 2 cores.)"""
    import yaml

    from tuneforge import forkmap

    forked: list[tuple[str, int, int]] = []  # (stage, n, workers) of each map
    real_map = forkmap.ordered_map

    def spy_for(name: str):
        def spy(fn, n, workers=0, span=0):
            forked.append((name, n, workers or forkmap.cpu_workers()))
            return real_map(fn, n, workers, span)
        return spy

    def run_with(workers: int, span: int) -> dict[str, bytes]:
        params = yaml.safe_load((workdir / "params.yaml").read_text())
        params["backfill"]["workers"] = params["evidence"]["workers"] = workers
        (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        monkeypatch.setattr(forkmap, "SPAN", span)
        monkeypatch.setattr(forkmap, "cpu_workers", lambda: workers)
        for p in (workdir / "data").rglob("*.jsonl"):
            if "gold" not in p.parts:
                p.unlink()
        forked.clear()
        run_pipeline()
        return snapshot_tree(workdir)

    from stages import evidence, score
    for stage in (evidence, score):
        monkeypatch.setattr(stage, "ordered_map", spy_for(stage.__name__))
    serial = run_with(1, forkmap.SPAN)
    assert len(serial) > 3
    assert run_with(3, 3) == serial
    # each stage forked (two spans or more on more than one worker)
    ran = {(stage, n >= 6 and w > 1) for stage, n, w in forked}
    assert {("stages.evidence", True), ("stages.score", True)} <= ran, forked


def test_gold_entries_never_reach_an_export(workdir, run_pipeline):
    run_pipeline()
    entries = list(read_jsonl(workdir / "data/changelog-actions/entries.jsonl"))
    train = list(read_jsonl(workdir / "data/changelog-actions/exports/sft/train.jsonl"))
    assert len(train) >= 4
    # promote some training entries to gold (a near-duplicate one with changed case/punctuation)
    picked = [e for e in entries if any(content_key(e["text"]) == t["id"] for t in train)][:3]
    gold_rows = [{"text": e["text"], "hint": e["hint"], "product": e["product"],
                  "label": json.loads(next(t for t in train if t["id"] == e["id"])["messages"][2]["content"]),
                  "rule": 7} for e in picked]
    gold_rows[0]["text"] = gold_rows[0]["text"].upper().rstrip(".") + "!!"
    with open(workdir / "data/gold/holdout.jsonl", "w") as f:
        for row in gold_rows:
            f.write(json.dumps(row) + "\n")
    run_pipeline()
    gold_keys = {content_key(r["text"]) for r in gold_rows}
    for split in ("train", "valid"):
        for row in read_jsonl(workdir / f"data/changelog-actions/exports/sft/{split}.jsonl"):
            user = row["messages"][1]["content"]
            entry_text = user.split("Entry: ", 1)[1]
            assert content_key(entry_text) not in gold_keys
    for row in read_jsonl(workdir / "data/changelog-actions/exports/rag/rag.jsonl"):
        assert content_key(row["text"]) not in gold_keys
    q = [r for r in read_jsonl(workdir / "data/changelog-actions/quarantine/export.jsonl")
         if r["reason"] == "gold_overlap"]
    assert len(q) == 3
    # evidence carries the gold label as a candidate
    ev = [r for r in read_jsonl(workdir / "data/changelog-actions/evidence.jsonl")
          if any(c["source"] == "gold" for c in r["candidates"])]
    assert len(ev) == 3


def test_bad_input_is_quarantined_not_fatal(workdir, run_pipeline):
    snap = workdir / "snapshot"
    (snap / "weird").mkdir()
    (snap / "weird" / "README").write_text("Just a paragraph of prose that is no changelog at all.\n")
    (snap / "weird" / "CHANGELOG.md").write_bytes(
        b"# Changelog\n\n## [1.0.0] - 2024-01-01\n\n### Fixed\n"
        b"- Fix crash on \xff\xfe invalid bytes in config\n"
        b"- Fix a NUL \x00 byte in output\n"
        b"- ok\n"
        b"- " + b"very long entry " * 300 + b"\n"
        b"- Fix crash when the cache directory is missing\n"
        b"- Fix crash when the cache directory is missing\n")
    # read as Keep a Changelog, but nothing in it is an entry: one record, the file
    (snap / "weird" / "CHANGES.md").write_text("# Changelog\n\n## [0.1.0] - 2024-01-01\n\nNothing yet.\n")
    run_pipeline()
    q = {(r["source_file"], r["reason"])
         for r in read_jsonl(workdir / "data/changelog-actions/quarantine/backfill.jsonl")}
    reasons = {reason for src, reason in q if src.startswith("weird/")}
    assert {"unknown_format", "invalid_utf8", "entry_too_short", "entry_too_long"} <= reasons, reasons
    assert ("weird/CHANGES.md", "no_entries") in q
    # parsers strip C0 control characters (old NEWS files use form feeds); the entry stays
    texts = [r["text"] for r in read_jsonl(workdir / "data/changelog-actions/entries.jsonl")]
    assert "Fix a NUL byte in output" in texts
    backfill = receipts(workdir)["backfill"]
    assert backfill.counts.deduplicated >= 1
    for row in read_jsonl(workdir / "data/changelog-actions/quarantine/backfill.jsonl"):
        if row["reason"] not in ("unknown_format", "no_entries"):
            assert row["line"] and row["line"] >= 1
        assert row["source_file"] in row["detail"] or row["reason"] == "unreadable_file"


def test_secrets_never_reach_an_output(workdir, run_pipeline):
    from tuneforge.redact import find_secrets

    leak = "https://ci:" + "pa55w0rd" * 2 + "@git.example.com/x.git"
    (workdir / "snapshot" / "leaky").mkdir()
    (workdir / "snapshot" / "leaky" / "CHANGELOG.md").write_text(
        "# Changelog\n\n## [2.0.0] - 2024-05-01\n\n### Fixed\n"
        f"- Fix clone from {leak} failing with a hang\n"
        "- Fix `OPENAI_API_KEY=" + "sk-proj-" + "Ab12" * 8 + "` being printed in debug logs\n")
    run_pipeline()
    for p in list((workdir / "data").rglob("*.jsonl")) + list((workdir / "reports").rglob("*.json")):
        if "gold" in p.parts:
            continue
        text = p.read_text()
        assert "pa55w0rd" not in text and "Ab12Ab12" not in text, p
        assert find_secrets(text) == [], p
    assert receipts(workdir)["backfill"].counts.extra["redactions"] >= 2


def test_drift_report_compares_with_a_tagged_build_and_reruns_identically(workdir, run_pipeline):
    """Drift is measured against the report export.drift_since's git tag committed, never
    against whatever the last run left: with no repository there is no baseline (and the
    report says why); with the tag, its distributions are `previous`; a rerun writes the same
    bytes. (Before, the second run compared with the first and the report changed each run.)"""
    import subprocess

    since = yaml.safe_load((workdir / "params.yaml").read_text())["export"]["drift_since"]
    drift = workdir / "reports/changelog-actions/drift.json"
    run_pipeline()
    first = DriftReport.model_validate_json(drift.read_text())
    assert not first.has_previous and first.since.startswith(f"{since}: not read")
    # a repository whose tag holds a drift report whose fix share was 0.3 higher
    tagged = first.model_dump(mode="json")
    tagged["current"]["kind"] = {**first.current["kind"], "fix": first.current["kind"]["fix"] + 0.3}
    drift.write_text(json.dumps(tagged))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for cmd in (["init", "-q"], ["add", str(drift.relative_to(workdir))], ["commit", "-q", "-m", "build"],
                ["tag", since]):
        subprocess.run(git + cmd, cwd=workdir, check=True, capture_output=True)
    run_pipeline()
    second = DriftReport.model_validate_json(drift.read_text())
    assert second.has_previous and second.since == since and second.previous == tagged["current"]
    assert [(f.dimension, f.key) for f in second.flags] == [("kind", "fix")]
    again = drift.read_bytes()
    run_pipeline()
    assert drift.read_bytes() == again


def test_drift_baseline_is_read_through_releases_without_the_tag(workdir, run_pipeline):
    """A clone without tags (a fresh machine's work tree had none; `make tags` recreates them)
    writes the same drift report as one with the tag: the release's commit comes from RELEASES.
    Session 32's fresh build wrote `has_previous: false` for a report v21 had committed with
    v14's baseline, so export's output depended on the clone's tags."""
    import subprocess

    since = yaml.safe_load((workdir / "params.yaml").read_text())["export"]["drift_since"]
    drift = workdir / "reports/changelog-actions/drift.json"
    run_pipeline()
    released = DriftReport.model_validate_json(drift.read_text()).model_dump(mode="json")
    released["current"]["kind"] = {**released["current"]["kind"], "fix": released["current"]["kind"]["fix"] + 0.3}
    drift.write_text(json.dumps(released))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for cmd in (["init", "-q"], ["add", str(drift.relative_to(workdir))], ["commit", "-q", "-m", "build"]):
        subprocess.run(git + cmd, cwd=workdir, check=True, capture_output=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=workdir, check=True, capture_output=True,
                            text=True).stdout.strip()
    (workdir / "RELEASES").write_text(f"v0 {'0' * 40}\n{since} {commit}\n")
    run_pipeline()
    untagged = drift.read_bytes()
    report = DriftReport.model_validate_json(untagged)
    assert report.has_previous and report.since == since and report.previous == released["current"]
    subprocess.run(git + ["tag", since, commit], cwd=workdir, check=True, capture_output=True)
    run_pipeline()
    assert drift.read_bytes() == untagged


def test_releases_file_errors_name_the_line(tmp_path):
    from tuneforge.releases import release_commits, resolve

    (tmp_path / "RELEASES").write_text(f"v1 {'a' * 40}\n\nv2 abc123\n")
    with pytest.raises(ValueError, match=r"RELEASES:3: not '<version> <40-hex commit>'"):
        release_commits(tmp_path)
    (tmp_path / "RELEASES").write_text(f"v1 {'a' * 40}\nv1 {'b' * 40}\n")
    with pytest.raises(ValueError, match="RELEASES:2: v1 listed twice"):
        release_commits(tmp_path)
    (tmp_path / "RELEASES").write_text(f"v1 {'a' * 40}\n")
    assert resolve("v1", tmp_path) == "a" * 40 and resolve("main", tmp_path) == "main"
    assert release_commits(tmp_path / "nowhere") == {}


def test_accounting_mismatch_fails_the_stage(workdir):
    from tuneforge.receipts import AccountingError, Receipt

    with pytest.raises(AccountingError, match="records in"):
        Receipt("demo", {}).finish(workdir / "r.json", records_in=3, records_out=1, quarantined=1)


def test_oversize_file_is_one_quarantine_row_naming_the_file():
    from stages.backfill import parse_file
    from tuneforge.config import Backfill

    cfg = Backfill(min_chars=8, max_chars=2000, max_file_mb=1, workers=1)
    (row,), _, _ = parse_file((0, ("pkg/NEWS", b"* entry\n" * (1 << 18), None)), cfg, run="t")
    kind, line, reason, detail, _ = row
    assert (kind, line, reason.value) == ("drop", None, "unreadable_file")
    assert detail.startswith("pkg/NEWS: ") and "max_file_mb" in detail


def test_parse_file_keeps_back_entries_its_process_saw_in_an_earlier_file():
    """A worker does not send what it already saw earlier in the snapshot (a duplicate
    whatever the others saw); it counts them, with their redactions. A new run forgets."""
    from stages.backfill import parse_file
    from tuneforge.config import Backfill

    cfg = Backfill(min_chars=8, max_chars=2000, max_file_mb=1, workers=1)
    # built from parts: no tracked file may hold a credential, tests included
    secret = "Fix login via https://bob:" + "hunter2" * 2 + "@example.org/repo now"
    a = f"# Changelog\n\n## 1.0\n\n- Add a frobnicator option\n- {secret}\n".encode()
    b = (f"# Changelog\n\n## 2.0\n\n- {secret}\n- Add a frobnicator option\n"
         f"- Add a frobnicator option\n- Drop the old widget API\n").encode()

    def entries(records):
        return [r[2] for r in records if r[0] == "entry"]

    first, seen, _ = parse_file((0, ("pkg/CHANGELOG.md", a, None)), cfg, run="one")
    assert len(entries(first)) == 2 and seen == 0
    second, seen, redactions = parse_file((1, ("pkg/CHANGELOG.md", b, None)), cfg, run="one")
    assert entries(second) == ["Drop the old widget API"] and seen == 3
    assert sum(redactions.values()) == 1
    # a new run forgets; a file earlier in the snapshot than the one this process saw an
    # entry in sends it (the parent decides), keeping back only its own repeat
    later, seen, _ = parse_file((5, ("pkg/CHANGELOG.md", a, None)), cfg, run="two")
    assert len(entries(later)) == 2 and seen == 0
    earlier, seen, _ = parse_file((3, ("pkg/CHANGELOG.md", b, None)), cfg, run="two")
    assert len(entries(earlier)) == 3 and seen == 1


def test_a_killed_writers_temp_file_is_swept_by_the_next_write(tmp_path):
    """kill -9 mid-write leaves a temp file beside the output, never a half output; the
    next write of that output removes it, and leaves a live writer's temp alone."""
    import os
    import subprocess
    import sys

    from tuneforge.io import write_text

    out = tmp_path / "entries.jsonl"
    killed = ("import os, sys\nfrom tuneforge.io import atomic_path\n"
              f"with atomic_path({str(out)!r}) as tmp:\n"
              "    tmp.write_text('half')\n    os.kill(os.getpid(), 9)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    assert subprocess.run([sys.executable, "-c", killed], env=env).returncode == -9
    assert not out.exists() and len(list(tmp_path.glob(".entries.jsonl.*.tmp"))) == 1
    live = tmp_path / f".entries.jsonl.{os.getpid()}.x1y2.tmp"
    live.write_text("being written")
    write_text(out, "ok\n")
    assert out.read_text() == "ok\n"
    assert list(tmp_path.glob(".entries.jsonl.*.tmp")) == [live]


def test_score_names_the_file_and_line_of_a_bad_evidence_record(workdir, monkeypatch):
    """score reads evidence on forked workers; a line that is not an EvidenceRecord still stops
    it with the file and line, as io.read_models words it."""
    from stages import backfill, evidence, score
    from tuneforge import forkmap

    for stage in (backfill, evidence):
        assert stage.main([TASK]) == 0
    path = Path("data") / TASK / "evidence.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > 8
    row = json.loads(lines[6])
    del row["provenance"]
    lines[6] = json.dumps(row) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    monkeypatch.setattr(forkmap, "SPAN", 2)  # forked, the bad line in a worker's span
    monkeypatch.setattr(forkmap, "cpu_workers", lambda: 2)
    with pytest.raises(ValueError, match=rf"{path}:7: not a valid EvidenceRecord: .*\(provenance: Field required\)"):
        score.main([TASK])
    assert not (Path("data") / TASK / "scored.jsonl").exists()  # nothing half-written left behind
