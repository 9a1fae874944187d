"""quantize: f16 GGUF -> one GGUF per quantize.types entry, and SHA256SUMS pinning all.

Run: python -m stages.quantize <task>
In:  models/<task>/gguf/<model_name>-<convert.outtype>.gguf (and the base GGUF), params.quantize
Out: models/<task>/gguf/<model_name>-<TYPE>.gguf for each type,
     models/<task>/gguf/SHA256SUMS (every GGUF in the directory, `sha256sum -c` format),
     reports/<task>/receipts/quantize.json

Quantisation is `llama_cpp.llama_model_quantize` with llama.cpp's default parameters
(deterministic: same input, same bytes). Later stages call `verify_pin` on a GGUF
before using it, so a file swapped or corrupted after this stage is refused.
"""
from __future__ import annotations

import logging
import sys

from tuneforge import config, names
from tuneforge.gguf_tools import check_model_name, quant_ftype, quantize, write_sums
from tuneforge.receipts import Receipt

log = logging.getLogger("quantize")

TOOLS = ["llama_cpp_python"]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("quantize", argv)
    cfg, paths = params.section("quantize"), params.paths
    params.check_toolchain(TOOLS)
    name, outtype = check_model_name(params.task.model_name), params.convert.outtype
    types = cfg["types"]
    if len(set(types)) != len(types) or outtype in types:
        raise ValueError(f"quantize.types {types}: duplicates, or the {outtype} source itself")
    for t in types:
        quant_ftype(t)  # an unknown name fails here, listing the known ones, before any work
    receipt = Receipt("quantize", params.declared(), packages=TOOLS)
    gguf_dir = paths.gguf_dir
    files = {t: gguf_dir / names.gguf_name(name, t) for t in [outtype, *types]}
    src = files[outtype]
    if not src.is_file():
        raise FileNotFoundError(f"{src} missing: run the convert stage first")
    receipt.inputs.append(src)
    for t in types:
        quantize(src, files[t], t, cfg["nthread"])
        log.info("%s -> %s (%.1f MB)", src.name, files[t].name, files[t].stat().st_size / 1e6)
    pinned = sorted(p for p in gguf_dir.glob("*.gguf"))
    stray = [p.name for p in pinned if p not in files.values()
             and p.name != names.base_gguf_name(name, outtype)]
    if stray:
        raise RuntimeError(f"{gguf_dir} holds GGUFs no stage declares: {', '.join(stray)}; "
                           "remove them (SHA256SUMS pins exactly the built files)")
    sums = write_sums(gguf_dir, pinned)
    receipt.outputs += [*(files[t] for t in types), sums]
    receipt.finish(paths.receipt("quantize"), records_in=len(types),
                   records_out=len(types), extra={"pinned": len(pinned)})
    log.info("pinned %d GGUFs in %s", len(pinned), sums)
    return 0


if __name__ == "__main__":
    sys.exit(main())
