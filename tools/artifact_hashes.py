"""Hashes of what a task's build must keep byte-identical across a refactor.

Issue 18's constraint: the changelog task's weights and answers stay byte-identical: adapter and
merged safetensors, GGUF tensor data (not its metadata, which names the layout), predictions.jsonl.
Prints one JSON object; `--compare FILE` exits 1 naming every hash that differs from FILE's.

    python tools/artifact_hashes.py --task changelog-actions [--compare old.json]
    python tools/artifact_hashes.py --params v7-params.yaml   # a v7 build (git show v7:params.yaml)

The layout comes from the params file (default: the root's params.yaml): v7's one-task `paths:`
section when it has one, else the task's directories from tuneforge.names.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from tuneforge.io import sha256_file


def gguf_tensor_sha256(path: Path) -> str:
    """SHA-256 over every tensor's name, type, shape and bytes, in file order: metadata excluded."""
    from gguf import GGUFReader

    h = hashlib.sha256()
    for t in GGUFReader(str(path)).tensors:
        h.update(f"{t.name}|{int(t.tensor_type)}|{list(map(int, t.shape))}|".encode())
        h.update(t.data.tobytes())
    return h.hexdigest()


def _some(paths: list[Path], where: Path, pattern: str) -> list[Path]:
    if not paths:  # a missing build would print fewer hashes, and a --compare only names them as gone
        raise SystemExit(f"{where}: no {pattern}; is the task built there?")
    return paths


def hashes(root: Path, layout: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in ("adapter", "merged", "base"):
        d = root / layout[key]
        for f in _some(sorted(d.glob("*.safetensors")), d, "*.safetensors"):
            out[f"{key}/{f.name}"] = sha256_file(f)
    gguf_dir = root / layout["gguf_dir"]
    for f in _some(sorted(gguf_dir.glob("*.gguf")), gguf_dir, "*.gguf"):
        out[f"gguf-tensors/{f.name.rsplit('-', 1)[-1] if 'base' not in f.name else 'base-f16.gguf'}"] = \
            gguf_tensor_sha256(f)
    out["eval/predictions.jsonl"] = sha256_file(root / layout["eval_dir"] / "predictions.jsonl")
    for name in ("train.jsonl", "valid.jsonl"):
        out[f"sft/{name}"] = sha256_file(root / layout["exports_dir"] / "sft" / name)
    return out


def layout_for(params_file: Path, task: str) -> dict[str, str]:
    import yaml

    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    if "paths" in params:  # the v7 layout: one task, its paths in params.yaml
        paths = params["paths"]
        return {k: paths[k] for k in ("adapter", "merged", "gguf_dir", "eval_dir", "exports_dir")} | \
            {"base": paths["base_model"]}
    from tuneforge import names

    if task not in params.get("tasks", {}):
        raise SystemExit(f"{params_file}: tasks: no task {task!r} (listed: {', '.join(params.get('tasks', {}))})")
    p = names.TaskPaths.for_task(task)
    return {"adapter": str(p.adapter), "merged": str(p.merged), "base": str(p.base_model),
            "gguf_dir": str(p.gguf_dir), "eval_dir": str(p.eval_dir), "exports_dir": str(p.exports_dir)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="changelog-actions")
    ap.add_argument("--root", default=".")
    ap.add_argument("--params", help="the params file whose layout the build has (default: ROOT/params.yaml)")
    ap.add_argument("--compare", help="a JSON file of an earlier run; exit 1 on any difference")
    args = ap.parse_args()
    root = Path(args.root)
    now = hashes(root, layout_for(Path(args.params) if args.params else root / "params.yaml", args.task))
    print(json.dumps(now, indent=2, sort_keys=True))
    if args.compare:
        old = json.loads(Path(args.compare).read_text())
        bad = [k for k in sorted(set(old) | set(now)) if old.get(k) != now.get(k)]
        for k in bad:
            print(f"differs: {k}: {old.get(k)} -> {now.get(k)}", file=sys.stderr)
        print(f"{len(now) - len(bad)} of {len(set(old) | set(now))} hashes identical", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
