"""The fidelity section: what the fidelity checks cost inside a cold eval, on the built models of
every task in one scratch copy (issue 20: the checks cost <= 10% of eval).

The checks run inside eval, on its own decoders (tuneforge.fidelity.Check): the tokenizer round
trip, the merged model's reference log-probs, the converter's output forced in full, and each
quantisation's forced rows right after eval answered them (the prompt's KV cache reused). The
eval receipt times them (`fidelity_ms`); the share is that time against the rest of the stage
(what eval costs without the checks). A cold eval is what a new model costs: eval memoises
answers and forced figures by model SHA-256 (eval.cache), so in a built tree it only
re-scores. Each task's eval runs as `dvc repro` runs it (`python -m stages.eval <task>`), in a
copy of the built tree with an empty machine cache (TUNEFORGE_CACHE), so nothing in the working
tree is written. The copied eval must write the committed metrics.json and fidelity.json byte
for byte (the same answers and figures, computed again): a bench that timed something else
would say so.
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

# What eval reads (tuneforge.names' layout), copied: the stage writes its outputs
# with atomic renames, but a copy keeps even a stray in-place write out of the working tree.
COPIED = ("params.yaml", "dvc.yaml", "data", "models/base")


def differences(built: Path, cold: Path, limit: int = 8) -> str:
    """The first `limit` leaves (dotted paths) where two JSON reports differ, built -> cold: what a
    failed reproduction names, so it can be chased without rerunning it."""
    def leaves(obj, at=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from leaves(v, f"{at}.{k}" if at else str(k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from leaves(v, f"{at}[{i}]")
        else:
            yield at, obj

    a, b = (dict(leaves(json.loads(p.read_text()))) for p in (built, cold))
    diff = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    return (", ".join(diff[:limit]) + (f" (+{len(diff) - limit} more)" if len(diff) > limit else "")) or "same values"


def bench_fidelity(params: Params, root: Path = ROOT, tasks: list[str] | None = None) -> dict:
    """Each task's (default: every task params lists) cold eval with its fidelity checks, built in `root`."""
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
            wall, _ = timed(run, [sys.executable, "-m", "stages.eval", task], work, env)
            receipt = json.loads((work / paths.receipt("eval")).read_text())
            cold = receipt["counts"].get("extra", {})
            # the memo starts empty, so every answer is decoded once and every row forced; its hits
            # are prompts asked twice in this run (a row without a hint in the no-hint pass, the
            # f16 model's subset)
            same = {p.name: (work / p).read_bytes() == (root / p).read_bytes() for p in (paths.metrics, paths.fidelity)}
            if not all(same.values()) or not cold.get("decoded") or not cold.get("fidelity_forced"):
                differ = [f"{p}: {differences(root / p, work / p)}" for p in (paths.metrics, paths.fidelity)
                          if not same[p.name]]
                raise RuntimeError(f"bench fidelity: {task}: the copied eval did not decode and force cold and "
                                   f"reproduce {paths.metrics} and {paths.fidelity} (decoded {cold.get('decoded')}, "
                                   f"forced {cold.get('fidelity_forced')}, same bytes {same}); built vs cold: "
                                   + "; ".join(differ))
            stage_s, fidelity_s = receipt["duration_s"], cold["fidelity_ms"] / 1000
            out[task] = {"eval": {"wall_s": round(wall, 1), "stage_s": stage_s},
                         "fidelity": {"s": round(fidelity_s, 3),
                                      "round_trip_s": round(cold["fidelity_round_trip_ms"] / 1000, 1),
                                      "forced_rows": cold["fidelity_forced"]},
                         "decoded": cold.get("decoded"), "answered_twice": cold.get("cache_hits"),
                         # the checks against the rest of the stage: what eval costs without them
                         "share": round(fidelity_s / (stage_s - fidelity_s), 4)}
    return {"tasks": out, "metrics_reproduced": True}


def copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)
