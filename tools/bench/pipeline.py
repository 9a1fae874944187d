"""Bench sections on the pipeline: the data stages against plain Python, the clean and no-op builds."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from tools.bench.common import DATA_STAGES, README, REPORT, ROOT, check_exit, run, timed
from tools.verify_repro import build_clean_clone, clone_env, compare_locks
from tuneforge import config, names
from tuneforge.config import Params
from tuneforge.io import read_jsonl


def real_entries(snapshot: Path) -> list[tuple[str, str | None, str | None, str]]:
    """(text, hint, version, product) of every entry the parsers find in the snapshot."""
    from tuneforge.harvest import iter_snapshot
    from tuneforge.sources import UnknownFormatError, detect_format, product_from_path
    from tuneforge.text import normalise_ws

    out = []
    for name, raw in iter_snapshot(snapshot):
        text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
        try:
            fmt = detect_format(name, text)
        except UnknownFormatError:
            continue
        product = product_from_path(name)
        for e in fmt.parse(name, text):
            body = normalise_ws(e.text)
            if body:
                out.append((body, normalise_ws(e.hint) if e.hint else None, e.version, product))
    return out


def write_resampled(entries: list, n: int, seed: int, out_dir: Path, per_file: int = 5000) -> int:
    """n entries drawn with replacement, written as Markdown changelogs, one product per
    folder; returns the number of bullets written."""
    rng = random.Random(seed)
    by_product: dict[str, list] = defaultdict(list)
    for text, hint, version, product in rng.choices(entries, k=n):
        # a version-like heading for entries without one: the Markdown sniffer wants one
        by_product[product].append((version or "0.0.0", hint or "", text))
    written = 0
    for product, rows in sorted(by_product.items()):
        rows.sort(key=lambda r: (r[0], r[1]))
        for k in range(0, len(rows), per_file):
            lines, last = ["# Changelog", ""], (None, None)
            for version, hint, text in rows[k:k + per_file]:
                if version != last[0]:
                    lines += [f"## {version}", ""]
                    last = (version, None)
                if hint != last[1]:
                    if hint:
                        lines += [f"### {hint}", ""]
                    last = (version, hint)
                lines.append(f"- {text}")
                written += 1
            path = out_dir / product / f"CHANGELOG-{k // per_file:04d}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def plain_pipeline(src: Path, out: Path, gold_path: Path, task_name: str, cfg: Params) -> dict:
    """The same steps in plain Python and `json`, one record at a time: parse, redact,
    dedupe, label, score, export (gold excluded, seeded split). The baseline."""
    from tuneforge.redact import redact
    from tuneforge.tasks import get_task
    from tuneforge.text import content_key, normalise_ws

    task = get_task(task_name)
    out.mkdir(parents=True, exist_ok=True)
    seen, n_in = set(), 0
    step_s, t0 = {}, time.perf_counter()
    with open(out / "entries.jsonl", "w", encoding="utf-8") as f:  # backfill
        for path in sorted(src.rglob("*.md")):
            version = hint = None
            product = path.relative_to(src).parts[0]
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("## "):
                    version, hint = line[3:].strip(), None
                elif line.startswith("### "):
                    hint = line[4:].strip()
                elif line.startswith("- "):
                    n_in += 1
                    text = normalise_ws(line[2:])
                    if not cfg.backfill.min_chars <= len(text) <= cfg.backfill.max_chars:
                        continue
                    text, _ = redact(text)
                    key = content_key(text)
                    if key in seen:
                        continue
                    seen.add(key)
                    f.write(json.dumps({"id": key, "text": text, "hint": hint, "product": product,
                                        "version": version}) + "\n")
    step_s["backfill"], t0 = time.perf_counter() - t0, time.perf_counter()
    label_s = 0.0  # the rule labeler's own time: the stages call the same function
    with open(out / "entries.jsonl", encoding="utf-8") as fin, \
            open(out / "evidence.jsonl", "w", encoding="utf-8") as fout:  # evidence
        for line in fin:
            row = json.loads(line)
            t_label = time.perf_counter()
            row["label"], row["rule"] = task.rule_label(row["text"], row["hint"], row["product"],
                                                        row["version"])
            label_s += time.perf_counter() - t_label
            fout.write(json.dumps(row) + "\n")
    step_s["evidence"], t0 = time.perf_counter() - t0, time.perf_counter()
    with open(out / "evidence.jsonl", encoding="utf-8") as fin, \
            open(out / "scored.jsonl", "w", encoding="utf-8") as fout:  # score
        for line in fin:
            row = json.loads(line)
            problems = task.style_problems(row["label"], row["text"], row["hint"])
            content_free = task.is_content_free(row["text"])
            row["accepted"] = not problems and row["rule"] != task.abstain_rule and not (
                content_free and task.label_class(row["label"]) != task.abstain_class)
            fout.write(json.dumps(row) + "\n")
    step_s["score"], t0 = time.perf_counter() - t0, time.perf_counter()
    gold = {content_key(r["text"]) for r in read_jsonl(gold_path)}
    counts: dict[str, Any] = {"in": n_in, "train": 0, "valid": 0}
    with open(out / "scored.jsonl", encoding="utf-8") as fin, \
            open(out / "train.jsonl", "w", encoding="utf-8") as ftrain, \
            open(out / "valid.jsonl", "w", encoding="utf-8") as fvalid:  # export
        for line in fin:
            row = json.loads(line)
            if not row["accepted"] or row["id"] in gold:
                continue
            messages = task.messages(row["text"], row["hint"], row["product"])
            messages.append({"role": "assistant", "content": task.render_label(row["label"])})
            u = int(hashlib.sha256(f"split:{row['id']}".encode()).hexdigest()[:8], 16) / 2**32
            split = "valid" if u < cfg.export.valid_fraction else "train"
            (fvalid if split == "valid" else ftrain).write(json.dumps({"messages": messages}) + "\n")
            counts[split] += 1
    step_s["export"] = time.perf_counter() - t0
    counts["step_s"], counts["label_s"] = step_s, label_s
    return counts


def resampled_root(work: Path, entries: list, n: int, params: Params, task: str) -> int:
    """A scratch pipeline root in `work`: n entries resampled from the real snapshot as its
    snapshot, this repo's params and pipeline, the task's other inputs from here."""
    entry = params.tasks[task]
    written = write_resampled(entries, n, params.export.seed, work / "snapshot")
    # this repo's params and pipeline (a stage reads what its dvc.yaml entry declares),
    # the task's snapshot swapped for the resampled one, its other inputs from here
    p = yaml.safe_load((ROOT / config.PARAMS).read_text(encoding="utf-8"))
    p["tasks"][task].update(snapshot="snapshot", gold=str(ROOT / entry.gold), human_labels=(
        str(ROOT / entry.human_labels) if entry.human_labels else None),
        replay_log=str(ROOT / entry.replay_log))
    (work / config.PARAMS).write_text(yaml.safe_dump(p, sort_keys=False))
    (work / config.PIPELINE).write_text((ROOT / config.PIPELINE).read_text(encoding="utf-8"))
    return written


def run_sampled(cmd: list[str], cwd: Path, env: dict, every: float = 0.1) -> float:
    """Run `cmd` (failing loudly, as `run`); return the largest total memory of its process
    tree, in MB, sampled every `every` s: the proportional set size (PSS) summed over the
    process and its forked workers, so pages they share copy-on-write count once. A stage's
    receipt sees only its own process (VmHWM); getrusage cannot help, since a child's ru_maxrss
    starts at its parent's resident size (the bench's own, here). A peak shorter than `every`
    can be missed."""
    import threading

    import psutil

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(proc.pid)
            while not done.wait(every):
                total = 0
                with contextlib.suppress(psutil.Error):
                    for p in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):  # a worker that exited meanwhile
                            total += p.memory_full_info().pss
                peak = max(peak, total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    check_exit(cmd, proc.returncode, out, err)
    return round(peak / 2**20, 1)


def run_data_stages(work: Path, task: str, env: dict, written: int) -> dict:
    """The four data stages in `work`, each its own process: seconds, peak RSS (the stage's
    receipt: its own process) and the sampled peak of its whole process tree (workers
    included, `run_sampled`) per stage, and what backfill and export counted."""
    receipts = names.TaskPaths.for_task(task)
    stage_s, rss, tree = {}, {}, {}
    for stage in DATA_STAGES:
        seconds, tree[stage] = timed(run_sampled, [sys.executable, "-m", f"stages.{stage}", task], work, env)
        stage_s[stage] = round(seconds, 2)
        rss[stage] = json.loads((work / receipts.receipt(stage)).read_text())["peak_rss_mb"]
    backfill = json.loads((work / receipts.receipt("backfill")).read_text())
    export = json.loads((work / receipts.receipt("export")).read_text())
    # Markdown rendering merges or drops a few odd entries (~0.2%); more would mean
    # the figure counts work the stages never did
    if abs(backfill["counts"]["records_in"] - written) > 0.01 * written:
        raise RuntimeError(f"bench data: {written} entries written, backfill read "
                           f"{backfill['counts']['records_in']}")
    ours_s = sum(stage_s.values())
    return {"entries": written, "parsed": backfill["counts"]["records_in"],
            "unique": backfill["counts"]["records_out"], "stage_s": stage_s, "s": round(ours_s, 2),
            "entries_per_s": round(written / ours_s), "sft_rows": export["counts"]["records_out"],
            "peak_rss_mb": rss, "tree_pss_mb": tree}


def bench_data(params: Params, task: str, sizes: list[int], scale: int = 0) -> dict:
    entry = params.tasks[task]
    t0 = time.perf_counter()
    entries = real_entries(ROOT / entry.snapshot)
    out: dict[str, Any] = {"real_entries": len(entries),
                           "sample_s": round(time.perf_counter() - t0, 1), "sizes": {}}
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}", TQDM_DISABLE="1")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="tuneforge-bench-data-") as tmp:
            work = Path(tmp)
            written = resampled_root(work, entries, n, params, task)
            ours = run_data_stages(work, task, env, written)
            base_s, counts = timed(plain_pipeline, work / "snapshot", work / "plain",
                                   ROOT / entry.gold, task, params)
        out["sizes"][str(n)] = {
            **ours,
            "baseline_json": {"s": round(base_s, 2), "entries_per_s": round(written / base_s),
                              "parsed": counts["in"], "sft_rows": counts["train"] + counts["valid"],
                              "step_s": {k: round(v, 2) for k, v in counts["step_s"].items()},
                              "label_s": round(counts["label_s"], 2)},
            "ratio": round(base_s / ours["s"], 2)}
        print(f"bench data {n}: {out['sizes'][str(n)]}", flush=True)
    out["labeler"] = bench_labeler(entries, task)
    print(f"bench data labeler: {out['labeler']}", flush=True)
    largest = out["sizes"][str(max(sizes))]
    largest["floor"] = data_floor(largest, env)
    out["entries_per_s"] = largest["entries_per_s"]
    out["ratio"] = largest["ratio"]
    out["at_entries"] = max(sizes)
    if scale:  # the stages alone at a size the plain baseline would take minutes over: bounded memory?
        with tempfile.TemporaryDirectory(prefix="tuneforge-bench-data-") as tmp:
            work = Path(tmp)
            written = resampled_root(work, entries, scale, params, task)
            snapshot_mb = sum(f.stat().st_size for f in (work / "snapshot").rglob("*") if f.is_file()) / 2**20
            out["scale"] = {**run_data_stages(work, task, env, written), "snapshot_mb": round(snapshot_mb, 1)}
        print(f"bench data {scale} (stages only): {out['scale']}", flush=True)
    return out


def bench_labeler(entries: list[tuple], task_name: str, reps: int = 2) -> dict:
    """The task's rule labeler over every real snapshot entry in this process, with its RE2
    stand-ins (tuneforge.prefilter) and with `re` deciding alone, alternated `reps` times each,
    best of each: microseconds an entry, and whether every entry got the same label and rule."""
    from tuneforge import prefilter
    from tuneforge.tasks import get_task

    rows = [(text, hint, product, version) for text, hint, version, product in entries]
    label = get_task(task_name).rule_label
    best: dict[bool, float] = {}
    labels: dict[bool, list] = {}
    try:
        for _ in range(reps):
            for relaxed in (False, True):
                prefilter.USE_RELAXED = relaxed
                t0 = time.perf_counter()
                labels[relaxed] = [label(*row) for row in rows]
                best[relaxed] = min(best.get(relaxed, float("inf")), time.perf_counter() - t0)
    finally:
        prefilter.USE_RELAXED = True
    us = {k: round(v / len(rows) * 1e6, 1) for k, v in best.items()}
    return {"entries": len(rows), "us_per_entry": us[True], "baseline_re_us_per_entry": us[False],
            "ratio": round(best[False] / best[True], 2), "same_labels": labels[True] == labels[False]}


def data_floor(size: dict, env: dict, reps: int = 3) -> dict:
    """The least time the four stages can take with this labeler, measured in this run:
    four interpreters that import a stage and exit, plus the baseline's labeling time
    spread over every core (the stages call the same labeler on the same unique
    entries). The baseline's time over it is the largest ratio they could reach."""
    startup = {}
    for stage in DATA_STAGES:
        startup[stage] = round(min(timed(run, [sys.executable, "-c", f"import stages.{stage}"],
                                         ROOT, env)[0] for _ in range(reps)), 2)
    cores = os.cpu_count() or 1
    label_s = size["baseline_json"]["label_s"]
    floor_s = sum(startup.values()) + label_s / cores
    return {"stage_startup_s": startup, "label_s": label_s, "cores": cores,
            "floor_s": round(floor_s, 2), "max_ratio": round(size["baseline_json"]["s"] / floor_s, 2)}


# ---------------------------------------------------------------- build

def noop_times(repo: Path, env: dict | None = None, reps: int = 3) -> tuple[float, float]:
    """Best-of-`reps` seconds of a no-op `dvc status` and `dvc repro` in `repo`, alternated
    so that machine noise falls on both alike."""
    status, repro = [], []
    for _ in range(reps):
        status.append(timed(run, ["dvc", "status"], repo, env)[0])
        repro.append(timed(run, ["dvc", "repro"], repo, env)[0])
    return min(status), min(repro)


def dvc_noop_floor(n_stages: int, reps: int = 3) -> dict:
    """DVC's own no-op ratio on a pipeline of the same length with nothing in it: a chain
    of `cp` stages, one small file in and out each, committed. What `dvc repro` costs
    beyond `dvc status` there is DVC's, whatever the stages hold."""
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-dvc-floor-") as tmp:
        toy = Path(tmp)
        env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
                   GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
        run(["git", "init", "-q"], toy, env)
        run(["dvc", "init", "-q"], toy, env)
        (toy / "s0.txt").write_text("x\n")
        stages = {f"s{i}": {"cmd": f"cp s{i - 1}.txt s{i}.txt", "deps": [f"s{i - 1}.txt"],
                            "outs": [f"s{i}.txt"]} for i in range(1, n_stages + 1)}
        (toy / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
        run(["dvc", "repro", "-q"], toy, env)
        run(["git", "add", "-A"], toy, env)
        run(["git", "commit", "-qm", "toy pipeline"], toy, env)
        status, repro = noop_times(toy, env, reps)  # measured as the real pipeline's
    return {"stages": n_stages, "noop_repro_s": round(repro, 2),
            "dvc_status_s": round(status, 2), "noop_ratio": round(repro / status, 3)}


def receipt_of(stage: str) -> Path:
    """A `dvc repro` target's receipt: `<stage>@<task>` under the task's reports, `base` shared."""
    name, _, task = stage.partition("@")
    if task:
        return names.TaskPaths.for_task(task).receipt(name)
    if name != "base":
        raise ValueError(f"stage {stage!r}: every stage but base runs per task (<stage>@<task>)")
    return names.BASE_RECEIPT


def fidelity_share(receipts: dict[str, dict]) -> dict[str, dict]:
    """Per task, what the fidelity checks cost inside its eval stage (the receipt's fidelity_ms)
    against the rest of that stage, from one build's receipts (issue 20 asks for <= 10%)."""
    out = {}
    for stage, receipt in receipts.items():
        if stage.startswith("eval@"):
            fid = receipt["counts"]["extra"]["fidelity_ms"] / 1000
            out[stage.partition("@")[2]] = {"fidelity_s": round(fid, 1), "eval_s": receipt["duration_s"],
                                            "share": round(fid / (receipt["duration_s"] - fid), 4)}
    return out


def bench_build(params: Params) -> dict:
    """Clean build of HEAD in a scratch clone (every task); the incremental rebuild; the no-op repro."""
    # what the earlier sections of this same run wrote does not count as uncommitted work
    ours = {str(REPORT.relative_to(ROOT)), str(README.relative_to(ROOT))}
    dirty = [line[3:] for line in run(["git", "status", "--porcelain", "--untracked-files=no"]
                                      ).splitlines() if line[3:] not in ours]
    if dirty:
        raise SystemExit(f"bench build: commit first (it builds HEAD in a clean clone): {dirty}")
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-build-") as tmp:
        clone = Path(tmp) / "repo"
        stage_s, total_s = build_clean_clone(ROOT, clone)
        env = clone_env(clone)
        receipts = {stage: json.loads((clone / receipt_of(stage)).read_text()) for stage in stage_s}
        rss = {stage: receipt["peak_rss_mb"] for stage, receipt in receipts.items()}
        identical, moved, compared = compare_locks(ROOT / "dvc.lock", clone / "dvc.lock", params.tasks)

        # incremental: one eval.* param changed (a release gate), then repro
        old = config.load(clone / config.PARAMS).eval.gates.min_class_agreement
        new = round(old - 0.05, 2)
        text = (clone / "params.yaml").read_text()
        needle = f"min_class_agreement: {old:.2f}"
        if needle not in text:
            raise RuntimeError(f"bench build: {needle!r} not found in params.yaml")
        (clone / "params.yaml").write_text(text.replace(needle, f"min_class_agreement: {new:.2f}", 1))
        incremental_s, log = timed(run, ["dvc", "repro"], clone, env)
        reran = sorted({s for s in stage_s if f"Running stage '{s}'" in log})

        status, repro = noop_times(clone, env)
    return {
        "full_build_s": stage_s, "full_build_total_s": round(total_s, 1),
        "forced": True,  # every stage run with --force (tools.verify_repro.build_clean_clone)
        "peak_rss_mb": rss,
        "bit_identical": {"identical": identical, "compared": compared, "changed": moved},
        "incremental": {"param": f"eval.gates.min_class_agreement {old} -> {new}",
                        "s": round(incremental_s, 1), "stages_rerun": reran},
        "incremental_ratio": round(incremental_s / total_s, 4),
        "fidelity_share_of_eval": fidelity_share(receipts),
        "noop_repro_s": round(repro, 2), "baseline_dvc_status_s": round(status, 2),
        "noop_ratio": round(repro / status, 3),
        "dvc_floor": dvc_noop_floor(len(stage_s)),
    }


# ---------------------------------------------------------------- report
