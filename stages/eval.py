"""eval: every built GGUF, the base and the merged HF model on the gold holdout -> metrics,
plots, a report, and the release-gate verdict that register acts on.

Run: python -m stages.eval
     python -m stages.eval --gold FILE --model GGUF [--limit N] [--no-hint] [--allow-unpinned]
         (by hand: one pinned GGUF on any holdout file, decoded with params.yaml's eval
         settings and toolchain check; prints the metrics JSON on stdout)
In:  paths.gold, <gguf_dir>/*.gguf + SHA256SUMS (each verified before use), paths.merged,
     paths.base_model, params.eval (CPU budget, gates)
Out: paths.metrics (DVC metrics: top level keyed by model name), <eval_dir>/confusion.json,
     per_kind.csv, ladder.csv (DVC plots), predictions.jsonl, report.md,
     verdict.json (tuneforge.names.shapes.Verdict: the gates' verdict bound to the SHA-256 of
     every file judged and the params used), <receipts_dir>/eval.json

GGUFs decode greedily with llama.cpp under a grammar compiled from the task's output
schema; the HF models decode greedily with transformers (no grammar) on a fixed subset
(the first eval.hf_subset rows of the eval order), slow on CPU. Parity is the share of
that subset where the parity model's GGUF text equals the merged HF model's. The eval
order is the holdout sorted by the SHA-256 of each text: a fixed, file-order-free
sample when eval.holdout_limit trims it.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from tuneforge import cli, gguf_tools, llm
from tuneforge.cli import ArgumentParser, UserError, decode_utf8, read_input
from tuneforge.gguf_tools import Answer, gguf_answers, json_gbnf, verify_pin
from tuneforge.io import (
    atomic_path,
    load_params,
    read_jsonl,
    sha256_file,
    sha256_text,
    write_json,
    write_jsonl,
)
from tuneforge.llm import check_toolchain, hf_generate, toolchain
from tuneforge.metrics import UNPARSED, ablation, gate, parity, score_prediction, summarize
from tuneforge.names import prediction_id
from tuneforge.names.shapes import FileHash, ModelVerdict, Prediction, Verdict
from tuneforge.predcache import PredictionCache, code_sha256
from tuneforge.receipts import Receipt
from tuneforge.tasks import Task, get_task
from tuneforge.verdict import dir_hash, file_hash, pinned_sha256, verdict_params

log = logging.getLogger("eval")

TOOLS = ["llama_cpp_python", "transformers", "torch"]
HEADLINE = ("kind_agreement", "severity_agreement", "parse_rate", "macro_f1")


def load_gold(path: str | Path, task: Task) -> list[dict]:
    """Gold rows, each label validated by the task's strict parser (fail early, name the row)."""
    rows, bad = [], []
    for i, row in enumerate(read_jsonl(path), 1):
        try:
            task.parse_label(json.dumps(row["label"]))
            rows.append(row)
        except (KeyError, ValueError) as e:
            bad.append(f"line {i}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    if bad:
        raise ValueError(f"{path}: {len(bad)} gold rows are invalid: " + "; ".join(bad[:5]))
    if not rows:
        raise ValueError(f"{path} holds no gold rows")
    return rows


def eval_order(rows: list[dict], limit: int) -> list[dict]:
    ordered = sorted(rows, key=lambda r: sha256_text(r["text"]))
    return ordered[:limit] if limit else ordered


def prompts(task: Task, rows: list[dict], with_hint: bool = True) -> list[list[dict]]:
    return [task.messages(r["text"], r.get("hint") if with_hint else None, r.get("product"))
            for r in rows]


def score(task: Task, rows: list[dict], outputs: list[str], classes: list[str],
          min_support: int) -> tuple[dict, list]:
    scored = [score_prediction(o, r["label"], task.parse_label) for o, r in zip(outputs, rows, strict=True)]
    return summarize(scored, classes, min_support), scored


def cut_reason(error: str | None, max_tokens: int) -> str | None:
    """Under the grammar llama.cpp cannot end an answer before the JSON closes, so an
    answer that stops inside it was cut by the token cap (a loop, usually): say so."""
    if error and "EOF while parsing" in error:
        return f"cut at eval.max_tokens={max_tokens} before the JSON closed ({error})"
    return error


def headline(summary: dict, **extra: Any) -> dict:
    keep = ("n", "parse_errors", "unknown_precision", "unknown_recall", *HEADLINE,
            "kind_agreement_ci95_low", "kind_agreement_ci95_high")
    return {**{k: summary[k] for k in keep}, **extra}


def decode_gguf(path: Path, task: Task, rows: list[dict], cfg: dict, with_hint: bool = True,
                cache: PredictionCache | None = None, sha256: str | None = None) -> list[Answer]:
    """The GGUF's answers, under a grammar compiled from the task's output schema, each
    flagged when the decoder closed it at the cap; with a cache, only the prompts it has
    not answered before are decoded."""
    schema = task.output_model.model_json_schema()
    gbnf = json_gbnf(schema)  # decoded under, and keyed on
    n_threads = cfg["n_threads"] or os.cpu_count() or 1

    def decode(todo: list[list[dict]]) -> list[Answer]:
        return gguf_answers(path, todo, gbnf, max_tokens=cfg["max_tokens"], n_ctx=cfg["n_ctx"],
                             n_threads=n_threads,
                             desc=f"{path.stem}{'' if with_hint else ' (no hint)'}")

    todo = prompts(task, rows, with_hint)
    if cache is None:
        return decode(todo)
    model = {"sha256": sha256 or sha256_file(path), "decoder": toolchain(["llama_cpp_python"]),
             "code": code_sha256(gguf_tools), "schema": schema, "grammar": sha256_text(gbnf),
             "max_tokens": cfg["max_tokens"], "n_ctx": cfg["n_ctx"],
             "n_threads": n_threads}
    return cache.answers(model, todo, decode)


def decode_hf(model_dir: Path, task: Task, rows: list[dict], cfg: dict,
              cache: PredictionCache, key: str, sha256: str | None = None) -> list[Answer]:
    """A transformers model's answers (unconstrained: no grammar, so none is closed by the
    decoder), through the cache; `sha256` is that of its model.safetensors when known."""
    todo = prompts(task, rows)
    model = {"sha256": sha256 or sha256_file(model_dir / "model.safetensors"),
             "decoder": toolchain(["transformers", "torch"]), "code": code_sha256(llm),
             "max_tokens": cfg["max_tokens"]}
    return cache.answers(model, todo, lambda p: [Answer(text) for text in
                                                 hf_generate(model_dir, p, cfg["max_tokens"], desc=key)])


# ---------------------------------------------------------------- outputs

def write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"],
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def report_md(metrics: dict, summaries: dict, verdict: dict, ref: str, cfg: dict,
              n_rows: int, n_hf: int, errors: dict[str, list[str]]) -> str:
    cols = ["n", *HEADLINE, "kind_agreement_ci95_low", "kind_agreement_ci95_high", "parse_errors",
            "closed_by_decoder", "closed_by_decoder_rate", "unknown_precision", "unknown_recall", "parity",
            "kind_parity", "size_mb"]
    intro = (f"Holdout rows evaluated: {n_rows} (eval.holdout_limit={cfg['holdout_limit']}); "
             f"HF models and parity on the first {n_hf} of them. Greedy decoding; GGUFs under "
             "the output-schema grammar, HF models unconstrained. closed_by_decoder: GGUF answers "
             f"still open at eval.max_tokens={cfg['max_tokens']} (a loop, usually) that the decoder "
             "closed, so they parse; their end is the decoder's, not the model's.")
    out = ["# Eval report", "", intro, "", "## Models", "",
           "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, m in metrics.items():
        out.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |")
    g = cfg["gates"]
    gates = (f"min_kind_agreement={g['min_kind_agreement']}, max_parse_errors="
             f"{g['max_parse_errors']}, min_parity={g['min_parity']} (parity of "
             f"{cfg['parity_model']})" + (f", max_closed_by_decoder={g['max_closed_by_decoder']}."
                                          if "max_closed_by_decoder" in g else "."))
    out += ["", "## Release gates", "", gates, "",
            "| model | verdict | failed gates |", "|---|---|---|"]
    for name, v in verdict["models"].items():
        out.append(f"| {name} | {v['verdict']} | {'; '.join(v['failed']) or '-'} |")
    promoted = verdict["promoted"] or "none"
    out += ["", f"Promoted: **{promoted}** (the smallest GGUF passing every gate).", ""]
    for name in [n for n in metrics if "hint_ablation" in metrics[n]]:
        ab = metrics[name]["hint_ablation"]
        out += [f"## Hint ablation ({name})", "", "| | " + " | ".join(HEADLINE) + " |",
                "|---|" + "---|" * len(HEADLINE)]
        for k in ("with_hint", "without_hint", "delta"):
            out.append(f"| {k} | " + " | ".join(_fmt(ab[k][h]) for h in HEADLINE) + " |")
        out.append("")
    s = summaries[ref]
    macro = (f"macro-F1 over kinds with support >= {cfg['min_support']}: {_fmt(s['macro_f1'])} "
             f"({', '.join(s['macro_f1_kinds']) or 'no kind has enough support'})")
    out += [f"## Per-kind precision / recall / F1 ({ref})", "", macro, "",
            "| kind | precision | recall | F1 | support | predicted |", "|---|---|---|---|---|---|"]
    for k, v in s["per_kind"].items():
        out.append(f"| {k} | {_fmt(v['precision'])} | {_fmt(v['recall'])} | {_fmt(v['f1'])} | "
                   f"{v['support']} | {v['predicted']} |")
    kinds = sorted({p for row in s["confusion"].values() for p in row} | set(s["confusion"]))
    out += ["", f"## Confusion matrix ({ref}; rows gold, columns predicted)", "",
            "| gold \\ pred | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for g in sorted(s["confusion"]):
        out.append(f"| {g} | " + " | ".join(str(s["confusion"][g].get(p, 0) or "")
                                             for p in kinds) + " |")
    if any(errors.values()):
        out += ["", "## Parse errors (first 3 per model)", ""]
        for name, errs in errors.items():
            out += [f"- {name}: {e}" for e in errs[:3]]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- modes

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

    def add(self, key: str, rows: list[dict], answers: list[Answer], size_mb: float | None = None,
            variant: str = "hint", grammar: bool = False) -> None:
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
            self.metrics[key] = headline(summary, **closed, **({"size_mb": size_mb} if size_mb else {}),
                                         **style_figures(self.task, rows, outs, scored))
        else:  # the hint ablation: the same rows with every hint removed
            self.metrics[key]["hint_ablation"] = ablation(self.summaries[key], summary)
        for r, a, s in zip(rows, answers, scored, strict=True):
            self.predictions.append(Prediction(
                model=key, variant=variant, id=prediction_id(r["text"]), gold_kind=s.gold_kind,
                pred_kind=s.pred_kind, parsed=s.parsed, closed_by_decoder=a.closed_by_decoder, output=a.text))


def closed_figures(answers: list[Answer]) -> dict[str, Any]:
    """How many answers the decoder closed at the cap, and their share: they parse, so
    parse_rate alone would count a looping model's junk as a good answer."""
    n = sum(a.closed_by_decoder for a in answers)
    return {"closed_by_decoder": n, "closed_by_decoder_rate": round(n / len(answers), 6) if answers else None}


def style_figures(task: Task, rows: list[dict], outs: list[str], scored: list) -> dict:
    """How the parsed answers fare against STYLE.md, as the scorer checks training labels:
    the share with no problem, and each code's count, 0 included (an invented version
    shows as style_version_not_in_input)."""
    problems = Counter(dict.fromkeys(task.style_codes, 0))  # a code at 0 still shows in diffs
    clean = parsed = 0
    for r, o, s in zip(rows, outs, scored, strict=True):
        if not s.parsed:
            continue
        found = task.style_problems(json.loads(o), r["text"], r.get("hint"))
        parsed, clean = parsed + 1, clean + (not found)
        problems.update(found)
    return {"style_clean_rate": round(clean / parsed, 6) if parsed else None,
            "style_problems": dict(sorted(problems.items()))}


def check_models(cfg: dict, types: list[str], outtype: str) -> None:
    """Model names in params.eval must be built ones; fail before any decoding."""
    if cfg["parity_model"] not in [*types, outtype]:
        raise ValueError(f"eval.parity_model {cfg['parity_model']!r}: not one of "
                         f"{[*types, outtype]}")
    if cfg["report_model"] not in types:
        raise ValueError(f"eval.report_model {cfg['report_model']!r}: not in quantize.types "
                         f"{types}")
    unknown = sorted(set(cfg["ablation_models"]) - set(types))
    if unknown:
        raise ValueError(f"eval.ablation_models {unknown} are not in quantize.types {types}")


def decide(run: Run, types: list[str], sizes: dict[str, float], cfg: dict,
           ggufs: dict[str, Any]) -> dict:
    """Gate every quantisation; promote the smallest that passes. `ggufs`: each model
    key's FileHash, so each verdict names the bytes it was made on."""
    ref_parity = run.metrics[cfg["parity_model"]]["parity"]
    models = {}
    for key in types:
        failed = gate(run.summaries[key], cfg["gates"], ref_parity)
        models[key] = ModelVerdict(verdict="fail" if failed else "pass", failed=failed,
                                   size_mb=sizes[key], gguf=ggufs[key].path, sha256=ggufs[key].sha256)
        run.metrics[key]["passed_gates"] = not failed
    passing = [k for k in types if models[k].verdict == "pass"]
    promoted = min(passing, key=lambda k: (sizes[k], k)) if passing else None
    return {"parity_model": cfg["parity_model"], "parity": ref_parity, "gates": cfg["gates"],
            "models": models, "promoted": promoted, "release": "pass" if promoted else "fail"}


def by_hand(args: argparse.Namespace) -> int:
    """One GGUF, decoded exactly as the stage decodes: params.yaml is the one source of
    its settings (no defaults of its own), the toolchain is checked, the pin must hold."""
    if not Path(args.params).is_file():
        raise FileNotFoundError(f"{args.params} not found: by-hand eval decodes with its eval "
                                "section and checks its toolchain; pass --params FILE")
    if not Path(args.model).is_file():
        raise UserError(f"--model {args.model}: no such GGUF; name a built one (models/gguf/*.gguf)")
    decode_utf8(read_input(args.gold, "gold file"), args.gold)  # missing or not UTF-8: say which
    if args.limit < 0:
        raise UserError(f"--limit {args.limit}: must be 0 (every row) or a positive row count")
    params = load_params(args.params)
    cfg, task = params["eval"], get_task(params["task"])
    check_toolchain(params["toolchain"], ["llama_cpp_python"])
    model = Path(args.model)
    pinned_sha256(model, args.allow_unpinned)
    gold = load_gold(args.gold, task)
    rows, classes = eval_order(gold, args.limit), list(task.classes)
    answers = decode_gguf(model, task, rows, cfg, with_hint=not args.no_hint)
    summary, _ = score(task, rows, [a.text for a in answers], classes, cfg["min_support"])
    summary.update(closed_figures(answers))
    print(json.dumps({model.stem: summary}, indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    ap = ArgumentParser(prog="python -m stages.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--gold", help="holdout JSONL (by-hand mode)")
    ap.add_argument("--model", help="GGUF to evaluate (by-hand mode)")
    ap.add_argument("--limit", type=int, default=0, help="first N rows of the eval order")
    ap.add_argument("--no-hint", action="store_true", help="drop every row's hint")
    ap.add_argument("--allow-unpinned", action="store_true",
                    help="run a GGUF that no SHA256SUMS pins (a pinned file that changed never runs)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    if args.gold or args.model:
        if not (args.gold and args.model):
            ap.error("by-hand mode needs both --gold and --model")
        return by_hand(args)

    params = load_params(args.params)
    cfg, paths, task = params["eval"], params["paths"], get_task(params["task"])
    installed = check_toolchain(params["toolchain"], TOOLS)
    name, outtype = params["convert"]["model_name"], params["convert"]["outtype"]
    types = params["quantize"]["types"]
    check_models(cfg, types, outtype)
    receipt = Receipt("eval", {"eval": cfg}, packages=TOOLS)
    gguf_dir, out_dir = Path(paths["gguf_dir"]), Path(paths["eval_dir"])
    receipt.inputs.append(paths["gold"])

    gold_hash = file_hash(paths["gold"])
    gold = load_gold(paths["gold"], task)
    classes = list(task.classes)
    rows = eval_order(gold, cfg["holdout_limit"])
    hf_rows = rows[: cfg["hf_subset"]]
    # full passes: the base (if asked) and every quantisation; the converter's own output
    # only on the HF subset, where its parity checks the conversion itself
    ggufs = {t: gguf_dir / f"{name}-{t}.gguf" for t in types}
    if cfg["base_gguf"]:
        ggufs = {"base": gguf_dir / f"{name}-base-{outtype}.gguf", **ggufs}
    ggufs[outtype] = gguf_dir / f"{name}-{outtype}.gguf"
    sizes, shas, judged = {}, {}, {}
    for key, path in ggufs.items():
        shas[key] = verify_pin(path)  # a file that changed since quantize pinned it is refused here
        judged[key] = FileHash(path=str(path), sha256=shas[key])  # the verdict names these bytes
        receipt.inputs.append(path)
        sizes[key] = round(path.stat().st_size / 1e6, 1)

    # eval.cache: answers memoised by model SHA-256 + decoder settings + prompt, so a change
    # that alters no answer (a gate, min_support, report_model) re-scores without decoding
    cache = PredictionCache(paths["eval_cache"] if cfg["cache"] else None)
    run = Run(task, classes, cfg)
    for key, path in ggufs.items():
        key_rows = hf_rows if key == outtype else rows
        run.add(key, key_rows, decode_gguf(path, task, key_rows, cfg, cache=cache, sha256=shas[key]),
                sizes[key], grammar=True)
        if key in cfg["ablation_models"]:
            run.add(key, rows, decode_gguf(path, task, rows, cfg, with_hint=False, cache=cache,
                                           sha256=shas[key]), variant="no_hint", grammar=True)
    hf_models = {"merged_hf": Path(paths["merged"])}
    if cfg["base_hf"]:
        hf_models["base_hf"] = Path(paths["base_model"])
    hf_hashes = {key: dir_hash(model_dir) for key, model_dir in hf_models.items()}
    for key, model_dir in hf_models.items():
        receipt.inputs.append(model_dir / "model.safetensors")
        run.add(key, hf_rows, decode_hf(model_dir, task, hf_rows, cfg, cache, key,
                                        sha256=hf_hashes[key].files.get("model.safetensors")))
    for key in [*types, outtype]:
        run.metrics[key]["parity"] = parity(run.outputs[key][: len(hf_rows)],
                                            run.outputs["merged_hf"])
        # softer figure beside the gated exact-text parity: the same predicted kind
        run.metrics[key]["kind_parity"] = parity(run.kinds[key][: len(hf_rows)],
                                                 run.kinds["merged_hf"])
    verdict = Verdict(**decide(run, types, sizes, cfg, judged), ggufs=judged, hf_models=hf_hashes,
                      gold=gold_hash, params=verdict_params(params),
                      toolchain={k: installed[k] for k in TOOLS}
                      ).model_dump(mode="json")

    ref = cfg["report_model"]
    write_json(paths["metrics"], run.metrics)
    write_json(out_dir / "confusion.json", [
        {"actual": task.label_class(r["label"]), "predicted": k} for r, k in zip(rows, run.kinds[ref], strict=True)])
    write_csv(out_dir / "per_kind.csv", [
        {"kind": k, "f1": v["f1"], "precision": v["precision"], "recall": v["recall"],
         "support": v["support"]} for k, v in run.summaries[ref]["per_kind"].items()])
    write_csv(out_dir / "ladder.csv", [
        {"model": k, "size_mb": sizes[k], **{h: run.metrics[k][h] for h in HEADLINE},
         "parity": run.metrics[k].get("parity"), "kind_parity": run.metrics[k].get("kind_parity")}
        for k in ggufs if k != outtype])
    write_jsonl(out_dir / "predictions.jsonl", run.predictions)
    write_json(out_dir / "verdict.json", verdict)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(report_md(run.metrics, run.summaries, verdict, ref, cfg, len(rows),
                                 len(hf_rows), run.errors), encoding="utf-8")
    receipt.outputs += [paths["metrics"], out_dir / "verdict.json", out_dir / "predictions.jsonl"]
    receipt.finish(Path(paths["receipts_dir"]) / "eval.json", records_in=len(rows),
                   records_out=len(rows),
                   extra={"gold_rows": len(gold), "models": len(run.metrics),
                          "hf_rows": len(hf_rows),
                          "unparsed": sum(p.pred_kind == UNPARSED for p in run.predictions),
                          "closed_by_decoder": sum(p.closed_by_decoder for p in run.predictions),
                          "cache_hits": cache.hits, "decoded": cache.misses,
                          "cache_corrupt": cache.corrupt})
    log.info("release %s; promoted %s; %s", verdict["release"], verdict["promoted"],
             ", ".join(f"{k}: kind {m['kind_agreement']}" for k, m in run.metrics.items()))
    return 0


if __name__ == "__main__":
    if {"--gold", "--model"} & {a.partition("=")[0] for a in sys.argv[1:]}:
        sys.exit(cli.run(main, "python -m stages.eval"))  # by hand: a bad input is one line, exit 2
    sys.exit(main())
