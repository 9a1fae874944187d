"""quantize: f16 GGUF -> one GGUF per quantize.types entry, and SHA256SUMS pinning all.

Run: python -m stages.quantize <task>
In:  models/<task>/gguf/<model_name>-<convert.outtype>.gguf (and the base GGUF), params.quantize;
     for `*-imat` types: data/<task>/exports/sft/train.jsonl and models/<task>/merged (its template)
Out: models/<task>/gguf/<model_name>-<TYPE>.gguf for each type, models/<task>/imatrix.gguf
     (when a type uses it),
     models/<task>/gguf/SHA256SUMS (every GGUF in the directory, `sha256sum -c` format),
     reports/<task>/receipts/quantize.json

Quantisation is `llama_cpp.llama_model_quantize` with llama.cpp's default parameters
(deterministic: same input, same bytes). An entry named `<TYPE>-imat` is quantised with an
importance matrix instead: llama.cpp's `llama-imatrix` over the first quantize.imatrix_rows
SFT train rows (whole conversations, rendered as training renders them) writes
models/<task>/imatrix.gguf, and `llama-quantize --imatrix` uses it; both tools are built
once from the pinned sdist (tuneforge.llama_tools). Later stages call `verify_pin` on a GGUF
before using it, so a file swapped or corrupted after this stage is refused.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from tuneforge import config, names
from tuneforge.chat_text import train_texts
from tuneforge.gguf_tools import check_model_name, quant_ftype, quantize, write_sums
from tuneforge.llama_tools import compute_imatrix, ensure_tools, quantize_with_imatrix
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
        quant_ftype(names.quant_type(t))  # an unknown name fails here, listing the known ones
    receipt = Receipt("quantize", params.declared(), packages=TOOLS)
    gguf_dir = paths.gguf_dir
    files = {t: gguf_dir / names.gguf_name(name, t) for t in [outtype, *types]}
    src = files[outtype]
    if not src.is_file():
        raise FileNotFoundError(f"{src} missing: run the convert stage first")
    receipt.inputs.append(src)
    imat_types = [t for t in types if names.uses_imatrix(t)]
    extra: dict = {}
    if imat_types:
        sft = paths.sft("train")
        tools = ensure_tools(f"llama-cpp-python=={params.toolchain.llama_cpp_python}", names.CACHE,
                             params.convert.sdist_sha256)
        text, n_rows = calibration_text(paths.merged, sft, cfg["imatrix_rows"])
        compute_imatrix(tools["llama-imatrix"], src, text, paths.imatrix, ctx=cfg["imatrix_ctx"],
                        chunks=cfg["imatrix_chunks"], threads=cfg["nthread"])
        receipt.inputs.append(sft)
        receipt.outputs.append(paths.imatrix)
        extra["imatrix_rows"] = n_rows
        log.info("imatrix over %d SFT rows -> %s", n_rows, paths.imatrix)
    for t in types:
        if names.uses_imatrix(t):
            quantize_with_imatrix(tools["llama-quantize"], src, files[t], names.quant_type(t),
                                  paths.imatrix, cfg["nthread"])
        else:
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
                   records_out=len(types), extra={"pinned": len(pinned), **extra})
    log.info("pinned %d GGUFs in %s", len(pinned), sums)
    return 0


def calibration_text(merged: Path, sft: Path, rows: int) -> tuple[str, int]:
    """The imatrix's text: the first `rows` SFT train rows, each whole conversation rendered
    with the merged model's chat template as training renders it (special tokens included:
    llama-imatrix parses them as such)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged))
    texts = [t.text for t in train_texts(tok, sft, rows)]
    if not texts:
        raise ValueError(f"{sft}: no SFT rows for the importance matrix")
    return "".join(texts), len(texts)


if __name__ == "__main__":
    sys.exit(main())
