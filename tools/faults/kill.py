"""kill -9: SIGKILLs at seeded moments of the stages and of `dvc repro`; reruns byte-identical."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from tools.faults.roots import (
    DATA_STAGES,
    FIXTURES,
    KILL_MODEL_STAGES,
    TASK,
    copy_root,
    freeze_code,
    init_dvc_repo,
    make_root,
    repo_params,
    run_stage,
    sh,
    snapshot_path,
    stage_cmd,
    stage_env,
    task_entry,
)
from tools.faults.tiny import write_tiny_exports, write_tiny_params
from tuneforge import names
from tuneforge.io import canonical_json, sha256_file


def _norm_file(p: Path) -> str:
    """sha256 of a file; receipts without their timing fields, eval's answer- and KL-memo
    counts (machine-local state: a rerun after a kill finds what the killed run memoised) and
    train's resumed_from_step (killed after a checkpoint, the rerun resumes from it and says
    so; its adapter is the same bytes), and the drift report without its previous-run half;
    all of these differ by design."""
    if p.parent.name == "receipts" and p.suffix == ".json":
        obj = json.loads(p.read_text(encoding="utf-8"))
        obj.pop("duration_s", None)
        obj.pop("peak_rss_mb", None)
        for key in ("cache_hits", "decoded", "fidelity_forced", "fidelity_memo_hits", "fidelity_ms",
                    "fidelity_round_trip_ms", "resumed_from_step"):
            obj.get("counts", {}).get("extra", {}).pop(key, None)
        return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
    if p.name == "drift.json":
        obj = json.loads(p.read_text(encoding="utf-8"))
        return hashlib.sha256(canonical_json({"current": obj.get("current"),
                                              "threshold": obj.get("threshold")}).encode()).hexdigest()
    return sha256_file(p)


# Temp names of an interrupted atomic write: ours and DVC's `.<token>.tmp`
# (tuneforge.io, dvc_objects tmp_fname("")), and DVC's `<name>.<token>.tmp` from
# dvc_objects.fs.utils.move (tmp_fname(dst); token_urlsafe(16) is 22 characters).
_DVC_MOVE_TEMP = re.compile(r".+\.[A-Za-z0-9_-]{22}\.tmp")
# A DVC cache object: files/md5/<2 hex>/<30 hex>, or <30 hex>.dir for a directory listing.
_CACHE_OBJECT = re.compile(r"[0-9a-f]{30}(\.dir)?")


def is_temp(p: Path) -> bool:
    return p.name.endswith(".tmp") and (p.name.startswith(".") or bool(_DVC_MOVE_TEMP.fullmatch(p.name)))


# The task's inputs (gold, hand labels, snapshot): under data/, but no stage writes them.
INPUTS = tuple(task_entry(repo_params())[k] for k in ("gold", "human_labels", "replay_log", "snapshot"))


def tree(root: Path, subdirs: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Normalised digests of every output file under `subdirs`, and stray temp files."""
    out, temps = {}, []
    for sub in subdirs:
        base = root / sub
        if not base.exists():
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if any(rel == i or rel.startswith(i + "/") for i in INPUTS):
                continue
            if is_temp(p):
                temps.append(rel)
            elif p.is_file():
                out[rel] = _norm_file(p)
    return out, temps


def outputs_of(root: Path, stage: str) -> dict[str, str]:
    """Normalised digests of what `stage` writes in `root` (tuneforge.names.outputs, with the
    root's own model name, convert type and quantisation types)."""
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    got = {}
    for rel in names.outputs(stage, TASK, model_name=task_entry(params)["model_name"],
                             outtype=params["convert"]["outtype"], types=params["quantize"]["types"]):
        p = root / rel
        if p.is_dir():
            got.update(tree(root, (rel,))[0])
        elif p.is_file():
            got[rel] = _norm_file(p)
    return got


def crash_snapshot(max_bytes: int) -> dict[str, bytes]:
    """A slice of the real committed snapshot (every format), or the fixtures when absent."""
    from tuneforge.harvest import iter_snapshot

    snapshot = snapshot_path()
    if not snapshot.exists():
        return {str(p.relative_to(FIXTURES)): p.read_bytes() for p in FIXTURES.rglob("*") if p.is_file()}
    members = list(iter_snapshot(snapshot))
    out, total = {}, 0
    for i in range(0, len(members), 7):  # a spread over products and formats
        name, data = members[i]
        if total + len(data) > max_bytes:
            continue
        out[name] = data
        total += len(data)
    return out


def kill_stage(root: Path, cmd: list[str], delay: float) -> dict:
    """Start `cmd` in its own process group, SIGKILL the whole group after `delay` s."""
    p = subprocess.Popen(cmd, cwd=root, env=stage_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        wait_group_gone(p.pid)
    return {"rc": p.returncode, "killed": p.returncode == -signal.SIGKILL,
            "at_s": round(time.monotonic() - t0, 3)}


def wait_group_gone(pgid: int, timeout: float = 60.0) -> None:
    """Until no process of the killed group is still running. p.wait() reaps only the leader
    (dvc); a stage it started can take a moment to die (a write in flight) and holds DVC's
    repository lock until then, so a rerun started at once would fail on the lock, which is
    not what a user who reruns after a crash sees."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for proc in psutil.process_iter(["pid", "status"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(proc.info["pid"])
        if not alive:
            return
        time.sleep(0.05)
    raise RuntimeError(f"processes {alive} of killed group {pgid} still run after {timeout:.0f} s")


def unkilled_failure(stage: str, mode: str, k: dict) -> dict:
    """A run that failed on its own before the kill landed: a finding, never a skipped point."""
    return {"stage": stage, "mode": mode, "kill_at_s": None, "partial_outputs": [], "temp_files_left": 0,
            "rerun_rc": k["rc"], "differs": [f"{stage} exited {k['rc']} before the kill"],
            "stray_temp_after_rerun": []}


def plain_kill_points(scratch: Path, rng: random.Random, n: int, files: dict[str, bytes],
                      stages: tuple[str, ...] = DATA_STAGES, params: dict | None = None,
                      pre: Path | None = None) -> list[dict]:
    """Reference run stage by stage (saving the state before each stage); then for each
    seeded point: copy the state before the stage, SIGKILL it mid-run, check no output is a
    partial file, rerun the stage and compare its outputs with the reference."""
    ref = pre or make_root(scratch / "ref", files, params=params)
    before, durations, expect = {}, {}, {}
    for stage in stages:
        before[stage] = copy_root(ref, scratch / f"before-{stage}")
        t0 = time.monotonic()
        r = run_stage(ref, stage)
        if r.returncode != 0:
            raise RuntimeError(f"reference {stage} failed:\n{r.stderr[-3000:]}")
        durations[stage] = time.monotonic() - t0
        expect[stage] = outputs_of(ref, stage)
    points = []
    attempts = 0
    while len(points) < n and attempts < 4 * n:
        stage = stages[len(points) % len(stages)]
        frac = rng.uniform(0.15, 0.97)
        attempts += 1
        work = copy_root(before[stage], scratch / "kill")
        old = outputs_of(work, stage)  # what a previous run left (absent on a clean state)
        k = kill_stage(work, stage_cmd(stage), frac * durations[stage])
        if not k["killed"]:
            if k["rc"] != 0:
                points.append(unkilled_failure(stage, "subprocess", k))
            else:  # finished before the kill (a faster run than the reference): aim earlier
                durations[stage] *= 0.7
            continue
        after = outputs_of(work, stage)
        partial = sorted(rel for rel, h in after.items()
                         if h != expect[stage].get(rel) and h != old.get(rel))
        temps = tree(work, ("data", "reports", "models"))[1]
        r = run_stage(work, stage)
        got = outputs_of(work, stage)
        diff = sorted(rel for rel in set(got) | set(expect[stage]) if got.get(rel) != expect[stage].get(rel))
        temps_after = tree(work, ("data", "reports", "models"))[1]
        points.append({"stage": stage, "mode": "subprocess", "kill_at_s": k["at_s"],
                       "stage_s": round(durations[stage], 2), "partial_outputs": partial,
                       "temp_files_left": len(temps), "rerun_rc": r.returncode,
                       "differs": diff, "stray_temp_after_rerun": temps_after})
    for d in [*before.values(), scratch / "kill"]:
        shutil.rmtree(d, ignore_errors=True)
    return points


def verify_dvc_cache(root: Path) -> list[str]:
    """Cache objects whose content does not hash to their name (a partial file DVC cached),
    and any other file in the cache that is neither an object nor a write's temp file."""
    bad = []
    base = root / ".dvc" / "cache" / "files" / "md5"
    if not base.exists():
        return bad
    for p in sorted(base.rglob("*")):
        if not p.is_file() or is_temp(p):
            continue
        if not _CACHE_OBJECT.fullmatch(p.name):
            bad.append(p.relative_to(root).as_posix())
            continue
        name = p.parent.name + p.name
        want = name.removesuffix(".dir")
        md5 = hashlib.md5(p.read_bytes()).hexdigest()
        if md5 != want:
            bad.append(p.relative_to(root).as_posix())
    return bad


def lock_outs(root: Path) -> dict[str, str]:
    """Each output's md5 in dvc.lock. An empty lock (YAML None: what a repro killed while DVC
    rewrote the file can leave) has none, so every output shows as differing instead of the
    harness crashing on it."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) or {}
    return {o["path"]: o.get("md5", "") for s in (lock.get("stages") or {}).values() for o in s.get("outs", [])}


def dvc_kill_points(scratch: Path, rng: random.Random, n: int, files: dict[str, bytes]) -> tuple[list[dict], Path]:
    """SIGKILL the whole `dvc repro` process group (DVC and the running stage) at seeded
    moments; check the cache, rerun `dvc repro`, compare outputs and dvc.lock with an
    uninterrupted build, and require `dvc status` to be clean."""
    clean = make_root(scratch / "dvc-clean", files)
    init_dvc_repo(clean, DATA_STAGES)
    ref = copy_root(clean, scratch / "dvc-ref")
    t0 = time.monotonic()
    sh(["dvc", "repro"], ref)
    total = time.monotonic() - t0
    want_tree = tree(ref, ("data", "reports"))[0]
    want_lock = lock_outs(ref)
    points = []
    attempts = 0
    while len(points) < n and attempts < 4 * n:
        attempts += 1
        work = copy_root(clean, scratch / "dvc-kill")
        k = kill_stage(work, ["dvc", "repro"], rng.uniform(0.1, 0.97) * total)
        if not k["killed"]:
            if k["rc"] != 0:
                points.append(unkilled_failure("dvc repro", "dvc repro (process group)", k))
            else:  # finished before the kill: aim earlier
                total *= 0.7
            continue
        bad_cache = verify_dvc_cache(work)
        status_after_kill = sh(["dvc", "status"], work, check=False)
        # as `make repro` does: mend what DVC itself left half-written (tuneforge.recover), then repro
        recovered = sh([sys.executable, "-m", "tuneforge.recover"], work, check=False)
        rerun = sh(["dvc", "repro"], work, check=False)
        status = sh(["dvc", "status"], work, check=False)
        got_tree, temps = tree(work, ("data", "reports"))
        diff = sorted(rel for rel in set(got_tree) | set(want_tree) if got_tree.get(rel) != want_tree.get(rel))
        lock_diff = []
        if (work / "dvc.lock").exists():
            got_lock = lock_outs(work)
            reports = f"{names.REPORTS.as_posix()}/"  # receipts: timings differ by design
            lock_diff = sorted(p for p in set(got_lock) | set(want_lock)
                               if got_lock.get(p) != want_lock.get(p) and not p.startswith(reports))
        points.append({
            "stage": "dvc repro", "mode": "dvc repro (process group)", "kill_at_s": k["at_s"],
            "repro_s": round(total, 2), "partial_in_cache": bad_cache + verify_dvc_cache(work),
            "status_after_kill_clean": "up to date" in status_after_kill.stdout,
            "recovered": [ln for ln in recovered.stderr.splitlines() if ln.startswith("tuneforge.recover: ")],
            "recover_rc": recovered.returncode,
            "rerun_rc": rerun.returncode, "rerun_error": rerun.stderr[-400:] if rerun.returncode else "",
            "status_clean": "up to date" in status.stdout, "differs": diff + lock_diff,
            "temps_in_dvc_cache": sorted(p.name for p in (work / ".dvc" / "cache").rglob("*.tmp") if is_temp(p)),
            "stray_temp_after_rerun": temps})
    shutil.rmtree(scratch / "dvc-kill", ignore_errors=True)
    return points, ref


def kill_suite(seed: int, scratch: Path, n_plain: int, n_dvc: int, n_model: int,
               tiny_base: Path | None, crash_bytes: int) -> tuple[dict, Path]:
    start = time.monotonic()
    freeze_code(scratch.parent)
    rng = random.Random(seed)
    files = crash_snapshot(crash_bytes)
    points = plain_kill_points(scratch / "plain", rng, n_plain, files)
    dvc_points, dvc_ref = dvc_kill_points(scratch / "dvc", rng, n_dvc, files)
    points += dvc_points
    model_note = None
    if n_model and tiny_base is not None:
        pre = make_root(scratch / "model" / "ref", {})
        write_tiny_params(pre, tiny_base)
        write_tiny_exports(pre)
        points += plain_kill_points(scratch / "model", rng, n_model, {}, KILL_MODEL_STAGES, pre=pre)
    elif n_model:
        model_note = "model stages skipped (no tiny base)"
    bad = [p for p in points if p["differs"] or p.get("partial_outputs") or p.get("partial_in_cache")
           or p["rerun_rc"] != 0 or p.get("recover_rc", 0) != 0 or p.get("status_clean") is False]
    return {
        "seed": seed, "points": len(points), "requested": n_plain + n_dvc + (n_model if tiny_base else 0),
        "by_stage": dict(sorted(Counter(p["stage"] for p in points).items())),
        "killed_mid_write": sum(1 for p in points if p.get("temp_files_left")),
        "nonidentical": len(bad), "bad_points": bad[:20],
        "partial_files_in_dvc_cache": sum(len(p.get("partial_in_cache", [])) for p in points),
        "stray_temp_files_after_rerun": sum(len(p["stray_temp_after_rerun"]) for p in points),
        "snapshot_files": len(files), "snapshot_bytes": sum(map(len, files.values())),
        "model_note": model_note, "points_detail": points,
        "seconds": round(time.monotonic() - start, 1),
    }, dvc_ref
