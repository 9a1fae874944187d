"""The benchmark's own plumbing (never its timings): resampling, the plain baseline,
the lock comparison verify-repro and bench build rely on, and the README table."""
import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.bench import pipeline
from tools.bench.pipeline import dvc_noop_floor, plain_pipeline, real_entries, receipt_of, write_resampled
from tools.bench.report import TARGETS, table
from tools.verify_repro import build_clean_clone, compare_locks, pipeline_stages
from tuneforge import config, names

from .conftest import ROOT, TASK

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
    params = config.load(ROOT / "params.yaml")
    counts = plain_pipeline(tmp_path / "snap", tmp_path / "out", ROOT / params.tasks[TASK].gold, TASK, params)
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
    """Exempt: each task's receipts and drift report, and the shared base stage's receipt;
    another task's, or a file that only starts like a receipts folder, is compared."""
    a, b = tmp_path / "a.lock", tmp_path / "b.lock"
    exempt = {"reports/t1/receipts/train.json": ("3", "8"), "reports/t1/drift.json": ("5", "6"),
              "reports/receipts/base.json": ("7", "0")}
    compared = {"reports/t2/drift.json": ("1", "2"), "reports/t1/receipts.json": ("1", "2")}
    a.write_text(lock({"m.gguf": "1", "x.json": "2", "gone": "4"} | {k: v[0] for k, v in (exempt | compared).items()}))
    b.write_text(lock({"m.gguf": "1", "x.json": "9"} | {k: v[1] for k, v in (exempt | compared).items()}))
    identical, moved, n = compare_locks(a, b, ["t1"])
    assert (identical, moved, n) == (1, ["gone", *sorted(compared), "x.json"], 5)


def _pipeline_with_two_tasks(tmp_path):
    """The repo's dvc.yaml and params.yaml with a second task listed."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"]["commit-messages"] = dict(params["tasks"][TASK], package="commit_messages",
                                              model_name="tuneforge-commit-messages")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def test_clean_build_targets_are_the_stages_dvc_expands_in_pipeline_order(tmp_path):
    """verify-repro and bench build run `dvc repro --single-item` on each of these: base once,
    every other stage once per task, named as DVC names them."""
    repo = _pipeline_with_two_tasks(tmp_path)
    stages = pipeline_stages(repo)
    assert stages[:3] == [f"backfill@{TASK}", "backfill@commit-messages", f"evidence@{TASK}"]
    assert stages.count("base") == 1 and len(stages) == 1 + 2 * 10
    assert stages.index("base") < stages.index(f"train@{TASK}")
    subprocess.run(["dvc", "init", "-q", "--no-scm"], cwd=repo, check=True)
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=repo, check=True,
                            capture_output=True, text=True).stdout.split()
    assert stages == listed


def test_clean_clone_builds_every_target_with_its_own_cache_holding_only_downloads(tmp_path, monkeypatch):
    """A toy pipeline in a committed repo: each target sees the clone's own .cache (never this
    machine's TUNEFORGE_CACHE) with the shared downloads linked in and the eval memo left out."""
    repo, machine = tmp_path / "repo", tmp_path / "machine-cache"
    for d in ("wheels", "eval"):
        (machine / d).mkdir(parents=True)
    monkeypatch.setattr(names, "CACHE", machine)
    monkeypatch.setenv("TUNEFORGE_CACHE", str(machine))
    repo.mkdir()
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    check = 'test -z "$TUNEFORGE_CACHE" && test -L .cache/wheels && test ! -e .cache/eval'
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "base": {"cmd": f"{check} && echo b > b.txt", "outs": ["b.txt"]},
        "train": {"foreach": "${tasks}", "do": {"cmd": f"{check} && cat b.txt > t-${{key}}.txt",
                                                "deps": ["b.txt"], "outs": ["t-${key}.txt"]}}}}))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "toy"]):
        subprocess.run(cmd, cwd=repo, check=True, env={**os.environ, **env})
    stage_s, _ = build_clean_clone(repo, tmp_path / "clone")
    tasks = yaml.safe_load((ROOT / "params.yaml").read_text())["tasks"]
    assert list(stage_s) == ["base", *(f"train@{t}" for t in tasks)]
    assert (tmp_path / "clone" / f"t-{TASK}.txt").read_text() == "b\n"


def test_each_build_target_has_its_receipt_where_the_stage_writes_it():
    assert str(receipt_of(f"train@{TASK}")) == f"reports/{TASK}/receipts/train.json"
    assert str(receipt_of("base")) == "reports/receipts/base.json"
    with pytest.raises(ValueError, match="every stage but base runs per task"):
        receipt_of("train")


def test_data_section_runs_the_task_stages_on_the_resampled_snapshot(monkeypatch):
    """The data section's plumbing (the repo's params with the task's snapshot swapped, dvc.yaml
    beside them, `python -m stages.<stage> <task>`, the task's receipts), on 3 entries x 100."""
    monkeypatch.setattr(pipeline, "real_entries", lambda snapshot: ENTRIES)
    params, task = config.for_command(ROOT / "params.yaml", TASK)
    out = pipeline.bench_data(params, task, [300], scale=600)
    size = out["sizes"]["300"]
    assert size["entries"] == size["parsed"] == 300 and size["unique"] == len(ENTRIES)
    assert list(size["stage_s"]) == list(size["peak_rss_mb"]) == ["backfill", "evidence", "score", "export"]
    assert all(mb > 10 for mb in size["peak_rss_mb"].values())  # each stage's own receipt
    # the sampled memory of a stage's process tree (its workers included): a real figure, below a
    # GB here, not the bench process's own size carried into the child
    assert list(size["tree_pss_mb"]) == list(size["peak_rss_mb"])
    assert all(10 < mb < 1024 for mb in size["tree_pss_mb"].values()), size["tree_pss_mb"]
    assert size["baseline_json"]["parsed"] == 300 and out["at_entries"] == 300
    big = out["scale"]  # the stages alone at --scale entries, no baseline
    assert big["entries"] == big["parsed"] == 600 and big["unique"] == len(ENTRIES) and "baseline_json" not in big
    assert out["labeler"]["entries"] == len(ENTRIES) and out["labeler"]["same_labels"] is True
    text = table({"sections": {"data": out}})
    assert "at 600 entries" in text and "data stages at 300 entries: backfill" in text
    assert f"over the {len(ENTRIES)} real snapshot entries" in text
    assert "(with its workers: " in text


def test_table_lists_each_measured_figure_with_its_target():
    report = {"machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24}, "ran": {"sha256": "d"},
              "sections": {"sha256": {"sha256_mb_per_s": 900.0, "baseline_sha256sum_mb_per_s": 450.0,
                                      "ratio": 2.0}}}
    text = table(report)
    assert "`sha256_mb_per_s` | 900.0 MB/s | 450.0 MB/s | 2.0×" in text
    assert TARGETS["sha256_mb_per_s"] in text and "entries_per_s" not in text


def test_table_names_the_machine_each_section_ran_on():
    """`make bench ONLY=data` reruns one section, maybe on another machine: the header must not
    claim the other sections' figures for it (it did: one machine line, the last run's)."""
    sha = {"sha256_mb_per_s": 900.0, "baseline_sha256sum_mb_per_s": 450.0, "ratio": 2.0}
    report = {"machine": {"cpu": "Xeon", "cores": 2, "memory_gib": 24}, "ran": {"sha256": "d1", "decode": "d0"},
              "sections": {"sha256": {**sha, "machine": {"cpu": "Xeon", "cores": 2, "memory_gib": 24}},
                           "decode": {"tokens_per_s": 1.0}}}
    from tools.bench.report import measured_on

    head = measured_on(report)
    assert "sha256 d1 on Xeon, 2 cores, 24 GiB" in head
    assert "decode d0 on a machine not recorded" in head and "decode d0 on Xeon" not in head
    del report["sections"]["decode"], report["ran"]["decode"]
    assert table(report).splitlines()[0] == measured_on(report)  # the table's header line


def test_serve_quantiles_are_the_samples_median_and_95th_percentile():
    from tools.bench.serve import quantiles

    assert quantiles([i / 1000 for i in range(1, 101)]) == {"p50_ms": 50.5, "p95_ms": 95.0}  # 95.05, to 0.1 ms
    assert quantiles([0.25]) == {"p50_ms": 250.0, "p95_ms": 250.0}


def test_table_shows_served_rates_beside_the_in_process_baseline():
    lat = {"p50_ms": 900.0, "p95_ms": 1500.0}
    serve = {"task": "t", "model": "m.gguf", "requests": 16, "served_vs_in_process": 0.95,
             "in_process": {"requests_per_s": 1.0, **lat}, "served_1_clients": {"requests_per_s": 0.95, **lat},
             "served_4_clients": {"requests_per_s": 0.97, "p50_ms": 3900.0, "p95_ms": 4100.0},
             "retrieval": {"p50_ms": 4.2, "p95_ms": 7.9, "k": 3, "queries": 200, "rag_rows": 27000,
                           "index_build_s": 3.1}}
    text = table({"machine": {}, "ran": {"serve": "d"}, "sections": {"serve": serve}})
    assert ("`served_requests_per_s` | t (m.gguf, 16 requests): 1 client: 0.95/s, p50 900 ms, p95 1500 ms; "
            "4 clients: 0.97/s, p50 3900 ms, p95 4100 ms | predict in-process: 1.0/s, p50 900 ms, p95 1500 ms "
            "| 0.95×") in text
    assert "p50 4.2 ms, p95 7.9 ms (k=3, 200 queries over 27,000 rows" in text
    # a build that promoted nothing is timed on its report model, and the row says so
    text = table({"machine": {}, "ran": {"serve": "d"}, "sections": {"serve": {**serve, "promoted": False}}})
    assert "t (m.gguf, not promoted: the build's report model, pinned, 16 requests)" in text


def test_table_lists_stages_in_pipeline_order_whatever_the_json_order():
    """json is written with sorted keys; the table follows dvc.yaml."""
    stages = {"backfill": 1.0, "eval": 2.0, "evidence": 3.0, "register": 0.5, "train": 9.0}
    build = {"noop_repro_s": 1.0, "baseline_dvc_status_s": 1.0, "noop_ratio": 1.0,
             "incremental": {"s": 1.0, "param": "p"}, "full_build_total_s": 60.0,
             "incremental_ratio": 0.1, "full_build_s": dict(sorted(stages.items())),
             "peak_rss_mb": dict(sorted(stages.items()))}
    text = table({"sections": {"build": build}})
    assert "1.0 min (backfill 1.0, evidence 3.0, train 9.0, eval 2.0, register 0.5)" in text
    # the per-task pipeline's names (<stage>@<task>, base shared): by stage, then task
    stages = {f"train@{TASK}": 9.0, "base": 4.0, "eval@b": 1.0, f"eval@{TASK}": 2.0, f"backfill@{TASK}": 1.0}
    build |= {"full_build_s": dict(sorted(stages.items())), "peak_rss_mb": dict(sorted(stages.items()))}
    assert (f"(backfill@{TASK} 1.0, base 4.0, train@{TASK} 9.0, eval@b 1.0, eval@{TASK} 2.0)"
            in table({"sections": {"build": build}}))


def test_fidelity_share_is_the_checks_inside_each_eval_over_the_rest_of_it():
    from tools.bench.pipeline import fidelity_share

    def receipt(duration_s: float, fidelity_ms: int | None = None) -> dict:
        extra = {} if fidelity_ms is None else {"fidelity_ms": fidelity_ms}
        return {"duration_s": duration_s, "counts": {"extra": extra}}

    receipts = {"eval@a": receipt(430.0, 30_000), "eval@b": receipt(240.0, 40_000), "train@a": receipt(9.0)}
    shares = fidelity_share(receipts)
    assert shares == {"a": {"fidelity_s": 30.0, "eval_s": 430.0, "share": 0.075},
                      "b": {"fidelity_s": 40.0, "eval_s": 240.0, "share": 0.2}}
    stages = {"eval@a": 430.0, "eval@b": 240.0, "train@a": 9.0}
    build = {"noop_repro_s": 1.0, "baseline_dvc_status_s": 1.0, "noop_ratio": 1.0,
             "incremental": {"s": 1.0, "param": "p"}, "full_build_total_s": 60.0, "incremental_ratio": 0.1,
             "full_build_s": stages, "peak_rss_mb": stages, "fidelity_share_of_eval": shares, "forced": True}
    text = table({"sections": {"build": build}})
    assert ("| `fidelity_share_of_eval` | b: fidelity checks 40.0 s inside eval | the rest of eval: 200.0 s | "
            "20.0% | ≤ 10% of eval |") in text
    # a clean build that did not force its stages let DVC skip them: no share is shown for it
    text = table({"sections": {"build": {**build, "forced": False}}})
    assert "b: fidelity" not in text and "not measured: that clean build skipped fidelity" in text


def test_clean_build_forces_every_stage(tmp_path, monkeypatch):
    """A stage whose outputs are all in git and whose deps come out bit-identical is 'unchanged'
    to DVC: without --force the clean build skipped fidelity and timed nothing (0.7 s)."""
    import subprocess as sp

    from tools import verify_repro

    calls = []
    monkeypatch.setattr(verify_repro.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or sp.CompletedProcess(
        cmd, 0, "", ""))
    monkeypatch.setattr(verify_repro, "pipeline_stages", lambda clone: ["base", "fidelity@a"])
    verify_repro.build_clean_clone(tmp_path / "repo", tmp_path / "clone")
    repros = [c for c in calls if c[:2] == ["dvc", "repro"]]
    assert repros and all("--force" in c for c in repros)


def test_a_clone_builds_with_its_own_library(tmp_path):
    """The venv installs this project editable: without the clone's src/ first on the path, a clean
    clone's stages would import this work tree's tuneforge, uncommitted edits included."""
    import subprocess as sp
    import sys

    from tools import verify_repro

    clone = tmp_path / "clone"
    (clone / "src" / "tuneforge").mkdir(parents=True)
    (clone / "src" / "tuneforge" / "__init__.py").write_text("")
    out = sp.run([sys.executable, "-c", "import tuneforge; print(tuneforge.__file__)"], cwd=tmp_path,
                 env=verify_repro.clone_env(clone), capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out).is_relative_to(clone), out


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


def test_train_flops_count_every_frozen_linear_weight(tiny_base):
    """peak_share's FLOPs a token: 4 per frozen decoder weight (forward, input gradient) plus
    attention; the weight count must be the model's own, so a projection the formula forgets
    (or counts twice) fails here."""
    import torch
    from transformers import AutoModelForCausalLM

    from tools.bench.model import train_flops_per_token

    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    weights = sum(m.weight.numel() for name, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and ".layers." in name)
    cfg = model.config
    assert train_flops_per_token(cfg, 0) == 4 * weights
    per_len = train_flops_per_token(cfg, 10) - train_flops_per_token(cfg, 0)
    assert per_len == cfg.num_hidden_layers * 3 * 4 * 10 * cfg.hidden_size
    # train.lora_layers: the blocks below the adapted ones run forward only (2 per weight, one
    # attention pass); every block adapted is the same as 0
    n, top = cfg.num_hidden_layers, 1
    assert train_flops_per_token(cfg, 10, n) == train_flops_per_token(cfg, 10)
    below = [m.weight.numel() for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and ".layers.0." in name]
    assert train_flops_per_token(cfg, 10, top) == (train_flops_per_token(cfg, 10)
                                                   - (n - top) * (2 * sum(below) + 2 * 4 * 10 * cfg.hidden_size))


def test_step_shares_sort_a_profiled_run_into_groups(tiny_base, tmp_path):
    """bench train's step_shares: the profiler's self CPU time of a real (tiny) training run, in
    STEP_GROUPS, shares summing to 1; matrix products and the LM head's loss are found by name,
    so a group whose operator names no longer match (a torch rename) shows up here as missing."""
    from tests.test_train_speed import tiny_trainer, train_cfg
    from tools.bench.model import step_shares

    shares = step_shares(tiny_trainer(tiny_base, tmp_path, train_cfg(max_steps=2, logging_steps=1)))
    assert abs(sum(shares.values()) - 1) < 0.01
    assert {"matmul", "LM head loss and token accuracy", "optimizer and gradient clipping"} <= set(shares)
    assert all(v >= 0 for v in shares.values())


def _built(root: Path, precision: dict[str, str], gguf: str, entries: str = "e1",
           isa: dict[str, str] | None = None) -> Path:
    """A repo's dvc.yaml, a dvc.lock of one data and one model output per task, and each
    task's train receipt saying what train.precision resolved to (and, where `isa` names the
    task, the matrix instruction set it ran on; older receipts lack the key)."""
    root.mkdir()
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    stages = {}
    for task, prec in precision.items():
        stages[f"export@{task}"] = {"outs": [{"path": f"data/{task}/exports/sft", "md5": entries}]}
        stages[f"quantize@{task}"] = {"outs": [{"path": f"models/{task}/m.gguf", "md5": gguf}]}
        receipt = root / names.TaskPaths.for_task(task).receipt("train")
        receipt.parent.mkdir(parents=True)
        resolved = {"precision": prec, "device": "cpu"} | ({"matmul_isa": isa[task]} if task in (isa or {}) else {})
        receipt.write_text(json.dumps({"params": {"resolved": resolved}}))
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return root


def test_a_precision_the_hardware_chose_explains_model_outputs_only(tmp_path):
    """train.precision: auto trained here in bf16, the committed build in fp32: its model
    outputs differ by design and are named so; a data output that differs is not explained;
    a task trained alike explains nothing (planted: the committed receipt read for both)."""
    from tools.verify_repro import explained_by_precision

    repo = _built(tmp_path / "repo", {"a": "fp32", "b": "fp32"}, gguf="1")
    clone = _built(tmp_path / "clone", {"a": "bf16", "b": "fp32"}, gguf="2", entries="e2")
    moved = compare_locks(repo / "dvc.lock", clone / "dvc.lock", ["a", "b"])[1]
    assert moved == ["data/a/exports/sft", "data/b/exports/sft", "models/a/m.gguf", "models/b/m.gguf"]
    notes, explained = explained_by_precision(repo, clone, moved, ["a", "b"])
    assert explained == ["models/a/m.gguf"]
    assert len(notes) == 1 and "train@a ran as {'precision': 'bf16'" in notes[0] and "'fp32'" in notes[0]


def test_another_matrix_instruction_set_explains_model_outputs_too(tmp_path):
    """Both in bf16, the committed build on AMX and the clone on AVX512-BF16: task a's model
    outputs differ by design; task b, whose committed receipt predates matmul_isa, is compared
    on what both record only (same precision: its differing GGUF stays unexplained). Planted:
    the receipts' matmul_isa ignored -> a is unexplained, fails; a key one side lacks counted
    as a difference -> b is explained, fails."""
    from tools.verify_repro import explained_by_precision

    repo = _built(tmp_path / "repo", {"a": "bf16", "b": "bf16"}, gguf="1", isa={"a": "amx"})
    clone = _built(tmp_path / "clone", {"a": "bf16", "b": "bf16"}, gguf="2",
                   isa={"a": "avx512_bf16", "b": "avx512_bf16"})
    moved = compare_locks(repo / "dvc.lock", clone / "dvc.lock", ["a", "b"])[1]
    notes, explained = explained_by_precision(repo, clone, moved, ["a", "b"])
    assert explained == ["models/a/m.gguf"]
    assert len(notes) == 1 and "'matmul_isa': 'avx512_bf16'" in notes[0] and "'amx'" in notes[0]


def test_matmul_isa_names_the_best_instruction_set_the_cpu_flags_offer(tmp_path):
    """/proc/cpuinfo's flags -> the ISA oneDNN multiplies on, most capable first; no file ->
    unknown (planted: the order reversed -> an AMX machine reads avx2, fails)."""
    from tuneforge.trainer import matmul_isa

    def flags(*names: str) -> Path:
        f = tmp_path / "_".join(names or ("none",))
        f.write_text("processor\t: 0\nflags\t\t: fpu sse2 " + " ".join(names) + "\n\n")
        return f

    assert matmul_isa(False, flags("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")) == "amx"
    assert matmul_isa(False, flags("avx2", "avx512f", "avx512_bf16")) == "avx512_bf16"
    assert matmul_isa(False, flags("avx2", "avx512f")) == "avx512"
    assert matmul_isa(False, flags("avx2")) == "avx2"
    assert matmul_isa(False, flags()) == "baseline"
    assert matmul_isa(False, tmp_path / "absent") == "unknown"


def test_a_path_two_lock_entries_claim_is_refused(tmp_path):
    """A stale stage's lock entry (one dvc.yaml no longer defines) claiming a live output would
    be compared in its place (planted: the later entry silently wins -> no error, fails)."""
    a = tmp_path / "a.lock"
    a.write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "eval@t": {"outs": [{"path": "reports/t/fidelity.json", "md5": "new"}]},
        "fidelity@t": {"outs": [{"path": "reports/t/fidelity.json", "md5": "stale"}]}}}))
    with pytest.raises(ValueError, match="reports/t/fidelity.json is an output of both eval@t and fidelity@t"):
        compare_locks(a, a, ["t"])


def test_a_failed_fidelity_reproduction_names_the_figures_that_differ(tmp_path):
    """bench fidelity's refusal says which leaves of the two reports differ (built -> cold)."""
    from tools.bench.fidelity import differences

    built, cold = tmp_path / "built.json", tmp_path / "cold.json"
    built.write_text(json.dumps({"models": {"Q8_0": {"kl_mean": 0.00227, "top1": 0.9773}}, "rows": [1, 2]}))
    cold.write_text(json.dumps({"models": {"Q8_0": {"kl_mean": 0.00228, "top1": 0.9773}}, "rows": [1, 3]}))
    assert differences(built, cold) == "models.Q8_0.kl_mean 0.00227 -> 0.00228, rows[1] 2 -> 3"
    assert differences(built, built) == "same values"
    assert differences(built, cold, limit=1).endswith("(+1 more)")


def test_table_says_whether_each_row_meets_its_target_from_the_figures_it_prints():
    """The last column is decided from the row's own numbers, never typed: the README once called
    decoding met at 6.2x, from an old run, beside a table row of 2.45x."""
    from tools.bench.report import MET, NOT_MET, REPORTED, build_budget_met

    def row(text: str, key: str) -> str:
        return next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))

    def decode(ratio: float) -> dict:
        return {"decode": {"decode_tokens_per_s": 70.0, "q8_0_free": {"tokens_per_s": 71.0},
                           "baseline_transformers": {"tokens_per_s": 28.0}, "ratio": ratio}}

    assert row(table({"sections": decode(2.45)}), "decode_tokens_per_s").endswith(f"| {NOT_MET} |")
    assert row(table({"sections": decode(5.0)}), "decode_tokens_per_s").endswith(f"| {MET} |")

    def batch(ratio: float, same: bool, kept: float = 1.1, kept_same: bool = True) -> dict:
        figures = {"rows": 12, "decoders": 2, "one_decoder_s": 12.0, "per_core_s": round(12 / ratio, 2),
                   "ratio": ratio, "same_answers": same,
                   "confirmation": {"pool_per_rows_s": 10.0, "kept_pool_s": round(10 / kept, 2), "ratio": kept,
                                    "same_answers": kept_same}}
        return {"decode": {**decode(5.0)["decode"], "eval_batch": figures}}

    assert row(table({"sections": batch(1.2, True)}), "eval_batch_s").endswith(f"| {MET} |")
    assert row(table({"sections": batch(1.2, False)}), "eval_batch_s").endswith(f"| {NOT_MET} |")  # an answer moved
    assert row(table({"sections": batch(0.95, True)}), "eval_batch_s").endswith(f"| {NOT_MET} |")
    assert row(table({"sections": batch(1.2, True)}), "eval_confirm_s").endswith(f"| {MET} |")
    assert row(table({"sections": batch(1.2, True, 0.98)}), "eval_confirm_s").endswith(f"| {NOT_MET} |")
    assert row(table({"sections": batch(1.2, True, 1.2, False)}), "eval_confirm_s").endswith(f"| {NOT_MET} |")
    sha = {"sha256_mb_per_s": 900.0, "baseline_sha256sum_mb_per_s": 1000.0}
    assert row(table({"sections": {"sha256": {**sha, "ratio": 0.9}}}), "sha256_mb_per_s").endswith(f"| {MET} |")
    assert row(table({"sections": {"sha256": {**sha, "ratio": 0.7}}}), "sha256_mb_per_s").endswith(
        f"| {NOT_MET} |")

    def size(per_s: int, ratio: float) -> dict:
        return {"entries_per_s": per_s, "s": 1.0, "ratio": ratio, "baseline_json": {"entries_per_s": 1, "s": 1.0}}

    # the data target is at 1M entries: a smaller size is shown, not judged
    lines = [line for line in table({"sections": {"data": {"sizes": {
        "10000": size(500_000, 30.0), "1000000": size(120_000, 21.0)}}}}).splitlines() if "`entries_per_s`" in line]
    assert lines[0].endswith(f"| {REPORTED} |") and lines[1].endswith(f"| {MET} |")
    line = next(line for line in table({"sections": {"data": {"sizes": {"1000000": size(120_000, 19.0)}}}})
                .splitlines() if "`entries_per_s`" in line)
    assert line.endswith(f"| {NOT_MET} |")  # fast enough, but not 20x its baseline

    def labeler(ratio: float, same: bool) -> dict:
        return {"data": {"sizes": {}, "labeler": {"entries": 10, "us_per_entry": 100.0, "ratio": ratio,
                                                  "baseline_re_us_per_entry": 100.0 * ratio, "same_labels": same}}}

    assert row(table({"sections": labeler(1.8, True)}), "labeler_us_per_entry").endswith(f"| {MET} |")
    assert row(table({"sections": labeler(1.8, False)}), "labeler_us_per_entry").endswith(f"| {NOT_MET} |")
    assert row(table({"sections": labeler(0.9, True)}), "labeler_us_per_entry").endswith(f"| {NOT_MET} |")

    # the build budget: each task with the shared base stage <= 15 min, all <= 30 min
    stages = {"base": 60.0, "train@a": 700.0, "eval@a": 100.0, "train@b": 500.0}
    assert build_budget_met(stages)
    assert not build_budget_met({**stages, "eval@a": 200.0})  # task a: 960 s with base
    assert not build_budget_met({**stages, "eval@c": 780.0, "train@c": 50.0})  # each <= 15 min, all 36.5


def test_the_labeler_row_compares_every_label_with_and_without_the_re2_stand_ins(monkeypatch):
    """bench_labeler labels the same entries both ways and says so when one label moves: a
    labeler whose answer depends on prefilter.USE_RELAXED is caught, and the switch is left on."""
    from tuneforge import prefilter, tasks

    real = tasks.get_task(TASK)
    entries = [(f"Fixed a crash in parser {i}", None, "1.0", "pkg") for i in range(5)]
    same = pipeline.bench_labeler(entries, TASK, reps=1)
    assert same["entries"] == 5 and same["same_labels"] is True and prefilter.USE_RELAXED

    def moved(text, hint, product, version):
        label, rule = real.rule_label(text, hint, product, version)
        return label, rule + (0 if prefilter.USE_RELAXED else 1)

    monkeypatch.setattr(tasks, "get_task", lambda name: dataclasses.replace(real, rule_label=moved))
    assert pipeline.bench_labeler(entries, TASK, reps=1)["same_labels"] is False
    assert prefilter.USE_RELAXED
