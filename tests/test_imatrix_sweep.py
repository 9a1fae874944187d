"""tools.imatrix_sweep's scratch root: the build's inputs linked, params changed only in the ladder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tools import imatrix_sweep
from tuneforge import names

ROOT = Path(__file__).resolve().parents[1]
TASK = "changelog-actions"


def fake_build(tmp_path: Path, outtype: str) -> Path:
    build = tmp_path / "build"
    paths = names.TaskPaths.for_task(TASK)
    for rel in imatrix_sweep.LINKED:
        (build / rel).mkdir(parents=True, exist_ok=True)
    (build / paths.merged).mkdir(parents=True)
    gguf = build / paths.gguf_dir
    gguf.mkdir(parents=True)
    for name in (f"m-{outtype}.gguf", f"m-base-{outtype}.gguf", "m-Q8_0.gguf", "m-Q4_K_M.gguf"):
        (gguf / name).write_bytes(b"GGUF")
    return build


def test_scratch_root_links_the_build_and_sweeps_each_type(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    outtype = params["convert"]["outtype"]
    build = fake_build(tmp_path, outtype)
    root = imatrix_sweep.scratch_root(build, TASK, params, ["Q6_K", "IQ4_XS"], fidelity_rows=40)
    try:
        swept = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
        assert swept["quantize"]["types"] == ["Q8_0", "Q6_K", "Q6_K-imat", "IQ4_XS", "IQ4_XS-imat"]
        assert swept["fidelity"]["rows"] == 40
        committed = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
        for key in ("quantize", "fidelity"):  # nothing else moved
            swept.pop(key), committed.pop(key)
        assert swept == committed
        gguf = root / names.TaskPaths.for_task(TASK).gguf_dir
        # only the converter's outputs: quantize makes the ladder itself, and refuses strays
        assert sorted(p.name for p in gguf.iterdir()) == [f"m-base-{outtype}.gguf", f"m-{outtype}.gguf"]
        assert all(p.is_symlink() for p in gguf.iterdir())
        assert (root / names.TaskPaths.for_task(TASK).merged).resolve() == (
            build / names.TaskPaths.for_task(TASK).merged).resolve()
    finally:
        shutil.rmtree(root)


def test_a_type_without_a_fidelity_bound_is_refused(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    build = fake_build(tmp_path, params["convert"]["outtype"])
    with pytest.raises(SystemExit, match="no bound for Q3_K_M, Q3_K_M-imat"):
        imatrix_sweep.scratch_root(build, TASK, params, ["Q3_K_M"], fidelity_rows=None)
