"""Build HEAD from scratch in a clean clone and check every artifact's hash against the
committed dvc.lock.

Run: python -m tools.verify_repro   (or `make verify-repro`; one full CPU build, ~15 min)

dvc.lock records the hash of every output. The clone gets its own empty DVC cache (no
run-cache to restore from) and only the machine's download cache (.cache: the pinned
wheel and sdist, never the eval answer memo), so every stage really runs. Artifacts
record no git revision or time (receipts do), so any output whose hash differs from
the committed lock is a source of nondeterminism. Receipts (durations) and the drift
report (it compares with the previous run) differ by design and are exempt.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from tuneforge.io import load_params

SHARED_CACHE = ("wheels", "sdists", "base", "llama.cpp")  # downloads, never results


def pipeline_stages(repo: Path) -> list[str]:
    """Stage names in dvc.yaml's order, which is the pipeline's (the file is the diagram)."""
    return list(yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"])


def output_hashes(lock_text: str, exempt: tuple[str, ...]) -> dict[str, str]:
    lock = yaml.safe_load(lock_text)
    hashes = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if not out["path"].startswith(exempt):
                hashes[out["path"]] = out.get("md5") or out.get("hash", "")
    return hashes


def compare_locks(expected: Path, built: Path, params: dict) -> tuple[int, list[str], int]:
    """(identical outputs, changed paths, outputs compared)."""
    paths = params["paths"]
    exempt = (paths["receipts_dir"], paths["drift"])
    a = output_hashes(expected.read_text(encoding="utf-8"), exempt)
    b = output_hashes(built.read_text(encoding="utf-8"), exempt)
    moved = sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))
    return len(a.keys() | b.keys()) - len(moved), moved, len(a.keys() | b.keys())


def build_clean_clone(repo: Path, clone: Path) -> tuple[dict[str, float], float]:
    """git clone HEAD into `clone` and build it stage by stage; (seconds per stage, total)."""
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    cache_dir = Path(load_params(repo / "params.yaml")["paths"]["cache_dir"])
    (clone / cache_dir).mkdir(parents=True, exist_ok=True)
    for name in SHARED_CACHE:
        if (repo / cache_dir / name).exists():
            (clone / cache_dir / name).symlink_to((repo / cache_dir / name).resolve())
    stage_s: dict[str, float] = {}
    t_all = time.perf_counter()
    for stage in pipeline_stages(clone):
        t0 = time.perf_counter()
        out = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=clone,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"clean build: stage {stage} failed:\n{out.stdout[-3000:]}\n"
                               f"{out.stderr[-3000:]}")
        stage_s[stage] = round(time.perf_counter() - t0, 1)
        print(f"clean build: {stage} {stage_s[stage]} s", flush=True)
    return stage_s, time.perf_counter() - t_all


def main() -> int:
    import tempfile

    repo = Path.cwd()
    params = load_params()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty:
        print("verify-repro builds HEAD: commit first (and commit a dvc.lock built from it)")
        return 2
    with tempfile.TemporaryDirectory(prefix="tuneforge-verify-") as tmp:
        clone = Path(tmp) / "repo"
        _, total = build_clean_clone(repo, clone)
        identical, moved, compared = compare_locks(repo / "dvc.lock", clone / "dvc.lock", params)
    for path in moved:
        print(f"changed: {path}")
    print(f"{identical} of {compared} artifacts bit-identical to the committed dvc.lock "
          f"(clean build {total / 60:.1f} min)")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
