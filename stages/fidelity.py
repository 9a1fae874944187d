"""fidelity: is every GGUF the merged model? A tokenizer round trip, then teacher-forced KL and
top-1 agreement against the merged HF model on every eval row's gold answer (tuneforge.fidelity).

Run: python -m stages.fidelity <task>
In:  tasks.<task>.gold (eval's rows: the eval order's first eval.holdout_limit, of them the first
     fidelity.rows; every gold row in the round trip), data/<task>/exports/sft/train.jsonl (the first
     fidelity.train_prompts rows), models/<task>/merged, models/<task>/gguf/<model_name>-<type>.gguf
     for convert.outtype and each quantize.types entry (each verified against SHA256SUMS first)
Out: reports/<task>/fidelity.json (DVC metrics; tuneforge.names.shapes.FidelityReport: `models`
     keyed by GGUF type, each with its bounds, `passed` and the SHA-256 measured; `tokenizer`: the
     round trip's counts), reports/<task>/fidelity/kl_size.csv (DVC plot),
     reports/<task>/receipts/fidelity.json

Gates: a tokenizer mismatch fails the stage (it names the row and the first token that differs);
so does the converter's output (convert.outtype) over its KL bounds: a broken conversion breaks
every quantisation made from it. A quantisation over its own bounds is marked `passed: false`
and the stage succeeds, so eval still measures it; eval's verdict fails it (tuneforge.gates), so
register never promotes it.
"""
from __future__ import annotations

import logging
import sys
import time

from tuneforge import config, fidelity
from tuneforge.chat_text import train_texts
from tuneforge.evalreport import write_csv
from tuneforge.gguf_tools import tokenizer_digest, verify_pin
from tuneforge.io import write_json
from tuneforge.names import eval_order, gguf_name
from tuneforge.names.shapes import FidelityFigures, FidelityReport, TokenizerRoundTrip
from tuneforge.receipts import Receipt
from tuneforge.scoring import load_gold
from tuneforge.tasks import get_task

log = logging.getLogger("fidelity")

TOOLS = ["llama_cpp_python", "transformers", "torch"]


def check_bounds(cfg: dict, types: list[str]) -> None:
    """Every GGUF the stage measures has both bounds, before any model is loaded."""
    for key in ("max_kl_mean", "max_kl_p99"):
        missing = [t for t in types if t not in cfg[key]]
        if missing:
            where = config.key_line(config.PARAMS, ["fidelity", key])
            raise SystemExit(f"fidelity: {config.PARAMS}:{where}: fidelity.{key} has no bound for "
                             f"{', '.join(missing)} (convert.outtype and every quantize.types entry need one)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    # setup: params, toolchain, the rows, every GGUF checked against its pin
    params = config.from_argv("fidelity", argv)
    cfg, paths, task = params.section("fidelity"), params.paths, get_task(params.task_name)
    params.check_toolchain(TOOLS)
    outtype, types = params.convert.outtype, [params.convert.outtype, *params.quantize.types]
    check_bounds(cfg, types)
    receipt = Receipt("fidelity", params.declared(), packages=TOOLS)
    gold_path, train_path = params.task.gold, paths.exports_dir / "sft" / "train.jsonl"
    gold = load_gold(gold_path, task)
    # eval's rows (the eval order's first eval.holdout_limit), the first fidelity.rows of them:
    # each costs a forward pass of every GGUF and the merged model
    rows = eval_order(gold, params.eval.holdout_limit)
    rows = rows[: cfg["rows"] or len(rows)]
    ggufs = {t: paths.gguf_dir / gguf_name(params.task.model_name, t) for t in types}
    sizes, shas = {}, {}
    for key, path in ggufs.items():
        shas[key] = verify_pin(path)  # a file changed since quantize pinned it is refused here
        sizes[key] = round(path.stat().st_size / 1e6, 1)
    receipt.inputs += [gold_path, train_path, paths.merged / "model.safetensors", *ggufs.values()]

    # run: the round trip first (a tokenizer mismatch would make every KL figure moot), then KL
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(paths.merged))
    forced = fidelity.forced_rows(task, tok, rows)
    n_ctx = max(len(f.ids) for f in forced)
    with fidelity.open_ggufs(ggufs, n_ctx, cfg["n_threads"]) as llms:
        started = time.monotonic()
        # once per distinct tokenizer (byte-identical tokenizer entries tokenise alike)
        vocab = {key: tokenizer_digest(path) for key, path in ggufs.items()}
        n_gold = fidelity.round_trip(tok, llms, fidelity.gold_texts(task, tok, eval_order(gold), str(gold_path)),
                                     vocab)
        n_train = fidelity.round_trip(tok, llms, train_texts(tok, train_path, cfg["train_prompts"]), vocab)
        log.info("tokenizer round trip: %d gold and %d training texts tokenise the same in %d GGUFs (%d distinct "
                 "tokenizers) (%.1f s)", n_gold, n_train, len(llms), len(set(vocab.values())),
                 time.monotonic() - started)
        round_trip_s, started = time.monotonic() - started, time.monotonic()
        figures = fidelity.compare(fidelity.hf_model(paths.merged), llms, forced)
        kl_s = time.monotonic() - started
        log.info("teacher-forced %d rows through the merged model and %d GGUFs (%.1f s)", len(forced), len(llms),
                 kl_s)
    judged = fidelity.verdicts(figures, cfg)

    # save: metrics, the KL-vs-size plot, the receipt; then the gate on the converter's output
    # each type names the bytes it measured: eval gates on these figures only for the same SHA-256
    report = FidelityReport(
        models={k: FidelityFigures(**v, size_mb=sizes[k], sha256=shas[k]) for k, v in judged.items()},
        tokenizer=TokenizerRoundTrip(gold_texts=n_gold, train_texts=n_train, ggufs=len(llms), mismatches=0))
    write_json(paths.fidelity, report.model_dump(mode="json"))
    write_csv(paths.fidelity_dir / "kl_size.csv", [
        {"type": k, "size_mb": sizes[k], "kl_mean": v["kl_mean"], "kl_p99": v["kl_p99"], "top1": v["top1"]}
        for k, v in judged.items()])
    receipt.outputs += [paths.fidelity, paths.fidelity_dir / "kl_size.csv"]
    receipt.finish(paths.receipt("fidelity"), records_in=len(rows), records_out=len(rows),
                   extra={"answer_tokens": judged[outtype]["tokens"], "gold_texts": n_gold,
                          "train_texts": n_train, "failed": sum(not v["passed"] for v in judged.values()),
                          "round_trip_ms": round(round_trip_s * 1000), "kl_ms": round(kl_s * 1000)})
    for key, v in judged.items():
        log.info("%s: KL mean %.3g (bound %g), p99 %.3g (bound %g), top-1 %.4f over %d tokens%s", key,
                 v["kl_mean"], v["max_kl_mean"], v["kl_p99"], v["max_kl_p99"], v["top1"], v["tokens"],
                 "" if v["passed"] else ": OVER ITS BOUND, not promotable")
    conv = judged[outtype]
    if not conv["passed"]:
        raise RuntimeError(
            f"the converter's output ({ggufs[outtype].name}) is not the merged model: teacher-forced KL mean "
            f"{conv['kl_mean']:.3g} (fidelity.max_kl_mean.{outtype} {conv['max_kl_mean']:g}), p99 "
            f"{conv['kl_p99']:.3g} (fidelity.max_kl_p99.{outtype} {conv['max_kl_p99']:g}), top-1 agreement "
            f"{conv['top1']:.4f} over {conv['tokens']} answer tokens; worst row {conv['kl_max_row']}. "
            f"A broken conversion breaks every model; figures in {paths.fidelity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
