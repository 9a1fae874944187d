"""merge: base model + LoRA adapter -> one merged Hugging Face model (CPU).

Run: python -m stages.merge <task>
In:  models/base, models/<task>/adapter, params.merge
Out: models/<task>/merged   safetensors + tokenizer + chat template + tuneforge.json sidecar,
     reports/<task>/receipts/merge.json

`merge_and_unload` folds the LoRA deltas into the base weights. Before saving, the
merged model's logits on a probe prompt are compared with the adapter model's; a
difference over merge.max_logit_diff fails the stage (a broken merge is caught here,
not three stages later as a parity miss).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from tuneforge import config
from tuneforge.io import sha256_file, write_json
from tuneforge.llm import atomic_dir, toolchain
from tuneforge.names import SIDECAR
from tuneforge.names.shapes import AdapterSidecar, BaseSidecar, MergedSidecar, read_sidecar
from tuneforge.receipts import Receipt
from tuneforge.tasks import get_task

log = logging.getLogger("merge")

TOOLS = ["torch", "transformers", "peft"]
PROBE = ("Fixed a crash when `--output` points to a directory.", "Bug fixes", "example")


def merge(base_dir: Path, adapter_dir: Path, probe: list[dict], dtype: str):
    """Return (merged model, tokenizer, max |logit difference| on the probe)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    enc = tok.apply_chat_template(probe, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.inference_mode():
        before = model(**enc).logits
        merged = model.merge_and_unload().eval()
        after = merged(**enc).logits
    diff = float((before - after).abs().max())
    if dtype != "float32":
        merged = merged.to(getattr(torch, dtype))
    return merged, tok, diff


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("merge", argv)
    cfg, paths, task = params.section("merge"), params.paths, get_task(params.task_name)
    params.check_toolchain(TOOLS)
    receipt = Receipt("merge", params.declared(), packages=TOOLS)
    base_dir, adapter_dir, out_dir = paths.base_model, paths.adapter, paths.merged
    receipt.inputs += [base_dir / "model.safetensors", adapter_dir / "adapter_model.safetensors"]

    adapter_meta = read_sidecar(adapter_dir, AdapterSidecar)
    base_meta = read_sidecar(base_dir, BaseSidecar).root
    model, tok, diff = merge(base_dir, adapter_dir, task.messages(*PROBE), cfg["dtype"])
    if diff > cfg["max_logit_diff"]:
        raise RuntimeError(f"merged logits differ from the adapter model's by {diff:.2e} "
                           f"(> merge.max_logit_diff {cfg['max_logit_diff']}); not saving")
    model.config.name_or_path = f"{base_meta.name}+lora"
    sidecar = MergedSidecar(
        base=base_meta.name, dtype=cfg["dtype"], base_sha256=sha256_file(base_dir / "model.safetensors"),
        adapter_sha256=adapter_meta.adapter_sha256, dataset=adapter_meta.dataset,
        train_params=adapter_meta.params, probe_max_logit_diff=diff, toolchain=toolchain(),
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        write_json(tmp / SIDECAR, sidecar.model_dump(mode="json"))
    receipt.outputs += [out_dir / "model.safetensors", out_dir / SIDECAR]
    receipt.finish(paths.receipt("merge"), records_in=1, records_out=1)
    log.info("merged %s + adapter -> %s (probe max |logit diff| %.2e)", base_dir, out_dir, diff)
    return 0


if __name__ == "__main__":
    sys.exit(main())
