"""Build HEAD from scratch in a clean clone and check every artifact's hash against the
committed dvc.lock.

Run: python -m tools.verify_repro   (or `make verify-repro`; one full CPU build, ~15 min)

dvc.lock records the hash of every output. The clone gets its own empty DVC cache (no
run-cache to restore from) and its own machine cache (`.cache` in the clone) holding only this
machine's downloads (the pinned wheel and sdist, the extracted converter, never the eval
answer memo), so every stage really runs, `base` and every `<stage>@<task>` of dvc.yaml.
Artifacts record no git revision or time (receipts do), so any output whose hash differs from
the committed lock is a source of nondeterminism. Receipts (durations) and each task's drift
report (it compares with the previous run) differ by design and are exempt.

Exit 0: every artifact bit-identical. 1: some output differs for no stated reason. 3: every
difference follows a train stage that ran in another precision or on another matrix instruction
set than the committed build's (train.precision: auto picks bf16 on CPUs with native bf16, fp32
elsewhere; the train receipt's matmul_isa: amx, avx512_bf16, avx512, avx2): named, not hidden.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from tuneforge import config, names

# downloads, and the tools make setup compiles (llama-tools: llama-imatrix and llama-quantize, keyed by
# the sdist's sha256 and the compiler), never results. Without llama-tools a clean clone's first
# quantize compiled them (~3 min on 2 cores), which a clone after `make setup` never does.
SHARED_CACHE = ("wheels", "sdists", "base", "llama.cpp", "llama-tools")


def pipeline_stages(repo: Path) -> list[str]:
    """Stage names as `dvc repro` takes them, in dvc.yaml's order (the file is the diagram): a
    stage that runs per task (`foreach: ${tasks}`) once per task of params.yaml, `<stage>@<task>`."""
    pipeline = repo / config.PIPELINE
    stages = yaml.safe_load(pipeline.read_text(encoding="utf-8"))["stages"]
    tasks = list(config.load(repo / config.PARAMS).tasks)
    out: list[str] = []
    for name, entry in stages.items():
        if "matrix" in entry or entry.get("foreach", "${tasks}") != "${tasks}":
            raise ValueError(f"{pipeline}: stage {name!r}: only `foreach: ${{tasks}}` is expanded here, "
                             f"not {entry.get('foreach', 'matrix')!r}")
        out += [f"{name}@{task}" for task in tasks] if "foreach" in entry else [name]
    return out


def stage_groups(repo: Path) -> list[str]:
    """dvc.yaml's stage names as written (a per-task stage once, not `<stage>@<task>`), in order."""
    return list(yaml.safe_load((repo / config.PIPELINE).read_text(encoding="utf-8"))["stages"])


def stage_rank(repo: Path) -> Callable[[str], tuple[int, str]]:
    """A sort key putting stage names in dvc.yaml's order: `<stage>@<task>` by its stage, then
    task; a bare name (a report from before the per-task pipeline) by itself; unknown ones last."""
    groups = stage_groups(repo)
    return lambda s: (groups.index(s.partition("@")[0]) if s.partition("@")[0] in groups else len(groups), s)


def exempt_paths(tasks: Iterable[str]) -> tuple[str, ...]:
    """Outputs that differ between two builds by design: receipts (durations) and drift reports."""
    out = [str(names.BASE_RECEIPT)]
    for task in tasks:
        p = names.TaskPaths.for_task(task)
        out += [f"{p.receipts_dir}/", str(p.drift)]
    return tuple(out)


def output_hashes(lock_text: str, exempt: tuple[str, ...]) -> dict[str, str]:
    """Each output's hash in a dvc.lock. A path two stage entries claim is an error: DVC keeps the
    lock entry of a stage dvc.yaml no longer has (fidelity@<task> once ran apart from eval), and
    a stale entry read last would stand in for the live one, so the output would be compared
    with a hash no build of this pipeline writes."""
    lock = yaml.safe_load(lock_text)
    hashes: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name, stage in lock["stages"].items():
        for out in stage.get("outs", []):
            path = out["path"]
            if path in owner:
                raise ValueError(f"dvc.lock: {path} is an output of both {owner[path]} and {name}; "
                                 "remove the entry of the stage dvc.yaml no longer defines")
            owner[path] = name
            if not path.startswith(exempt):
                hashes[path] = out.get("md5") or out.get("hash", "")
    return hashes


def compare_locks(expected: Path, built: Path, tasks: Iterable[str]) -> tuple[int, list[str], int]:
    """(identical outputs, changed paths, outputs compared)."""
    exempt = exempt_paths(tasks)
    a = output_hashes(expected.read_text(encoding="utf-8"), exempt)
    b = output_hashes(built.read_text(encoding="utf-8"), exempt)
    moved = sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))
    return len(a.keys() | b.keys()) - len(moved), moved, len(a.keys() | b.keys())


def trained_as(repo: Path, task: str) -> dict | None:
    """What train.precision: auto resolved to when `repo`'s train@task last ran (its receipt,
    committed to git): precision, device, qlora. None before any train ran there."""
    receipt = repo / names.TaskPaths.for_task(task).receipt("train")
    if not receipt.exists():
        return None
    return yaml.safe_load(receipt.read_text(encoding="utf-8"))["params"].get("resolved")


def model_outputs(lock: dict, groups: list[str], task: str) -> set[str]:
    """The outputs, in a parsed dvc.lock, of train@task and every stage after it in `groups`
    (dvc.yaml's order, stage_groups): what the trained weights shape."""
    after = set(groups[groups.index("train"):])
    return {out["path"] for name, stage in lock["stages"].items()
            if name.partition("@")[0] in after and name.partition("@")[2] == task
            for out in stage.get("outs", [])}


def explained_by_precision(repo: Path, clone: Path, moved: list[str],
                           tasks: Iterable[str]) -> tuple[list[str], list[str]]:
    """(lines naming each task whose clone trained in another precision or on another matrix
    instruction set than the committed build, changed paths those explain). train.precision:
    auto follows the hardware (bf16 where the CPU multiplies it natively, else fp32) while DVC
    keys train on 'auto' alone, and the same precision sums its products in another order on AMX
    than on AVX-512 or AVX2 (the receipt's matmul_isa), so on another kind of machine the
    weights and all that follows differ by design, not by chance."""
    notes, explained = [], set()
    lock, groups = yaml.safe_load((clone / "dvc.lock").read_text(encoding="utf-8")), stage_groups(clone)
    for task in tasks:
        ours, theirs = trained_as(repo, task), trained_as(clone, task)
        if ours is None or theirs is None:
            continue
        # only what both receipts record: one written before a key existed (matmul_isa) says
        # nothing about it, and a key absent on one side is no evidence of a difference
        shared = [k for k in ours if k in theirs]
        ours, theirs = {k: ours[k] for k in shared}, {k: theirs[k] for k in shared}
        if ours != theirs:
            notes.append(f"train@{task} ran as {theirs} here, as {ours} in the committed build "
                         "(train.precision: auto and the CPU's matrix instructions follow the "
                         "hardware; pin precision and build on the same kind of machine to compare)")
            explained |= model_outputs(lock, groups, task)
    return notes, [p for p in moved if p in explained]


def clone_env(clone: Path) -> dict[str, str]:
    """The environment a clone builds in: its own machine cache, the default `.cache` inside it
    (relative, as a fresh checkout's), whatever TUNEFORGE_CACHE says here; and its own library.
    The venv installs this project editable (make setup), so `import tuneforge` would otherwise
    load this work tree's src/, uncommitted edits included, and the clone would build HEAD's
    stages with another library (a bench run once did: its verdicts took the text of a gates.py
    edited while it ran). PYTHONPATH comes before the venv's .pth entries."""
    env = {k: v for k, v in os.environ.items() if k != "TUNEFORGE_CACHE"}
    env["PYTHONPATH"] = os.pathsep.join([str(clone / "src"), str(clone)])
    return env


def build_clean_clone(repo: Path, clone: Path) -> tuple[dict[str, float], float]:
    """git clone HEAD into `clone` and build it stage by stage; (seconds per stage, total)."""
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    env = clone_env(clone)
    mine, theirs = repo / names.CACHE, clone / ".cache"  # names.CACHE may be absolute; .cache is its default
    theirs.mkdir(parents=True, exist_ok=True)
    for name in SHARED_CACHE:
        if (mine / name).exists():
            (theirs / name).symlink_to((mine / name).resolve())
    stage_s: dict[str, float] = {}
    t_all = time.perf_counter()
    for stage in pipeline_stages(clone):
        t0 = time.perf_counter()
        # --force: a stage whose outputs are all committed to git (cache: false, as fidelity's are)
        # and whose deps come out bit-identical is otherwise "unchanged" and skipped, so the clean
        # build neither timed nor rebuilt it
        out = subprocess.run(["dvc", "repro", "--single-item", "--force", stage], cwd=clone, env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"clean build: stage {stage} failed:\n{out.stdout[-3000:]}\n"
                               f"{out.stderr[-3000:]}")
        stage_s[stage] = round(time.perf_counter() - t0, 1)
        print(f"clean build: {stage} {stage_s[stage]} s", flush=True)
    return stage_s, time.perf_counter() - t_all


def main(argv: list[str] | None = None) -> int:
    import tempfile

    argparse.ArgumentParser(prog="python -m tools.verify_repro", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=__doc__.split("\n\n", 1)[1]).parse_args(argv)
    repo = Path.cwd()
    try:
        tasks = list(config.load(repo / config.PARAMS).tasks)
    except config.ParamsError as e:
        print(f"verify-repro: {e}", file=sys.stderr)
        return 2
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty:
        print("verify-repro builds HEAD: commit first (and commit a dvc.lock built from it)")
        return 2
    with tempfile.TemporaryDirectory(prefix="tuneforge-verify-") as tmp:
        clone = Path(tmp) / "repo"
        _, total = build_clean_clone(repo, clone)
        identical, moved, compared = compare_locks(repo / "dvc.lock", clone / "dvc.lock", tasks)
        notes, explained = explained_by_precision(repo, clone, moved, tasks)
    for line in notes:
        print(line)
    for path in moved:
        print(f"changed: {path}" + (" (trained on another kind of machine)" if path in explained else ""))
    print(f"{identical} of {compared} artifacts bit-identical to the committed dvc.lock "
          f"(clean build {total / 60:.1f} min)")
    if len(explained) < len(moved):
        return 1  # an output that differs without a reason: nondeterminism
    # every difference follows from the hardware's precision: not nondeterminism, but this
    # machine does not reproduce the committed models either
    return 3 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
