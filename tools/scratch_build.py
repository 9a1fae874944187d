"""A by-hand variant of one task's model, built beside the committed build and run over every
gold row: the recipe behind the README's by-hand table, as one command instead of a page of shell.

Run: python -m tools.scratch_build --task changelog-actions --name s45-1920x5 \
         --set train.max_steps=1920 [--set train.field_weights='{kind: 10.0}'] [--quant Q8_0]
In:  this checkout's built data stages (the task's SFT export) and base model: run `dvc repro
     export@<task> base` first; params.yaml with each --set applied to the task's overrides
Out: .cache/scratch/<name>/ (a pipeline root: params.yaml, dvc.yaml, links to this checkout's
     inputs, the variant's adapter, merged model and GGUFs), and in reports/<task>/by-hand/:
     <name>-<quant>-whole-holdout.json (tuneforge.evaluate's figures), answers/<name>-<quant>.jsonl
     (its answers, for tools.compare_answers), <name>-adapter-sidecar.json, <name>-train-receipt.json

Why a scratch root and not `dvc exp run`: an experiment runs every stage its targets depend on
with the task's eval gate, the whole ladder of candidates and the second task's shared stages
in the same workspace's cache; a by-hand comparison wants one variant's train, merge, convert
and quantize, then one quantisation decoded on all gold rows, leaving the committed build, its
lock and its outputs untouched. The stages are this checkout's own modules, run in the scratch
root as dvc.yaml runs them (`python -m stages.<stage> <task>`), so the variant differs from the
committed build by its --set values alone.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tuneforge import config, names
from tuneforge.io import write_text

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("train", "merge", "convert", "quantize")
# what a scratch root reads from this checkout, linked rather than copied (never written there:
# the stages above write only models/<task>/ and reports/<task>/)
SHARED = ("data/gold", "data/labeled", "data/replay", "data/snapshot", str(names.BASE_MODEL))


def override(params: dict, task: str, setting: str) -> None:
    """Apply `section.key=value` (value read as YAML) to tasks.<task>.overrides.<section>."""
    where, sep, value = setting.partition("=")
    section, dot, key = where.partition(".")
    if not sep or not dot or not key:
        raise SystemExit(f"scratch_build: --set {setting!r}: expected section.key=value (e.g. train.max_steps=1920)")
    overrides = params["tasks"][task]["overrides"]
    if section not in overrides:
        raise SystemExit(f"scratch_build: --set {setting!r}: {section!r} is not a section the task overrides "
                         f"({', '.join(sorted(overrides))})")
    overrides[section] = {**(overrides[section] or {}), key: yaml.safe_load(value)}


def make_root(root: Path, task: str, settings: list[str]) -> config.Params:
    """A pipeline root in `root`: this checkout's dvc.yaml, its params with `settings` applied
    (validated by tuneforge.config before any stage runs), links to its inputs and the cache.
    Returns those params, the task's overrides merged, as its stages will read them."""
    params = yaml.safe_load((ROOT / config.PARAMS).read_text(encoding="utf-8"))
    if task not in params["tasks"]:
        raise SystemExit(f"scratch_build: no task {task!r} in {config.PARAMS} ({', '.join(params['tasks'])})")
    for setting in settings:
        override(params, task, setting)
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / config.PARAMS, yaml.safe_dump(params, sort_keys=False))
    # a typo in a --set fails here, naming the field, as it would fail the stage
    merged = config.with_overrides(config.load(root / config.PARAMS), task, root / config.PARAMS)
    shutil.copyfile(ROOT / config.PIPELINE, root / config.PIPELINE)
    paths = names.TaskPaths.for_task(task)
    if not (ROOT / paths.sft("train")).exists():
        raise SystemExit(f"scratch_build: {ROOT / paths.sft_dir} is not built: run `dvc repro export@{task}` first")
    # the cache (llama.cpp's tools, train's checkpoints, eval's memo) is shared: linked when it is
    # the checkout's own folder; an absolute TUNEFORGE_CACHE reaches the stages through the environment
    cache = () if names.CACHE.is_absolute() else (str(names.CACHE),)
    for rel in (*SHARED, str(paths.sft_dir), *cache):
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(ROOT / rel)
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.scratch_build", description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--name", required=True, help="the variant's name in reports/<task>/by-hand/ (e.g. s45-1920x5)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--quant", default="Q8_0", help="the quantisation decoded on every gold row")
    args = ap.parse_args(argv)
    if not args.settings:
        raise SystemExit("scratch_build: no --set: the variant would be the committed build")

    root = ROOT / names.CACHE / "scratch" / args.name
    params = make_root(root, args.task, args.settings)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
    for stage in STAGES:
        print(f"scratch_build: {stage} in {root}", flush=True)
        subprocess.run([sys.executable, "-m", f"stages.{stage}", args.task], cwd=root, env=env, check=True)

    paths = names.TaskPaths.for_task(args.task)
    gguf = root / paths.gguf_dir / f"{params.tasks[args.task].model_name}-{args.quant}.gguf"
    out_dir = ROOT / paths.reports / "by-hand"
    (out_dir / "answers").mkdir(parents=True, exist_ok=True)
    answers = out_dir / "answers" / f"{args.name}-{args.quant}.jsonl"
    figures = subprocess.run(
        [sys.executable, "-m", "tuneforge.evaluate", "--task", args.task,
         "--gold", str(ROOT / params.tasks[args.task].gold), "--model", str(gguf), "--answers", str(answers)],
        cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    write_text(out_dir / f"{args.name}-{args.quant}-whole-holdout.json", figures)
    for suffix, src in (("adapter-sidecar", paths.adapter / names.SIDECAR), ("train-receipt", paths.receipt("train"))):
        write_text(out_dir / f"{args.name}-{suffix}.json", (root / src).read_text(encoding="utf-8"))
    print(f"scratch_build: {out_dir / f'{args.name}-{args.quant}-whole-holdout.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
