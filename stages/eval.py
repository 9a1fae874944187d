"""eval: every built GGUF, the base and the merged HF model on the gold holdout -> metrics,
plots, a report, and the release-gate verdict that register acts on.

Run: python -m stages.eval <task>
     (one GGUF on any gold file, by hand: python -m tuneforge.evaluate --gold FILE --model GGUF)
In:  tasks.<task>.gold, models/<task>/gguf/*.gguf + SHA256SUMS (each verified before use),
     data/<task>/exports/sft/train.jsonl (which products the model was trained on),
     models/<task>/merged, models/base, params.eval (CPU budget, gates), reports/<task>/fidelity.json
     (the fidelity stage's KL verdict per GGUF: a quantisation over its bounds fails the gates)
Out: reports/<task>/metrics.json (DVC metrics: top level keyed by model name), reports/<task>/eval/: confusion.json,
     per_kind.csv, ladder.csv (DVC plots), predictions.jsonl, report.md (tuneforge.evalreport),
     verdict.json (tuneforge.names.shapes.Verdict: the gates' verdict (tuneforge.gates) bound to the
     SHA-256 of every file judged and the params used), <receipts_dir>/eval.json

Decoding is tuneforge.decode's, as predict's: GGUFs decode greedily with llama.cpp under
a grammar compiled from the task's output schema; the HF models decode greedily with
transformers (no grammar) on a fixed subset (the first eval.hf_subset rows of the eval
order), slow on CPU. Parity is the share of that subset where the parity model's GGUF text
equals the merged HF model's. The eval order (tuneforge.names.eval_order) is the holdout
sorted by the SHA-256 of each text: a fixed, file-order-free sample when
eval.holdout_limit trims it.
"""
from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from dataclasses import replace
from typing import Any

from tuneforge import config, names
from tuneforge.decode import Answer, Settings, decode, decode_chats, decode_hf
from tuneforge.evalreport import report_md, write_csv
from tuneforge.gates import check_models, decide, fidelity_failures, labeler_behind
from tuneforge.gguf_tools import verify_pin
from tuneforge.io import atomic_path, write_json, write_jsonl
from tuneforge.llama_private import CLOSE_RESERVE
from tuneforge.metrics import UNPARSED, ablation, compare, headline_keys, parity
from tuneforge.names import base_gguf_name, eval_order, gguf_name, prediction_id
from tuneforge.names.shapes import FileHash, Prediction, Verdict
from tuneforge.predcache import PredictionCache
from tuneforge.receipts import Receipt
from tuneforge.retrieval import Index, example_chats, token_fit
from tuneforge.scoring import closed_figures, labeler_answers, load_gold, score, trained_products, versus_labeler
from tuneforge.tasks import Task, get_task
from tuneforge.verdict import dir_hash, file_hash, verdict_params

log = logging.getLogger("eval")

TOOLS = ["llama_cpp_python", "transformers", "torch"]


def cut_reason(error: str | None, max_tokens: int) -> str | None:
    """Under the grammar llama.cpp cannot end an answer before the JSON closes, so an
    answer that stops inside it was cut by the token cap (a loop, usually): say so."""
    if error and "EOF while parsing" in error:
        return f"cut at eval.max_tokens={max_tokens} before the JSON closed ({error})"
    return error


def headline(summary: dict, fields: tuple[str, str], **extra: Any) -> dict:
    keep = ("n", "parse_errors", "unknown_precision", "unknown_recall", *headline_keys(fields),
            f"{fields[0]}_agreement_ci95_low", f"{fields[0]}_agreement_ci95_high")
    return {**{k: summary[k] for k in keep}, **extra}


class Run:
    """Everything one eval run collects, per model key."""

    def __init__(self, task: Task, classes: list[str], cfg: dict):
        self.task, self.classes, self.cfg = task, classes, cfg
        self.metrics: dict[str, dict] = {}
        self.summaries: dict[str, dict] = {}
        self.outputs: dict[str, list[str]] = {}
        self.kinds: dict[str, list[str]] = {}  # predicted kind per row (parity, confusion)
        self.errors: dict[str, list[str]] = {}
        self.predictions: list[Prediction] = []
        self.own_keys: list[str] = []  # the task's own figures (Task.eval_figures), report columns

    def add(self, key: str, rows: list[dict], answers: list[Answer], size_mb: float | None = None,
            variant: str = "hint", grammar: bool = False, shown: list[int] | None = None) -> None:
        outs = [a.text for a in answers]
        summary, scored = score(self.task, rows, outs, self.classes, self.cfg["min_support"])
        closed: dict[str, Any] = {}
        if grammar:
            scored = [replace(s, error=cut_reason(s.error, self.cfg["max_tokens"])) for s in scored]
            closed = closed_figures(answers)
            summary.update(closed)  # gate() reads the count from the summary
        self.errors.setdefault(key, []).extend(s.error for s in scored if s.error)
        if variant == "hint":
            self.outputs[key], self.summaries[key] = outs, summary
            self.kinds[key] = [s.pred_kind for s in scored]
            own = self.task.eval_figures(rows, outs) if self.task.eval_figures is not None else {}
            self.own_keys = list(dict.fromkeys([*self.own_keys, *own]))
            self.metrics[key] = headline(summary, self.task.fields, **closed,
                                         **({"size_mb": size_mb} if size_mb else {}),
                                         **style_figures(self.task, rows, outs, scored), **own)
        elif variant == "no_hint":  # the hint ablation: the same rows with every hint removed
            self.metrics[key]["hint_ablation"] = ablation(self.summaries[key], summary, self.task.fields)
        else:  # retrieval: the same rows, each after worked examples from the RAG export
            self.metrics[key]["retrieval"] = {
                **compare(summary, self.summaries[key], self.task.fields, ("with_retrieval", "without_retrieval")),
                "k": self.cfg["retrieval_k"], "examples_shown_mean": round(sum(shown) / len(shown), 3),
                "rows_without_examples": shown.count(0), **closed}
        for r, a, s in zip(rows, answers, scored, strict=True):
            self.predictions.append(Prediction(
                model=key, variant=variant, id=prediction_id(r["text"]), gold_kind=s.gold_kind,
                pred_kind=s.pred_kind, parsed=s.parsed, closed_by_decoder=a.closed_by_decoder, output=a.text))


def style_figures(task: Task, rows: list[dict], outs: list[str], scored: list) -> dict:
    """How the parsed answers fare against STYLE.md, as the scorer checks training labels:
    the share with no problem, and each code's count, 0 included (an invented version
    shows as style_version_not_in_input)."""
    problems = Counter(dict.fromkeys(task.style_codes(), 0))  # a code at 0 still shows in diffs
    clean = parsed = 0
    for r, o, s in zip(rows, outs, scored, strict=True):
        if not s.parsed:
            continue
        found = task.style_problems(json.loads(o), r["text"], r.get("hint"))
        parsed, clean = parsed + 1, clean + (not found)
        problems.update(found)
    return {"style_clean_rate": round(clean / parsed, 6) if parsed else None,
            "style_problems": dict(sorted(problems.items()))}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    # setup: params, toolchain, the rows in eval order, every GGUF checked against its pin
    params = config.from_argv("eval", argv)
    cfg, paths, task = params.section("eval"), params.paths, get_task(params.task_name)
    installed = params.check_toolchain(TOOLS)
    name, outtype = params.task.model_name, params.convert.outtype
    types = list(params.quantize.types)
    check_models(cfg, types, outtype)
    receipt = Receipt("eval", params.declared(), packages=TOOLS)
    gguf_dir, out_dir, gold_path = paths.gguf_dir, paths.eval_dir, params.task.gold
    receipt.inputs.append(gold_path)

    gold_hash = file_hash(gold_path)
    gold = load_gold(gold_path, task)
    classes = list(task.classes)
    rows = eval_order(gold, cfg["holdout_limit"])
    hf_rows = rows[: cfg["hf_subset"]]
    # full passes: the base (if asked) and every quantisation; the converter's own output
    # only on the HF subset, where its parity checks the conversion itself
    ggufs = {t: gguf_dir / gguf_name(name, t) for t in types}
    if cfg["base_gguf"]:
        ggufs = {"base": gguf_dir / base_gguf_name(name, outtype), **ggufs}
    ggufs[outtype] = gguf_dir / gguf_name(name, outtype)
    sizes, size_bytes, shas, judged = {}, {}, {}, {}
    for key, path in ggufs.items():
        shas[key] = verify_pin(path)  # a file that changed since quantize pinned it is refused here
        judged[key] = FileHash(path=str(path), sha256=shas[key])  # the verdict names these bytes
        receipt.inputs.append(path)
        size_bytes[key] = path.stat().st_size
        sizes[key] = round(size_bytes[key] / 1e6, 1)
    # the fidelity stage's KL bounds gate each quantisation too (it already failed the build if
    # the converter's output was over its own); read before decoding: made on these same bytes
    fidelity, kl_mean = fidelity_failures(paths.fidelity, judged, [outtype, *types])
    receipt.inputs.append(paths.fidelity)

    # decode every model and score it. eval.cache: answers memoised by model SHA-256 +
    # decoder settings + prompt, so a change that alters no answer (a gate, min_support,
    # report_model) re-scores without decoding
    settings = Settings.from_eval(cfg)
    cache = PredictionCache(names.EVAL_CACHE if cfg["cache"] else None)
    run = Run(task, classes, cfg)
    for key, path in ggufs.items():
        key_rows = hf_rows if key == outtype else rows
        run.add(key, key_rows, decode(path, task, key_rows, settings, cache=cache, sha256=shas[key]),
                sizes[key], grammar=True)
        if key in cfg["ablation_models"]:
            run.add(key, rows, decode(path, task, rows, settings, with_hint=False, cache=cache,
                                      sha256=shas[key]), variant="no_hint", grammar=True)
    # does retrieval help? the report model again on the same rows, each prompt led by its
    # eval.retrieval_k most similar RAG export rows as worked examples (tuneforge.retrieval, as
    # replay shows them; the export holds no gold row nor a near-duplicate of one)
    ref = cfg["report_model"]
    if cfg["retrieval_k"]:
        rag = paths.exports_dir / "rag" / "rag.jsonl"
        if not rag.is_file():
            raise FileNotFoundError(f"{rag}: eval.retrieval_k={cfg['retrieval_k']} draws worked examples from the "
                                    f"RAG export, and there is none: build it (dvc repro export@{params.task_name}) "
                                    "or set eval.retrieval_k: 0")
        receipt.inputs.append(rag)
        from transformers import AutoTokenizer  # the GGUFs' tokenizer: the fidelity stage checked they agree

        tok = AutoTokenizer.from_pretrained(str(paths.merged))
        fits = token_fit(lambda text: len(tok(text, add_special_tokens=False).input_ids),
                         settings.n_ctx - settings.max_tokens - CLOSE_RESERVE)
        chats, shown = example_chats(task, rows, Index(rag), cfg["retrieval_k"], fits)
        run.add(ref, rows, decode_chats(ggufs[ref], task, chats, [r["text"] for r in rows], settings, cache=cache,
                                        sha256=shas[ref],
                                        desc=f"{ggufs[ref].stem} (retrieval)"),
                variant="retrieval", grammar=True, shown=shown)

    # the student against its teacher: the rule labeler, which wrote most training labels, answers
    # the same rows (metrics.json rule_labeler); each quantisation is compared with it row by row on
    # all rows, on the gold rows never read while the labeler was tuned, and on the rows of
    # products that gave the SFT export no row (export.heldout_products)
    run.add(names.RULE_LABELER, rows, [Answer(t) for t in labeler_answers(task, rows)])
    sft_train = paths.exports_dir / "sft" / "train.jsonl"
    if not sft_train.is_file():
        raise FileNotFoundError(f"{sft_train}: eval sets the model beside the rule labeler on products the SFT "
                                f"export gave no row, and there is no export: build it (dvc repro "
                                f"export@{params.task_name})")
    receipt.inputs.append(sft_train)
    trained = trained_products(sft_train)
    labeler_failures = {}
    for key in types:
        run.metrics[key]["vs_labeler"] = versus_labeler(task, rows, run.kinds[key], run.kinds[names.RULE_LABELER],
                                                        trained)
        labeler_failures[key] = labeler_behind(run.metrics[key]["vs_labeler"], cfg["gates"], task.class_field)

    hf_models = {"merged_hf": paths.merged}
    if cfg["base_hf"]:
        hf_models["base_hf"] = paths.base_model
    hf_hashes = {key: dir_hash(model_dir) for key, model_dir in hf_models.items()}
    for key, model_dir in hf_models.items():
        receipt.inputs.append(model_dir / "model.safetensors")
        run.add(key, hf_rows, decode_hf(model_dir, task, hf_rows, settings, cache, key,
                                        sha256=hf_hashes[key].files.get("model.safetensors")))
    for key in [*types, outtype]:
        run.metrics[key]["parity"] = parity(run.outputs[key][: len(hf_rows)],
                                            run.outputs["merged_hf"])
        # softer figure beside the gated exact-text parity: the same predicted kind
        run.metrics[key]["kind_parity"] = parity(run.kinds[key][: len(hf_rows)],
                                                 run.kinds["merged_hf"])
    failures = {k: fidelity.get(k, []) + labeler_failures.get(k, []) for k in types}
    verdict = Verdict(**decide(run.metrics, run.summaries, types, size_bytes, cfg, judged, task.class_field,
                               failures, kl_mean),
                      ggufs=judged,
                      hf_models=hf_hashes, gold=gold_hash, params=verdict_params(params),
                      toolchain={k: installed[k] for k in TOOLS}
                      ).model_dump(mode="json")

    # write: metrics, plots, predictions, the verdict, the report, the receipt
    write_json(paths.metrics, run.metrics)
    write_json(out_dir / "confusion.json", [
        {"actual": task.label_class(r["label"]), "predicted": k} for r, k in zip(rows, run.kinds[ref], strict=True)])
    write_csv(out_dir / "per_kind.csv", [
        {"kind": k, "f1": v["f1"], "precision": v["precision"], "recall": v["recall"],
         "support": v["support"]} for k, v in run.summaries[ref]["per_kind"].items()])
    write_csv(out_dir / "ladder.csv", [
        {"model": k, "size_mb": sizes[k], **{h: run.metrics[k][h] for h in headline_keys(task.fields)},
         "parity": run.metrics[k].get("parity"), "kind_parity": run.metrics[k].get("kind_parity")}
        for k in ggufs if k != outtype])
    write_jsonl(paths.predictions, run.predictions)
    write_json(paths.verdict, verdict)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(report_md(run.metrics, run.summaries, verdict, ref, cfg, len(rows), len(hf_rows),
                                 run.errors, task.fields, tuple(run.own_keys)), encoding="utf-8")
    receipt.outputs += [paths.metrics, paths.verdict, paths.predictions]
    receipt.finish(paths.receipt("eval"), records_in=len(rows),
                   records_out=len(rows),
                   extra={"gold_rows": len(gold), "models": len(run.metrics),
                          "hf_rows": len(hf_rows),
                          "unparsed": sum(p.pred_kind == UNPARSED for p in run.predictions),
                          "closed_by_decoder": sum(p.closed_by_decoder for p in run.predictions),
                          "cache_hits": cache.hits, "decoded": cache.misses,
                          "cache_corrupt": cache.corrupt})
    log.info("release %s; promoted %s; %s", verdict["release"], verdict["promoted"],
             ", ".join(f"{k}: {task.class_field} {m[f'{task.class_field}_agreement']}"
                       for k, m in run.metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
