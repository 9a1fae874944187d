"""convert: merged (and base) HF model -> f16 GGUF with llama.cpp's own converter.

Run: python -m stages.convert <task>
In:  models/<task>/merged, models/base, params.convert, toolchain.llama_cpp_python (the sdist
     whose vendor/llama.cpp/convert_hf_to_gguf.py runs, fetched into the machine's cache)
Out: models/<task>/gguf/<model_name>-<outtype>.gguf        the fine-tuned model
     models/<task>/gguf/<model_name>-base-<outtype>.gguf   the base (eval's base figures)
     reports/<task>/receipts/convert.json

`general.name` is set at conversion (`--model-name`), never by rewriting the file
afterwards. `general.license` is `convert.license`, or else the licence the base states
(recorded in its sidecar when the base stage resolved it); neither means the key stays unset and
the model card says so. Provenance goes in through the converter's `--metadata` override file:
`general.description` holds {"tuneforge": {dataset sha256, params sha256, git revision,
toolchain versions, ...}} as JSON (params sha256: of exactly the params this stage declares in
dvc.yaml, so it changes exactly when DVC reruns the stage; what shaped the weights upstream is
in the merged model's sidecar: train params, dataset and adapter hashes), and
general.datasets / general.base_models carry the dataset hash and base name in the standard fields.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from tuneforge import config, names
from tuneforge.gguf_tools import (
    check_model_name,
    convert_hf_to_gguf,
    ensure_converter,
    provenance_of,
    provenance_override,
    read_metadata,
)
from tuneforge.io import sig_hash
from tuneforge.llm import toolchain
from tuneforge.names.shapes import BaseSidecar, GgufProvenance, MergedSidecar, read_sidecar
from tuneforge.receipts import Receipt

log = logging.getLogger("convert")

TOOLS = ["torch", "transformers", "peft", "trl", "llama_cpp_python"]


def provenance(params: config.StageParams, merged_meta: MergedSidecar, kind: str) -> dict[str, Any]:
    finetuned = {"dataset_sha256": merged_meta.dataset.train.sha256, "dataset_name": f"{params.task_name}-sft",
                 "adapter_sha256": merged_meta.adapter_sha256} if kind == "finetuned" else {}
    return GgufProvenance(kind=kind, task=params.task_name, base_model=merged_meta.base,
                          params_sha256=sig_hash(params.declared()),
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("convert", argv)
    cfg, paths = params.section("convert"), params.paths
    params.check_toolchain(TOOLS)
    name = check_model_name(params.task.model_name)
    receipt = Receipt("convert", params.declared(), packages=TOOLS)
    requirement = f"llama-cpp-python=={params.toolchain.llama_cpp_python}"
    converter = ensure_converter(requirement, names.CACHE, cfg["sdist_sha256"])
    gguf_dir = paths.gguf_dir
    merged_dir, base_dir = paths.merged, paths.base_model
    merged_meta = read_sidecar(merged_dir, MergedSidecar)
    licence = cfg.get("license") or read_sidecar(base_dir, BaseSidecar).root.license
    if not licence:
        log.warning("no licence: convert.license is null and the base states none; "
                    "general.license stays unset")

    jobs = [(merged_dir, gguf_dir / names.gguf_name(name, cfg["outtype"]), name,
             provenance(params, merged_meta, "finetuned")),
            (base_dir, gguf_dir / names.base_gguf_name(name, cfg["outtype"]), f"{name}-base",
             provenance(params, merged_meta, "base"))]
    for model_dir, out, stem, prov in jobs:
        receipt.inputs.append(model_dir / "model.safetensors")
        convert_one(converter, model_dir, out, cfg["outtype"], stem, prov, licence)
        receipt.outputs.append(out)
        log.info("%s -> %s (%.1f MB)", model_dir, out, out.stat().st_size / 1e6)
    receipt.finish(paths.receipt("convert"), records_in=len(jobs),
                   records_out=len(jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
