"""The fidelity section: what the fidelity stage costs beside a cold eval, both run on the
built models of every task in one scratch copy (issue 20: the checks cost <= 10% of eval).

A cold eval is what a new model costs: eval memoises answers by model SHA-256 (eval.cache),
so in a built tree it only re-scores. Each task's stages run as `dvc repro` runs them
(`python -m stages.<stage> <task>`), in a copy of the built tree with an empty machine cache
(TUNEFORGE_CACHE), so nothing in the working tree is written. The copied eval must write the
committed metrics.json byte for byte (the same answers, decoded again): a bench that timed
something else would say so.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tools.bench.common import ROOT, run, timed
from tuneforge import names
from tuneforge.config import Params

# What fidelity and eval read (tuneforge.names' layout), copied: the stages write their outputs
# with atomic renames, but a copy keeps even a stray in-place write out of the working tree.
COPIED = ("params.yaml", "dvc.yaml", "data", "models/base")


def bench_fidelity(params: Params, root: Path = ROOT, tasks: list[str] | None = None) -> dict:
    """Each task's (default: every task params lists) fidelity and cold eval, built in `root`."""
    out = {}
    (root / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-fidelity-", dir=root / ".cache") as tmp:
        work = Path(tmp) / "w"
        work.mkdir()
        # the stages are this checkout's (PYTHONPATH), the machine cache an empty one
        env = {**os.environ, "TUNEFORGE_CACHE": str(Path(tmp) / "cache"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for rel in COPIED:  # what every task shares, once
            copy(root / rel, work / rel)
        for task in tasks or list(params.tasks):
            paths = names.TaskPaths.for_task(task)
            for rel in (paths.models, paths.reports):
                copy(root / rel, work / rel)
            times, counts = {}, {}
            for stage in ("fidelity", "eval"):
                wall, _ = timed(run, [sys.executable, "-m", f"stages.{stage}", task], work, env)
                receipt = json.loads((work / paths.receipt(stage)).read_text())
                counts[stage] = receipt["counts"].get("extra", {})
                # the receipt's own phase times (counts are integers: milliseconds)
                times[stage] = {"wall_s": round(wall, 1), "stage_s": receipt["duration_s"],
                                **{k.removesuffix("_ms") + "_s": round(v / 1000, 1)
                                   for k, v in counts[stage].items() if k.endswith("_ms")}}
            # the memo starts empty, so every answer is decoded once; its hits are prompts asked
            # twice in this run (a row without a hint in the no-hint pass, the f16 model's subset)
            cold = counts["eval"]
            same = (work / paths.metrics).read_bytes() == (root / paths.metrics).read_bytes()
            if not same or not cold.get("decoded"):
                raise RuntimeError(f"bench fidelity: {task}: the copied eval did not decode cold and reproduce "
                                   f"{paths.metrics} (decoded {cold.get('decoded')}, same bytes {same})")
            out[task] = {**times, "decoded": cold.get("decoded"), "answered_twice": cold.get("cache_hits"),
                         "share": round(times["fidelity"]["wall_s"] / times["eval"]["wall_s"], 4)}
    return {"tasks": out, "metrics_reproduced": True}


def copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)
