"""tuneforge.receipts holds every stage to records in = out + quarantined + deduplicated and
reports drift. A mutant that lets a lost record through, or hides a moved share, must fail here."""
from __future__ import annotations

import hashlib
import json
import platform
import time

import pytest

from tuneforge import receipts
from tuneforge.receipts import AccountingError, Receipt, digest, drift_report, scored_distributions, tool_versions
from tuneforge.records import DriftSeverity


def test_tool_versions():
    v = tool_versions(["pydantic", "no-such-package-tuneforge"])
    assert v["python"] == platform.python_version()
    import pydantic
    assert v["pydantic"] == pydantic.VERSION
    assert v["no-such-package-tuneforge"] == "not-installed"
    assert set(v) == {"python", "pydantic", "no-such-package-tuneforge"}


def test_digest_counts_rows_only_for_jsonl(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_bytes(b'{"a":1}\n{"a":2}\n')
    d = digest(j)
    assert (d.path, d.sha256, d.records) == (str(j), hashlib.sha256(j.read_bytes()).hexdigest(), 2)
    t = tmp_path / "b.json"
    t.write_bytes(b"{}\n{}\n")
    assert digest(str(t)).records is None


@pytest.fixture
def chdir_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_finish_writes_receipt_when_the_invariant_holds(chdir_repo):
    tmp = chdir_repo
    (tmp / "in.jsonl").write_text('{"a":1}\n{"a":2}\n{"a":3}\n')
    (tmp / "out.jsonl").write_text('{"a":1}\n')
    r = Receipt("stage_x", {"k": 1})
    r.inputs = [tmp / "in.jsonl", tmp / "missing.jsonl"]
    r.outputs = [str(tmp / "out.jsonl")]
    got = r.finish(tmp / "receipts" / "x.json", records_in=3, records_out=1, quarantined=1, deduplicated=1,
                   extra={"zeta": 2, "alpha": 1})
    on_disk = json.loads((tmp / "receipts" / "x.json").read_text())
    assert on_disk == got.model_dump(mode="json")
    assert on_disk["stage"] == "stage_x" and on_disk["params"] == {"k": 1}
    assert on_disk["invariant_holds"] is True
    assert on_disk["counts"] == {"records_in": 3, "records_out": 1, "quarantined": 1, "deduplicated": 1,
                                 "extra": {"alpha": 1, "zeta": 2}}
    assert list(on_disk["counts"]["extra"]) == ["alpha", "zeta"]
    assert [(d["path"], d["records"]) for d in on_disk["inputs"]] == [(str(tmp / "in.jsonl"), 3)]
    assert [(d["path"], d["records"]) for d in on_disk["outputs"]] == [(str(tmp / "out.jsonl"), 1)]
    assert set(on_disk["tool_versions"]) == {"python", "pydantic", "duckdb", "tqdm"}
    assert on_disk["git_revision"] == "unknown"  # tmp dir is no repository
    assert 0 <= on_disk["duration_s"] < 60 and on_disk["peak_rss_mb"] > 1


def test_finish_defaults_and_packages(chdir_repo):
    r = Receipt("s", {}, packages=["pydantic"])
    got = r.finish("r.json", records_in=2, records_out=2)
    assert got.counts.quarantined == 0 and got.counts.deduplicated == 0 and got.counts.extra == {}
    assert set(got.tool_versions) == {"python", "pydantic"}
    assert got.inputs == [] and got.outputs == []


def test_finish_duration_and_peak_memory(chdir_repo, monkeypatch):
    clock = iter([100.0, 102.50049])
    monkeypatch.setattr(receipts.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(receipts, "peak_rss_mb", lambda: 120.6)
    r = Receipt("s", {})
    got = r.finish("r.json", records_in=0, records_out=0)
    assert got.duration_s == 2.5  # milliseconds kept, no more
    assert got.peak_rss_mb == 120.6


def test_peak_rss_reads_vmhwm_and_falls_back_to_getrusage(tmp_path, monkeypatch):
    class Usage:
        ru_maxrss = 99999  # KiB on Linux

    monkeypatch.setattr(receipts.resource, "getrusage", lambda who: Usage())
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  999999 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n")
    assert receipts.peak_rss_mb(status) == 120.6  # 123456 KiB / 1024, one decimal
    assert receipts.peak_rss_mb(tmp_path / "no-procfs") == 97.7


@pytest.mark.parametrize("counts", [
    dict(records_in=3, records_out=1, quarantined=1),                   # one record lost
    dict(records_in=3, records_out=2, quarantined=1, deduplicated=1),   # one record invented
    dict(records_in=0, records_out=1),
])
def test_finish_fails_the_stage_on_a_broken_invariant_but_keeps_the_receipt(chdir_repo, counts):
    r = Receipt("dedupe", {})
    with pytest.raises(AccountingError) as e:
        r.finish("rec.json", **counts)
    q, d = counts.get("quarantined", 0), counts.get("deduplicated", 0)
    assert str(e.value) == (f"dedupe: records in ({counts['records_in']}) != out ({counts['records_out']}) + "
                            f"quarantined ({q}) + deduplicated ({d}); receipt at rec.json")
    assert json.loads((chdir_repo / "rec.json").read_text())["invariant_holds"] is False


def _scored(tmp_path, rows):
    p = tmp_path / "scored.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_scored_distributions_by_hand(tmp_path):
    rows = [
        {"text": "a" * 10, "product": "git", "category": "accepted", "label": {"kind": "fix", "severity": "low"}},
        {"text": "b" * 20, "product": "git", "category": "accepted", "label": {"kind": "fix", "severity": "high"}},
        {"text": "c" * 30, "product": "vim", "category": "rejected", "label": None},
        {"text": "d" * 40, "product": "vim", "category": "needs_human_review", "label": {"kind": "docs"}},
    ]
    d = scored_distributions(_scored(tmp_path, rows))
    assert d["records"] == 4
    assert d["kind"] == {"(none)": 0.25, "docs": 0.25, "fix": 0.5}
    assert d["severity"] == {"(none)": 0.5, "high": 0.25, "low": 0.25}
    assert d["product"] == {"git": 0.5, "vim": 0.5}
    assert d["category"] == {"accepted": 0.5, "needs_human_review": 0.25, "rejected": 0.25}
    # linear-interpolated quantiles of 10, 20, 30, 40
    assert d["text_length"] == {"p10": 13.0, "p50": 25.0, "p90": 37.0, "p99": 39.7}
    assert list(d["kind"]) == ["(none)", "docs", "fix"]
    thirds = scored_distributions(_scored(tmp_path, rows[:3]))
    assert thirds["product"] == {"git": 0.666667, "vim": 0.333333}


def test_scored_distributions_single_row(tmp_path):
    d = scored_distributions(_scored(tmp_path, [{"text": "abc", "product": "p", "category": "accepted",
                                                  "label": {"kind": "fix", "severity": "low"}}]))
    assert d["records"] == 1 and d["kind"] == {"fix": 1.0} and d["product"] == {"p": 1.0}
    assert d["text_length"] == {"p10": 3.0, "p50": 3.0, "p90": 3.0, "p99": 3.0}


def test_scored_distributions_empty_file(tmp_path):
    p = tmp_path / "scored.jsonl"
    p.write_text("")
    d = scored_distributions(p)
    assert d["records"] == 0 and d["kind"] == {} and d["text_length"] == {"p10": 0, "p50": 0, "p90": 0, "p99": 0}


CUR = {"kind": {"fix": 0.5, "docs": 0.5}, "severity": {"low": 1.0}, "product": {"git": 1.0},
       "category": {"accepted": 1.0}, "text_length": {"p10": 10.0, "p50": 50.0}}


def test_drift_report_without_previous():
    r = drift_report(CUR, None, 0.1)
    assert r.has_previous is False and r.flags == [] and r.severity == DriftSeverity.ok
    assert r.current == CUR and r.previous is None and r.threshold == 0.1
    assert drift_report(CUR, {}, 0.1).has_previous is True  # an empty previous is still a previous


def test_drift_report_flags_moves_over_threshold_only():
    prev = {"kind": {"fix": 0.7, "docs": 0.25, "test": 0.05}, "severity": {"low": 1.0},
            "product": {"git": 0.875, "vim": 0.125}, "category": {"accepted": 1.0},
            "text_length": {"p10": 10.0, "p50": 40.0}}
    r = drift_report(CUR, prev, 0.15)
    got = [(f.dimension, f.key, f.previous, f.current, f.change) for f in r.flags]
    assert got == [
        ("kind", "docs", 0.25, 0.5, 0.25),            # +0.25 > 0.15
        ("kind", "fix", 0.7, 0.5, -0.2),              # -0.2: a fall counts too
        ("text_length", "p50", 40.0, 50.0, 0.25),     # relative: +25%
    ]  # product git +0.125 and vim (gone) -0.125 are not over 0.15; test -0.05 is not
    assert r.severity == DriftSeverity.warn and r.has_previous is True and r.previous == prev


def test_drift_report_every_dimension_and_keys_that_vanished():
    cur = {"kind": {"fix": 1.0}, "severity": {"low": 0.5, "high": 0.5}, "product": {"git": 1.0},
           "category": {"accepted": 0.5, "rejected": 0.5}, "text_length": {"p50": 10.0}}
    prev = {"kind": {"fix": 0.5, "docs": 0.5}, "severity": {"low": 1.0}, "product": {"vim": 1.0},
            "category": {"accepted": 1.0}, "text_length": {"p50": 10.0}}
    got = [(f.dimension, f.key, f.change) for f in drift_report(cur, prev, 0.2).flags]
    assert got == [("kind", "docs", -0.5), ("kind", "fix", 0.5), ("severity", "high", 0.5),
                   ("severity", "low", -0.5), ("product", "git", 1.0), ("product", "vim", -1.0),
                   ("category", "accepted", -0.5), ("category", "rejected", 0.5)]


def test_drift_report_against_an_older_report_lacking_dimensions():
    """A previous report written before a dimension (or the quantiles) existed still compares."""
    cur = {"kind": {"fix": 1.0}, "severity": {}, "product": {}, "category": {"accepted": 1.0},
           "text_length": {"p50": 10.0}}
    prev = {"kind": {"fix": 1.0}}
    got = [(f.dimension, f.key, f.previous, f.current, f.change) for f in drift_report(cur, prev, 0.2).flags]
    assert got == [("category", "accepted", 0.0, 1.0, 1.0), ("text_length", "p50", 0.0, 10.0, 1.0)]
    # a dimension neither report has is simply not compared
    bare = {"kind": {"fix": 1.0}, "text_length": {}}
    assert drift_report(bare, {"kind": {"fix": 1.0}}, 0.2).flags == []


def test_drift_report_changes_carry_six_decimals():
    cur = dict(CUR, kind={"fix": 0.8234567, "docs": 0.1765433})
    prev = dict(CUR, kind={"fix": 0.5, "docs": 0.5}, text_length={"p10": 10.0, "p50": 30.0})
    got = {(f.dimension, f.key): f.change for f in drift_report(cur, prev, 0.2).flags}
    assert got == {("kind", "docs"): -0.323457, ("kind", "fix"): 0.323457, ("text_length", "p50"): 0.666667}


def test_drift_report_a_move_of_exactly_the_threshold_is_not_flagged():
    prev = json.loads(json.dumps(CUR))
    prev["kind"] = {"fix": 0.75, "docs": 0.25}
    prev["text_length"] = {"p10": 10.0, "p50": 40.0}
    assert drift_report(CUR, prev, 0.25).flags == []  # 0.25 in binary is exact


def test_drift_report_new_key_and_new_quantile():
    prev = {"kind": {"fix": 1.0}, "text_length": {"p10": 0.0}}
    cur = {"kind": {"fix": 0.5, "new": 0.5}, "severity": {}, "product": {}, "category": {},
           "text_length": {"p10": 0.0, "p50": 12.0}}
    r = drift_report(cur, prev, 0.3)
    got = [(f.dimension, f.key, f.previous, f.current, f.change) for f in r.flags]
    assert got == [("kind", "fix", 1.0, 0.5, -0.5), ("kind", "new", 0.0, 0.5, 0.5),
                   ("text_length", "p50", 0.0, 12.0, 1.0)]  # from nothing: change 1.0; 0 -> 0 stays 0


def test_drift_report_small_moves_are_ok():
    prev = json.loads(json.dumps(CUR))
    prev["kind"] = {"fix": 0.45, "docs": 0.55}
    prev["text_length"] = {"p10": 10.5, "p50": 50.0}
    r = drift_report(CUR, prev, 0.06)
    assert r.flags == [] and r.severity == DriftSeverity.ok


def test_receipt_started_is_monotonic_time():
    before = time.monotonic()
    r = Receipt("s", {})
    assert before <= r.started <= time.monotonic()
    assert r.packages == ["pydantic", "duckdb", "tqdm"] and r.inputs == [] and r.outputs == []


def test_peak_rss_is_the_stages_own_not_its_parents():
    """A stage run by a process holding ~400 MB (dvc, the bench's 10M resample) reports its own
    peak: getrusage's ru_maxrss carries the parent's across exec, /proc's VmHWM does not."""
    import subprocess
    import sys

    held = bytearray(400 << 20)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: resident
    out = subprocess.run([sys.executable, "-c", "from tuneforge.receipts import peak_rss_mb; print(peak_rss_mb())"],
                         capture_output=True, text=True, check=True)
    assert float(out.stdout) < 200, out.stdout
    del held
