"""The benchmark's own plumbing (never its timings): resampling, the plain baseline,
the lock comparison verify-repro and bench build rely on, and the README table."""
import yaml

from tools.bench.pipeline import dvc_noop_floor, plain_pipeline, real_entries, write_resampled
from tools.bench.report import TARGETS, table
from tools.verify_repro import compare_locks

from .conftest import ROOT

ENTRIES = [("Fixed a crash when `--output` is a directory.", "Bug fixes", "1.0", "git"),
           ("Added a `--json` flag to `status`.", None, "1.1", "git"),
           ("Removed the deprecated `foo` command.", "Breaking changes", None, "npm")]


def test_resampled_snapshot_parses_back_to_every_entry(tmp_path):
    written = write_resampled(ENTRIES, 500, seed=1, out_dir=tmp_path / "snap", per_file=120)
    assert written == 500
    assert len(list((tmp_path / "snap").rglob("*.md"))) >= 5  # split into files of <= 120
    parsed = real_entries(tmp_path / "snap")
    assert len(parsed) == 500
    assert {(t, h, p) for t, h, _, p in parsed} <= {(t, h, p) for t, h, _, p in ENTRIES}


def test_plain_baseline_reads_every_entry_and_dedupes(tmp_path):
    write_resampled(ENTRIES, 300, seed=2, out_dir=tmp_path / "snap")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    counts = plain_pipeline(tmp_path / "snap", tmp_path / "out", ROOT / params["paths"]["gold"],
                            params["task"], params)
    assert counts["in"] == 300
    unique = sum(1 for _ in open(tmp_path / "out" / "entries.jsonl"))
    assert unique == len(ENTRIES)
    assert counts["train"] + counts["valid"] <= unique
    # the labeler's own time is part of the evidence step, which the floor relies on
    assert 0 < counts["label_s"] <= counts["step_s"]["evidence"]
    assert list(counts["step_s"]) == ["backfill", "evidence", "score", "export"]


def test_dvc_floor_builds_and_times_a_chain_of_empty_stages():
    floor = dvc_noop_floor(3, reps=1)
    assert floor["stages"] == 3
    assert floor["noop_repro_s"] > 0 and floor["dvc_status_s"] > 0 and floor["noop_ratio"] > 0


def lock(outs: dict[str, str]) -> str:
    return yaml.safe_dump({"schema": "2.0", "stages": {"s": {"cmd": "x", "outs": [
        {"path": p, "md5": h} for p, h in outs.items()]}}})


def test_compare_locks_flags_changed_and_missing_outputs_but_not_exempt_ones(tmp_path):
    params = {"paths": {"receipts_dir": "reports/receipts", "drift": "reports/drift.json"}}
    a, b = tmp_path / "a.lock", tmp_path / "b.lock"
    a.write_text(lock({"m.gguf": "1", "x.json": "2", "reports/receipts/t.json": "3", "gone": "4"}))
    b.write_text(lock({"m.gguf": "1", "x.json": "9", "reports/receipts/t.json": "8"}))
    identical, moved, compared = compare_locks(a, b, params)
    assert (identical, moved, compared) == (1, ["gone", "x.json"], 3)


def test_table_lists_each_measured_figure_with_its_target():
    report = {"machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24}, "ran": {"sha256": "d"},
              "sections": {"sha256": {"sha256_mb_per_s": 900.0, "baseline_sha256sum_mb_per_s": 450.0,
                                      "ratio": 2.0}}}
    text = table(report)
    assert "`sha256_mb_per_s` | 900.0 MB/s | 450.0 MB/s | 2.0×" in text
    assert TARGETS["sha256_mb_per_s"] in text and "entries_per_s" not in text


def test_table_lists_stages_in_pipeline_order_whatever_the_json_order():
    """json is written with sorted keys; the table follows dvc.yaml."""
    stages = {"backfill": 1.0, "eval": 2.0, "evidence": 3.0, "register": 0.5, "train": 9.0}
    build = {"noop_repro_s": 1.0, "baseline_dvc_status_s": 1.0, "noop_ratio": 1.0,
             "incremental": {"s": 1.0, "param": "p"}, "full_build_total_s": 60.0,
             "incremental_ratio": 0.1, "full_build_s": dict(sorted(stages.items())),
             "peak_rss_mb": dict(sorted(stages.items()))}
    text = table({"sections": {"build": build}})
    assert "1.0 min (backfill 1.0, evidence 3.0, train 9.0, eval 2.0, register 0.5)" in text


def test_table_shows_the_floors_beside_the_figures_they_bound():
    size = {"entries_per_s": 10, "s": 9.0, "ratio": 1.1,
            "baseline_json": {"entries_per_s": 9, "s": 10.0},
            "floor": {"stage_startup_s": {"backfill": 0.5, "export": 0.25}, "label_s": 6.0,
                      "cores": 2, "floor_s": 3.75, "max_ratio": 2.67}}
    build = {"noop_repro_s": 1.4, "baseline_dvc_status_s": 1.0, "noop_ratio": 1.4,
             "dvc_floor": {"stages": 10, "noop_repro_s": 0.9, "dvc_status_s": 0.6, "noop_ratio": 1.5},
             "incremental": {"s": 1.0, "param": "p"}, "full_build_total_s": 60.0,
             "incremental_ratio": 0.1, "full_build_s": {"train": 1.0}, "peak_rss_mb": {"train": 1.0}}
    text = table({"sections": {"data": {"sizes": {"1000": size}}, "build": build}})
    assert "four stage start-ups 0.75 s + labeling 6.0 s / 2 cores = 3.75 s, at most 2.67×" in text
    assert "DVC alone, a 10-stage `cp` chain: 0.9 s against 0.6 s, 1.5×" in text
