"""The CUDA path, on the tiny random-weight llama: a few QLoRA steps (4-bit NF4 base via
bitsandbytes), bf16 LoRA, the merge of a QLoRA adapter checked against a bf16 reference,
and llama.cpp with every layer offloaded to the GPU checked against the CPU.

`make gpu-check` runs these in .venv-gpu (requirements-gpu.lock: PyPI's CUDA 13 torch,
bitsandbytes, llama-cpp-python built with GGML_CUDA). Without CUDA the module skips; with
TUNEFORGE_REQUIRE_GPU=1 (gpu-check sets it) a missing GPU stops the run with exit 1
instead, so the check cannot pass by skipping. The tolerances below are set from bf16 and
NF4 rounding. On an H200 (reports/gpu-check/, through make gpu-bundle) the first three tests
pass within them; the offload test crashed in llama.cpp's model load and has not passed yet.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import re
from pathlib import Path

import pytest

REQUIRE = os.environ.get("TUNEFORGE_REQUIRE_GPU") == "1"


def need(module: str):
    """Import `module`; skip without it, unless gpu-check asked for a run that cannot skip."""
    return importlib.import_module(module) if REQUIRE else pytest.importorskip(module)


torch = need("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.model]

if not torch.cuda.is_available():
    why = f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)"
    if REQUIRE:
        pytest.exit(f"TUNEFORGE_REQUIRE_GPU=1 but {why}", returncode=1)
    pytest.skip(why, allow_module_level=True)

need("llama_cpp")
from tests.test_model_chain import make_workdir  # noqa: E402 (after the CUDA check)

NAME = "tuneforge-changelog-actions"  # convert.model_name
PROBE = ("Fixed a crash when `--output` points to a directory.", "Bug fixes", "example")


def run_stages(root: Path, *stages) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for stage in stages:
            assert stage.main([] if stage.__name__ == "stages.base" else ["changelog-actions"]) == 0, stage.__name__


def cosine(a, b) -> float:
    """Smallest per-position cosine similarity of two [positions, vocab] logit arrays."""
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())


def adapter_summary(root: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    meta = json.loads((root / "models/changelog-actions/adapter/tuneforge.json").read_text())
    weights = load_file(str(root / "models/changelog-actions/adapter/adapter_model.safetensors"))
    return meta, weights


@pytest.fixture(scope="module")
def qlora_root(tiny_base, tmp_path_factory) -> Path:
    """train (QLoRA, 6 steps) + merge, once."""
    need("bitsandbytes")
    from stages import base, merge, train

    root = make_workdir(tmp_path_factory.mktemp("qlora"), tiny_base,
                        train={"qlora": True, "precision": "bf16", "max_steps": 6})
    run_stages(root, base, train, merge)
    return root


def test_qlora_steps_on_the_tiny_model(qlora_root):
    meta, weights = adapter_summary(qlora_root)
    assert (meta["device"], meta["qlora"], meta["precision"], meta["steps"]) == ("cuda", True, "bf16", 6)
    assert math.isfinite(meta["train_loss"]) and math.isfinite(meta["valid_loss"])
    receipt = json.loads((qlora_root / "reports/changelog-actions/receipts/train.json").read_text())
    resolved = receipt["params"]["resolved"]
    assert resolved["matmul_isa"].startswith("cuda sm_"), resolved
    assert {k: v for k, v in resolved.items() if k != "matmul_isa"} == {"precision": "bf16", "device": "cuda",
                                                                       "qlora": True}
    assert meta["toolchain"]["bitsandbytes"] != "not-installed"
    assert {t.dtype for t in weights.values()} == {torch.float32}, "the adapter is kept in fp32"
    # lora_B starts at zero: a nonzero one means the optimiser stepped through the 4-bit base
    assert any(float(t.abs().max()) > 0 for k, t in weights.items() if "lora_B" in k)


def test_bf16_lora_on_cuda(tiny_base, tmp_path):
    from stages import base, train

    root = make_workdir(tmp_path, tiny_base, train={"qlora": False, "precision": "bf16", "max_steps": 6})
    run_stages(root, base, train)
    meta, weights = adapter_summary(root)
    assert (meta["device"], meta["qlora"], meta["precision"], meta["steps"]) == ("cuda", False, "bf16", 6)
    assert math.isfinite(meta["train_loss"])
    assert {t.dtype for t in weights.values()} == {torch.float32}
    assert any(float(t.abs().max()) > 0 for k, t in weights.items() if "lora_B" in k)


def probe_logits(model, tok) -> torch.Tensor:
    from tuneforge.tasks import get_task

    enc = tok.apply_chat_template(get_task("changelog-actions").messages(*PROBE), add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True).to(model.device)
    with torch.inference_mode():
        return model(**enc).logits[0].float().cpu()


def test_merge_of_a_qlora_adapter_matches_a_bf16_reference(qlora_root):
    """The merge stage folds the QLoRA adapter into the full-precision base (and checks its own
    fp32 probe); the merged model in bf16 on the GPU must match the bf16 base + adapter, and
    the 4-bit base + adapter the training saw must stay close to both."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    merged_meta = json.loads((qlora_root / "models/changelog-actions/merged/tuneforge.json").read_text())
    assert merged_meta["probe_max_logit_diff"] <= 1e-3
    base, adapter, merged = (str(qlora_root / p) for p in
                             ("models/base", "models/changelog-actions/adapter", "models/changelog-actions/merged"))
    tok = AutoTokenizer.from_pretrained(base)
    bf16 = {"dtype": torch.bfloat16, "device_map": {"": 0}}
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **bf16), adapter).eval()
    ref = probe_logits(reference, tok)
    got = probe_logits(AutoModelForCausalLM.from_pretrained(merged, **bf16).eval(), tok)
    assert cosine(got, ref) > 0.999, f"merged vs bf16 reference: cosine {cosine(got, ref):.5f}"
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    quantised = AutoModelForCausalLM.from_pretrained(base, quantization_config=nf4, **bf16)
    q = probe_logits(PeftModel.from_pretrained(quantised, adapter).eval(), tok)
    assert cosine(q, ref) > 0.9, f"4-bit base + adapter vs bf16 reference: cosine {cosine(q, ref):.5f}"


def llama_scores(gguf: Path, text: str, n_gpu_layers: int):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_gpu_layers=n_gpu_layers, n_ctx=256, logits_all=True, seed=0, verbose=True)
    tokens = llm.tokenize(text.encode())
    llm.eval(tokens)
    out = np.array(llm.scores[: len(tokens)])
    llm.close()
    return out


def test_llama_cpp_offload_matches_the_cpu(qlora_root, capfd):
    import llama_cpp

    from stages import convert

    assert llama_cpp.llama_supports_gpu_offload(), (
        "llama-cpp-python was built without GPU offload: make setup-gpu builds it with "
        "CMAKE_ARGS=-DGGML_CUDA=on (needs nvcc)")
    run_stages(qlora_root, convert)
    gguf = qlora_root / f"models/changelog-actions/gguf/{NAME}-f16.gguf"
    text = "Fixed a crash when `--output` points to a directory."
    cpu = llama_scores(gguf, text, 0)
    capfd.readouterr()
    gpu = llama_scores(gguf, text, -1)
    log = capfd.readouterr().err
    offloaded = re.search(r"offloaded (\d+)/(\d+) layers to GPU", log)
    assert offloaded and offloaded[1] == offloaded[2] != "0", f"not every layer offloaded: {offloaded}"
    assert cosine(gpu, cpu) > 0.999, f"GPU vs CPU logits: cosine {cosine(gpu, cpu):.5f}"
    assert (gpu.argmax(-1) == cpu.argmax(-1)).mean() >= 0.9
