"""quantize's importance matrix (issue 20 item 4): `<TYPE>-imat` ladder entries are quantised by
llama.cpp's own llama-quantize with an imatrix that llama-imatrix computed over the task's SFT
rows, both tools built from the pinned sdist. On the tiny model: the matrix is made and
recorded without a machine path, it changes the quantised weights, and a rerun gives the
same bytes."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tuneforge import config

ROOT = Path(__file__).resolve().parents[1]
TASK_NAME = "changelog-actions"
LADDER = ["Q4_K_M", "Q4_K_M-imat", "IQ4_XS", "IQ4_XS-imat"]


def quantize_section(**over) -> dict:
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["quantize"]
    return {**section, **over}


@pytest.mark.parametrize("types, error", [
    (["Q4_K_M-imat", "IQ4_XS-imat", "Q8_0"], None),
    (["Q8_0-imat"], "Q8_0 ignores an importance matrix"),
    (["Q4_K_M-imatrix"], "not a llama.cpp type"),
    (["Q9_K-imat"], "not a llama.cpp type"),
])
def test_ladder_keys(types, error):
    if error is None:
        assert config.Quantize(**quantize_section(types=types)).types == types
        return
    with pytest.raises(ValidationError, match=error):
        config.Quantize(**quantize_section(types=types))


@pytest.fixture(scope="module")
def quantized(tiny_base, tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("llama_cpp")
    from stages import base, convert, merge, quantize, train
    from tests.test_model_chain import make_workdir

    root = make_workdir(tmp_path_factory.mktemp("imatrix"), tiny_base, quantize={"types": LADDER})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert base.main([]) == 0
        for stage in (train, merge, convert, quantize):
            assert stage.main([TASK_NAME]) == 0, stage.__name__
    return root


def gguf_of(root: Path, key: str) -> Path:
    return root / "models" / TASK_NAME / "gguf" / f"tuneforge-{TASK_NAME}-{key}.gguf"


def fields(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {name: f.contents() for name, f in reader.fields.items()}, reader


@pytest.mark.model
def test_imatrix_is_made_from_the_sft_rows_without_a_machine_path(quantized):
    imatrix = quantized / "models" / TASK_NAME / "imatrix.gguf"
    meta, reader = fields(imatrix)
    assert meta["general.type"] == "imatrix"
    # the dataset is recorded under the scratch directory's fixed name, never a temp path
    assert meta["imatrix.datasets"] == ["calibration.txt"]
    assert meta["imatrix.chunk_count"] >= 1 and meta["imatrix.chunk_size"] == 64
    # one sums-of-squares tensor per matrix multiply's weight, attention and MLP of every block
    sums = [t.name for t in reader.tensors if t.name.endswith(".in_sum2")]
    assert any("ffn_down" in n for n in sums) and any("attn_q" in n for n in sums)
    receipt = yaml.safe_load((quantized / "reports" / TASK_NAME / "receipts" / "quantize.json").read_text())
    assert receipt["counts"]["extra"]["imatrix_rows"] == 20   # the tiny export's 20 train rows


@pytest.mark.model
def test_imat_entries_use_the_matrix_and_say_so(quantized):
    for qtype in ("Q4_K_M", "IQ4_XS"):
        plain_meta, plain = fields(gguf_of(quantized, qtype))
        imat_meta, imat_reader = fields(gguf_of(quantized, f"{qtype}-imat"))
        assert imat_meta["quantize.imatrix.file"] == "imatrix.gguf"      # a fixed name, as above
        assert imat_meta["quantize.imatrix.dataset"] == "calibration.txt"
        assert "quantize.imatrix.file" not in plain_meta
        assert imat_meta["general.name"] == f"tuneforge-{TASK_NAME}"       # convert's metadata carried on
        # same tensors, same types, different quantised values in the matrices the imatrix weights
        by_name = {t.name: t for t in plain.tensors}
        differ = [t.name for t in imat_reader.tensors
                  if t.tensor_type == by_name[t.name].tensor_type and bytes(t.data) != bytes(by_name[t.name].data)]
        assert {t.name for t in imat_reader.tensors} == set(by_name)
        assert any(".ffn_down." in n for n in differ), qtype


@pytest.mark.model
def test_imat_quantize_reruns_to_the_same_bytes(quantized, tmp_path):
    from stages import quantize
    from tuneforge.io import sha256_file

    first = {k: sha256_file(gguf_of(quantized, k)) for k in LADDER}
    imatrix = quantized / "models" / TASK_NAME / "imatrix.gguf"
    first_imatrix = sha256_file(imatrix)
    copy = tmp_path / "again"
    shutil.copytree(quantized, copy, symlinks=True)
    for k in LADDER:
        gguf_of(copy, k).unlink()
    (copy / "models" / TASK_NAME / "imatrix.gguf").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(copy)
        assert quantize.main([TASK_NAME]) == 0
    assert sha256_file(copy / "models" / TASK_NAME / "imatrix.gguf") == first_imatrix
    assert {k: sha256_file(gguf_of(copy, k)) for k in LADDER} == first
