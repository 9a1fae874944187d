"""Evaluate one GGUF by hand: any gold file, decoded and scored as the eval stage does.

Run: python -m tuneforge.evaluate --gold FILE --model GGUF [--limit N] [--no-hint] [--allow-unpinned]
         [--params FILE] [--answers OUT.jsonl]
In:  a gold JSONL ({"text", "hint"?, "product"?, "label"} per line), a GGUF pinned by the
     SHA256SUMS beside it (or --allow-unpinned), params.yaml: its eval section is the one
     source of the decoding settings (no defaults here) and its toolchain pins are checked
Out: the metrics JSON on stdout, keyed by the GGUF's file stem (with `vs_labeler`: the model beside the
     rule labeler on the same rows, as eval reports it, and the task's own figures, Task.eval_figures)
     and `rule_labeler`; a bad input (a missing or
     non-UTF-8 file, an invalid gold row, a pin that does not hold) is one line on stderr, exit 2

Rows are taken in the eval order (tuneforge.names.eval_order), the first --limit of them.
The gold reader and the scoring are the eval stage's own (tuneforge.scoring), so a by-hand
figure and the stage's figure for the same file and rows cannot differ.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from tuneforge import config
from tuneforge.cli import ArgumentParser, UserError, decode_utf8, read_input, run
from tuneforge.decode import Settings, decode
from tuneforge.io import write_jsonl
from tuneforge.names import RULE_LABELER, TaskPaths, eval_order
from tuneforge.scoring import decoder_figures, labeler_answers, load_gold, score, trained_products, versus_labeler
from tuneforge.tasks import get_task
from tuneforge.toolchain import check_toolchain
from tuneforge.verdict import pinned_sha256


def main(argv: list[str] | None = None) -> int:
    """One GGUF, decoded exactly as the stage decodes: params.yaml is the one source of
    its settings (no defaults of its own), the toolchain is checked, the pin must hold."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    ap = ArgumentParser(prog="python -m tuneforge.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--gold", required=True, help="holdout JSONL")
    ap.add_argument("--model", required=True, help="GGUF to evaluate")
    ap.add_argument("--limit", type=int, default=0, help="first N rows of the eval order")
    ap.add_argument("--no-hint", action="store_true", help="drop every row's hint")
    ap.add_argument("--allow-unpinned", action="store_true",
                    help="run a GGUF that no SHA256SUMS pins (a pinned file that changed never runs)")
    ap.add_argument("--task", help="a key of params.yaml's tasks (default: the only one listed)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--answers", help="also write each row's answer beside the gold and the rule labeler "
                                      "(JSONL, eval order), for error analysis")
    args = ap.parse_args(argv)
    if not Path(args.params).is_file():
        raise FileNotFoundError(f"{args.params} not found: by-hand eval decodes with its eval "
                                "section and checks its toolchain; pass --params FILE")
    if not Path(args.model).is_file():
        raise UserError(f"--model {args.model}: no such GGUF; name a built one (models/<task>/gguf/*.gguf)")
    decode_utf8(read_input(args.gold, "gold file"), args.gold)  # missing or not UTF-8: say which
    if args.limit < 0:
        raise UserError(f"--limit {args.limit}: must be 0 (every row) or a positive row count")
    params, name = config.for_command(args.params, args.task)
    cfg, task = params.eval.model_dump(), get_task(name)
    check_toolchain(params.toolchain.model_dump(), ["llama_cpp_python"])
    model = Path(args.model)
    pinned_sha256(model, args.allow_unpinned)
    gold = load_gold(args.gold, task)
    rows, classes = eval_order(gold, args.limit), list(task.classes)
    answers = decode(model, task, rows, Settings.from_eval(cfg), with_hint=not args.no_hint)
    outputs = [a.text for a in answers]
    summary, scored = score(task, rows, outputs, classes, cfg["min_support"])
    summary.update(decoder_figures(task, answers))
    if task.eval_figures is not None:  # the task's own figures, as the stage adds them (chrF, scope, ...)
        summary.update(task.eval_figures(rows, outputs))
    # the rule labeler on the same rows, and the model beside it row by row (as eval sets them)
    labeler, labeled = score(task, rows, labeler_answers(task, rows, not args.no_hint), classes, cfg["min_support"])
    sft_train = TaskPaths(name).sft("train")
    trained = trained_products(sft_train) if sft_train.is_file() else None
    vs = versus_labeler(task, rows, [s.pred_kind for s in scored], [s.pred_kind for s in labeled], trained)
    if args.answers:
        write_jsonl(args.answers, [
            {"text": r["text"], "hint": r.get("hint"), "product": r.get("product"), "gold": r["label"],
             "answer": a.text, "closed_by_decoder": a.closed_by_decoder, "steered": a.steered,
             "kind": s.pred_kind, "labeler_kind": lab.pred_kind}
            for r, a, s, lab in zip(rows, answers, scored, labeled, strict=True)])
    print(json.dumps({model.stem: {**summary, "vs_labeler": vs}, RULE_LABELER: labeler}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.evaluate"))  # a bad input is one line, exit 2
