"""Every quantisation type with and without the task's importance matrix, on the committed
build's merged model and f16 GGUF: size, fidelity's KL and eval's task figures (issue 20 item 4).

The default ladder (params quantize.types) holds one type in both forms, so each build
measures the matrix on that type; this sweep measures the rest by hand. It runs the quantize
and eval stages themselves (eval checks fidelity), unchanged, in a scratch root that links the build's
inputs read-only and whose params differ from the committed ones only in quantize.types (and,
with --fidelity-rows, fidelity.rows). What it writes beside the build's reports:
reports/<task>/by-hand/imatrix-<run>-fidelity.json and imatrix-<run>-ladder.csv, which the
README's imatrix table reads (tools/readme_sections.render_imatrix).

    python -m tools.imatrix_sweep --run s18 [--task changelog-actions] [--types Q6_K Q4_K_M ...]

Eval's answer cache keys on each GGUF's SHA-256, so the entries the build already evaluated
cost nothing; each new GGUF costs one eval pass (minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tuneforge import config, names

ROOT = Path(__file__).resolve().parents[1]
TYPES = ["Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS"]  # llama.cpp's own names; each also as <type>-imat
LINKED = ["stages", "src", "tools", "schemas", "dvc.yaml", "data", "models/base"]


def scratch_root(build: Path, task: str, params: dict, types: list[str], fidelity_rows: int | None) -> Path:
    """A root whose stage inputs are links to `build`'s and whose params name the sweep's ladder:
    Q8_0 (eval's report model), then each of `types` without and with the matrix."""
    ladder = ["Q8_0", *[x for t in types for x in (t, f"{t}{names.IMATRIX_SUFFIX}")]]
    missing = [t for t in ladder if t not in params["fidelity"]["max_kl_mean"]]
    if missing:
        raise SystemExit(f"params.yaml fidelity.max_kl_mean has no bound for {', '.join(missing)}")
    root = Path(tempfile.mkdtemp(prefix=f"imatrix-sweep-{task}-"))
    for rel in LINKED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(build / rel)
    paths = names.TaskPaths.for_task(task)
    (root / paths.gguf_dir).mkdir(parents=True)
    outtype = params["convert"]["outtype"]
    for src in sorted((build / paths.gguf_dir).glob(f"*-{outtype}.gguf")):  # the f16 and the base's f16
        (root / paths.gguf_dir / src.name).symlink_to(src)
    (root / paths.merged).symlink_to(build / paths.merged)
    params["quantize"]["types"] = ladder
    if fidelity_rows is not None:
        params["fidelity"]["rows"] = fidelity_rows
    (root / config.PARAMS).write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="name in the report files, e.g. the session (s18)")
    ap.add_argument("--task", action="append", help="a task (repeatable); default every task")
    ap.add_argument("--types", nargs="+", default=TYPES)
    ap.add_argument("--fidelity-rows", type=int, help="fidelity.rows for the sweep (default: params')")
    ap.add_argument("--keep", action="store_true", help="keep the scratch roots")
    args = ap.parse_args(argv)
    committed = yaml.safe_load((ROOT / config.PARAMS).read_text(encoding="utf-8"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
           "TUNEFORGE_CACHE": os.environ.get("TUNEFORGE_CACHE", str(ROOT / names.CACHE))}
    for task in args.task or list(committed["tasks"]):
        paths = names.TaskPaths.for_task(task)
        if not (ROOT / paths.merged).is_dir():
            sys.exit(f"{paths.merged} missing: build (dvc repro) or dvc pull the task first")
        root = scratch_root(ROOT, task, copy.deepcopy(committed), args.types, args.fidelity_rows)
        print(f"{task}: sweeping {', '.join(args.types)} with and without the matrix in {root}", flush=True)
        out = ROOT / paths.reports / "by-hand"
        out.mkdir(parents=True, exist_ok=True)
        # eval writes both reports: the fidelity checks (KL per type) and the accuracy ladder
        for stage in ("quantize", "eval"):
            subprocess.run([sys.executable, "-m", f"stages.{stage}", task], cwd=root, env=env, check=True)
        for src, name in ((paths.fidelity, "fidelity.json"), (paths.eval_dir / "ladder.csv", "ladder.csv")):
            dest = out / f"imatrix-{args.run}-{name}"
            shutil.copyfile(root / src, dest.with_suffix(".tmp"))
            dest.with_suffix(".tmp").replace(dest)  # atomic: a killed sweep leaves no half report
            print(f"  -> {dest.relative_to(ROOT)}", flush=True)
        if not args.keep:
            shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
