"""The cross-stage records (tuneforge.names.shapes): the committed build's files parse and dump
back to the same bytes, and a file with a wrong field fails naming the file and the field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages import register
from tuneforge import predict
from tuneforge.io import canonical_json, write_json, write_jsonl
from tuneforge.names import prediction_id
from tuneforge.names.shapes import (
    AdapterSidecar,
    BaseSidecar,
    MergedSidecar,
    Prediction,
    Registry,
    Verdict,
    read_sidecar,
)

from . import shape_examples
from .conftest import ROOT


def as_written(obj) -> str:
    """tuneforge.io.write_json's bytes."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(("rel", "model"), [("models/changelog-actions/registry.json", Registry),
                                            ("reports/changelog-actions/eval/verdict.json", Verdict)])
def test_committed_files_round_trip_byte_identical(rel, model):
    text = (ROOT / rel).read_text(encoding="utf-8")
    assert as_written(model.model_validate_json(text).model_dump(mode="json")) == text


def test_predictions_round_trip_byte_identical():
    path = ROOT / "reports/changelog-actions/eval/predictions.jsonl"
    if not path.is_file():
        pytest.skip(f"{path}: not built here (a DVC output)")
    raw = path.read_bytes()
    dumped = b"".join((canonical_json(Prediction.model_validate_json(line).model_dump(mode="json")) + "\n").encode()
                      for line in raw.splitlines())
    assert dumped == raw


def _sidecar(tmp_path: Path, obj: dict) -> Path:
    write_json(tmp_path / "tuneforge.json", obj)
    return tmp_path


@pytest.mark.parametrize(("model", "good", "field", "bad"), [
    (AdapterSidecar, shape_examples.adapter, "adapter_sha256", "not-a-hash"),
    (AdapterSidecar, shape_examples.adapter, "precision", "auto"),  # what ran, never the setting
    (BaseSidecar, shape_examples.base, "wheel_sha256", None),
    (MergedSidecar, None, "dtype", "float8"),
])
def test_a_bad_sidecar_fails_naming_file_and_field(tmp_path, model, good, field, bad):
    if model is MergedSidecar:
        a = shape_examples.adapter()
        obj = MergedSidecar(base="b", base_sha256="a6" * 32, adapter_sha256=a.adapter_sha256, dataset=a.dataset,
                            train_params=a.params, dtype="float32", probe_max_logit_diff=1e-4,
                            toolchain={}).model_dump(mode="json")
    else:
        obj = good().model_dump(mode="json")
    assert read_sidecar(_sidecar(tmp_path, obj), model)  # the good one parses
    with pytest.raises(ValueError, match=rf"{tmp_path / 'tuneforge.json'}: not a {model.__name__} \(.*{field}"):
        read_sidecar(_sidecar(tmp_path, {**obj, field: bad}), model)
    with pytest.raises(ValueError, match=r"extra_field.*Extra inputs are not permitted"):
        read_sidecar(_sidecar(tmp_path, {**obj, "extra_field": 1}), model)


def test_a_bad_registry_fails_naming_file_and_field(tmp_path):
    reg = json.loads((ROOT / "models/changelog-actions/registry.json").read_text(encoding="utf-8"))
    reg["models"][2]["status"] = "promotd"  # the untyped code read this as "nothing is promoted"
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(reg), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}: not a Registry \(models\.2\.status: Input should be"):
        predict.promoted_gguf(path)


def test_a_bad_prediction_fails_naming_file_line_and_field(tmp_path):
    gold = tmp_path / "gold.jsonl"
    write_jsonl(gold, [{"text": "Fixed a crash.", "hint": None}])
    row = {"closed_by_decoder": False, "gold_kind": "fix", "id": "0" * 16, "model": "Q8_0",
           "output": "{}", "parsed": True, "pred_kind": "fix", "variant": "hint"}
    row["id"] = prediction_id("Fixed a crash.")
    preds = tmp_path / "predictions.jsonl"
    write_jsonl(preds, [row])
    assert register.card_examples(preds, gold, "Q8_0")[0]["text"] == "Fixed a crash."
    write_jsonl(preds, [row, {**row, "parsed": "maybe"}])
    with pytest.raises(ValueError, match=rf"{preds}:2: not a valid Prediction: .*\(parsed: "):
        register.card_examples(preds, gold, "Q8_0")


def test_register_takes_provenance_from_the_gguf_bound_to_the_adapter(tmp_path, monkeypatch):
    adapter = shape_examples.adapter()
    prov = shape_examples.provenance(adapter).dump()
    monkeypatch.setattr(register, "provenance_of", lambda path: prov)
    gguf = tmp_path / "m-Q8_0.gguf"
    assert register.gguf_provenance(gguf, adapter, Path("a.json")).base_model == "SmolLM2-135M-Instruct"
    monkeypatch.setattr(register, "provenance_of", lambda path: {**prov, "adapter_sha256": "00" * 32})
    with pytest.raises(ValueError, match=rf"{gguf} was converted from adapter 0+ \(finetuned\), not the one a\.json"):
        register.gguf_provenance(gguf, adapter, Path("a.json"))
    monkeypatch.setattr(register, "provenance_of", lambda path: {k: v for k, v in prov.items() if k != "task"})
    with pytest.raises(ValueError, match=rf"{gguf}: general.description is not the provenance .*\(task: Field requ"):
        register.gguf_provenance(gguf, adapter, Path("a.json"))
