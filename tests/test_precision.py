"""train.precision: bf16 | fp32 as written (part of DVC's key), auto resolved from the
hardware and written where DVC's key cannot show it (adapter sidecar, train receipt)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_params_name_the_precision():
    train = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["train"]
    assert "bf16" not in train, "train.bf16 read /proc/cpuinfo under one DVC key; use train.precision"
    # the default is 'auto' (an explicit bf16 takes ~10 h on an AVX2-only CPU): what it chose is
    # written where DVC's key on train cannot show it (test_auto_... below checks the sidecar)
    assert train["precision"] in ("bf16", "fp32", "auto")


@pytest.mark.parametrize("native", [True, False])
def test_explicit_precision_ignores_the_hardware(monkeypatch, native):
    from tuneforge import llm

    monkeypatch.setattr(llm, "native_bf16", lambda cuda: native)
    assert llm.train_precision({"precision": "bf16"}, cuda=False) == "bf16"
    assert llm.train_precision({"precision": "fp32"}, cuda=False) == "fp32"
    assert llm.train_precision({"precision": "auto"}, cuda=False) == ("bf16" if native else "fp32")


def test_bad_precision_names_file_and_line(tmp_path):
    from tuneforge.llm import train_precision

    params = tmp_path / "params.yaml"
    params.write_text("task: x\ntrain:\n  seed: 1\n  precision: fp8\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"params\.yaml:4: train\.precision is 'fp8'"):
        train_precision({"seed": 1, "precision": "fp8"}, cuda=False, params_file=params)
    params.write_text("train:\n  bf16: true\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"params\.yaml:2: train\.bf16 was replaced"):
        train_precision({"bf16": True}, cuda=False, params_file=params)


@pytest.mark.model
def test_train_records_what_auto_chose(tiny_base, tmp_path, monkeypatch):
    """auto on hardware without native bf16 trains in fp32; the sidecar and the receipt say so."""
    pytest.importorskip("llama_cpp")
    from tests.test_model_chain import make_workdir
    from tuneforge import llm

    root = make_workdir(tmp_path / "w", tiny_base, train={"precision": "auto", "max_steps": 1})
    monkeypatch.chdir(root)
    monkeypatch.setattr(llm, "native_bf16", lambda cuda: False)
    from stages import base, train

    assert base.main([]) == 0 and train.main(["changelog-actions"]) == 0
    sidecar = json.loads((root / "models/changelog-actions/adapter/tuneforge.json").read_text())
    receipt = json.loads((root / "reports/changelog-actions/receipts/train.json").read_text())
    assert sidecar["params"]["precision"] == "auto" and sidecar["precision"] == "fp32"
    assert receipt["params"]["train"]["precision"] == "auto"
    from tuneforge.trainer import matmul_isa

    assert receipt["params"]["resolved"] == {"precision": "fp32", "device": "cpu", "qlora": False,
                                             "matmul_isa": matmul_isa(False)}
