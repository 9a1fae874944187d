"""convert: merged (and base) HF model -> f16 GGUF with llama.cpp's own converter.

Run: python -m stages.convert
In:  paths.merged, paths.base_model, params.convert, toolchain.llama_cpp_python (the sdist
     whose vendor/llama.cpp/convert_hf_to_gguf.py runs, fetched into paths.cache_dir)
Out: <gguf_dir>/<convert.model_name>-<outtype>.gguf        the fine-tuned model
     <gguf_dir>/<convert.model_name>-base-<outtype>.gguf   the base (eval's base figures)
     <receipts_dir>/convert.json

`general.name` is set at conversion (`--model-name`), never by rewriting the file
afterwards. `general.license` is `convert.license`, or else the licence the base states
(recorded in its sidecar when the base stage resolved it); neither means the key stays unset and
the model card says so. Provenance goes in through the converter's `--metadata` override file:
`general.description` holds {"tuneforge": {dataset sha256, params sha256, git revision,
toolchain versions, ...}} as JSON, and general.datasets / general.base_models carry the
dataset hash and base name in the standard fields.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from tuneforge.gguf_tools import (
    check_model_name,
    convert_hf_to_gguf,
    ensure_converter,
    provenance_of,
    provenance_override,
    read_metadata,
)
from tuneforge.io import load_params, sig_hash
from tuneforge.llm import check_toolchain, toolchain
from tuneforge.names.shapes import BaseSidecar, GgufProvenance, MergedSidecar, read_sidecar
from tuneforge.receipts import Receipt

log = logging.getLogger("convert")

TOOLS = ["torch", "transformers", "peft", "trl", "llama_cpp_python"]
MODEL_PARAMS = ("task", "base", "train", "merge", "convert", "toolchain")  # what shaped the weights


def provenance(params: dict, merged_meta: MergedSidecar, kind: str) -> dict[str, Any]:
    finetuned = {"dataset_sha256": merged_meta.dataset.train.sha256, "dataset_name": f"{params['task']}-sft",
                 "adapter_sha256": merged_meta.adapter_sha256} if kind == "finetuned" else {}
    return GgufProvenance(kind=kind, task=params["task"], base_model=merged_meta.base,
                          params_sha256=sig_hash({k: params.get(k) for k in MODEL_PARAMS}),
                          toolchain=toolchain(TOOLS), **finetuned).dump()


def convert_one(converter: Path, model_dir: Path, out: Path, outtype: str, name: str,
                prov: dict[str, Any], licence: str | None) -> Path:
    convert_hf_to_gguf(converter, model_dir, out, outtype=outtype, model_name=name,
                       metadata=provenance_override(name, prov), licence=licence)
    got = read_metadata(out, ["general.name", "general.license"])
    if (got.get("general.name") != name or got.get("general.license") != licence
            or provenance_of(out) != prov):
        raise RuntimeError(f"{out}: general.name {got.get('general.name')!r}, general.license "
                           f"{got.get('general.license')!r} / provenance not as written; "
                           "the converter ignored the metadata override")
    return out


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = load_params()
    cfg, paths = params["convert"], params["paths"]
    check_toolchain(params["toolchain"], TOOLS)
    name = check_model_name(cfg["model_name"])
    receipt = Receipt("convert", {"convert": cfg}, packages=TOOLS)
    requirement = f"llama-cpp-python=={params['toolchain']['llama_cpp_python']}"
    converter = ensure_converter(requirement, paths["cache_dir"], cfg["sdist_sha256"])
    gguf_dir = Path(paths["gguf_dir"])
    merged_dir, base_dir = Path(paths["merged"]), Path(paths["base_model"])
    merged_meta = read_sidecar(merged_dir, MergedSidecar)
    licence = cfg.get("license") or read_sidecar(base_dir, BaseSidecar).root.license
    if not licence:
        log.warning("no licence: convert.license is null and the base states none; "
                    "general.license stays unset")

    jobs = [(merged_dir, gguf_dir / f"{name}-{cfg['outtype']}.gguf", name,
             provenance(params, merged_meta, "finetuned")),
            (base_dir, gguf_dir / f"{name}-base-{cfg['outtype']}.gguf", f"{name}-base",
             provenance(params, merged_meta, "base"))]
    for model_dir, out, gguf_name, prov in jobs:
        receipt.inputs.append(model_dir / "model.safetensors")
        convert_one(converter, model_dir, out, cfg["outtype"], gguf_name, prov, licence)
        receipt.outputs.append(out)
        log.info("%s -> %s (%.1f MB)", model_dir, out, out.stat().st_size / 1e6)
    receipt.finish(Path(paths["receipts_dir"]) / "convert.json", records_in=len(jobs),
                   records_out=len(jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
