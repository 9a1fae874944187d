"""Build every stage twice from scratch and check each artifact's hash is unchanged.

Run: python -m tuneforge.verify_repro   (or `make verify-repro`; two full CPU builds, ~30 min)

dvc.lock records the hash of every output; a forced `dvc repro` rewrites it. Both
builds run at the current commit, because artifacts record the git revision they
were built from (train sidecar, GGUF provenance): a lock from an older commit would
differ for that reason alone. Any output whose hash moved is a source of nondeterminism. Receipts (durations) and the
drift report (it compares with the previous run) differ by design and are exempt.
"""
from __future__ import annotations

import subprocess
import sys

import yaml

from tuneforge.io import load_params


def output_hashes(lock_text: str, exempt: tuple[str, ...]) -> dict[str, str]:
    lock = yaml.safe_load(lock_text)
    hashes = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if not out["path"].startswith(exempt):
                hashes[out["path"]] = out.get("md5") or out.get("hash", "")
    return hashes


def main() -> int:
    paths = load_params()["paths"]
    exempt = (paths["receipts_dir"], paths["drift"])
    subprocess.run(["dvc", "repro", "--force"], check=True)
    with open("dvc.lock", encoding="utf-8") as f:
        before = output_hashes(f.read(), exempt)
    subprocess.run(["dvc", "repro", "--force"], check=True)
    with open("dvc.lock", encoding="utf-8") as f:
        after = output_hashes(f.read(), exempt)
    moved = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    for path in moved:
        print(f"changed: {path}  {before.get(path)} -> {after.get(path)}")
    print(f"{len(before) - len(moved)} of {len(before)} artifacts bit-identical across two forced builds")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
