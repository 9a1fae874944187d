"""eval: every built GGUF, the base and the merged HF model on the gold holdout -> metrics,
plots, a report, and the release-gate verdict that register acts on.

Run: python -m stages.eval <task>
     (one GGUF on any gold file, by hand: python -m tuneforge.evaluate --gold FILE --model GGUF)
In:  tasks.<task>.gold, models/<task>/gguf/*.gguf + SHA256SUMS (each verified before use),
     data/<task>/exports/sft/train.jsonl (which products the model was trained on),
     models/<task>/merged, models/base, params.eval (CPU budget, gates), params.fidelity (its rows,
     the KL bounds per GGUF type)
Out: reports/<task>/metrics.json (DVC metrics: top level keyed by model name), reports/<task>/eval/: confusion.json,
     per_kind.csv, ladder.csv (DVC plots), predictions.jsonl, report.md (tuneforge.evalreport),
     verdict.json (tuneforge.names.shapes.Verdict: the gates' verdict (tuneforge.gates) bound to the
     SHA-256 of every file judged and the params used), reports/<task>/fidelity.json (DVC metrics;
     tuneforge.names.shapes.FidelityReport) and reports/<task>/fidelity/kl_size.csv (DVC plot),
     <receipts_dir>/eval.json

Fidelity (issue 20: is every GGUF the merged model?) is checked here, on eval's own decoders
(tuneforge.fidelity): first the tokenizer round trip (a mismatch fails the stage, naming the
row and token) and the converter's output's teacher-forced KL against the merged model (over
its bounds: the stage fails before anything decodes, since a broken conversion breaks every
model); then each quantisation's, each row forced right after eval answered it on the same
llama.cpp context, so the prompt's KV cache is reused and only the answer's positions are
computed. A quantisation over its own bounds fails the gates and is never promoted. The
eval.fidelity_only entries (controls: Q4_K_M without the importance matrix beside Q4_K_M-imat)
get fidelity's forced rows and nothing else: never decoded, never promoted.

Decoding is tuneforge.decode's, as predict's: GGUFs decode greedily with llama.cpp under
a grammar compiled from the task's output schema; the HF models decode greedily with
transformers (no grammar) on a fixed subset (the first eval.hf_subset rows of the eval
order), slow on CPU. Parity is the share of that subset where a GGUF's text equals the merged
HF model's; the gate reads conversion_parity, the parity model's GGUF decoded there as the HF
model is (decode.decode_free: no grammar), so that only the conversion can part the two.
The eval order (tuneforge.names.eval_order) is the holdout sorted by the SHA-256 of each
text: a fixed, file-order-free sample when eval.holdout_limit trims it.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from tuneforge import config, fidelity, names
from tuneforge.chat_text import train_texts
from tuneforge.decode import (
    Answer,
    Decoder,
    DecoderPool,
    Settings,
    decode,
    decode_chats,
    decode_free,
    decode_hf,
    decode_workers,
)
from tuneforge.evalreport import report_md, write_csv
from tuneforge.gates import check_models, decide, fidelity_failures, labeler_behind
from tuneforge.gguf_tools import tokenizer_digest, verify_pin
from tuneforge.io import atomic_path, write_json, write_jsonl
from tuneforge.llama_private import CLOSE_RESERVE
from tuneforge.metrics import UNPARSED, ablation, compare, count_gates, gate, headline_keys, parity
from tuneforge.names import base_gguf_name, eval_order, gguf_name, prediction_id
from tuneforge.names.shapes import FidelityFigures, FidelityReport, FileHash, Prediction, TokenizerRoundTrip, Verdict
from tuneforge.predcache import PredictionCache
from tuneforge.receipts import Receipt
from tuneforge.retrieval import Index, example_chats, token_fit
from tuneforge.scoring import (
    decoder_figures,
    labeler_answers,
    load_gold,
    score,
    trained_products,
    versus_labeler,
)
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
            closed = decoder_figures(self.task, answers)
            summary.update(closed)  # gate() reads the count from the summary
        self.errors.setdefault(key if variant != "confirmation" else f"{key}/confirmation", []).extend(
            s.error for s in scored if s.error)
        if variant in ("hint", "confirmation"):  # a model's own figures: on eval's rows, or on confirm_rows
            own = self.task.eval_figures(rows, outs) if self.task.eval_figures is not None else {}
            figures = headline(summary, self.task.fields, **closed,
                               **({"size_mb": size_mb} if size_mb and variant == "hint" else {}),
                               **style_figures(self.task, rows, outs, scored), **own)
            at = key if variant == "hint" else f"{key}/confirmation"
            self.summaries[at], self.kinds[at] = summary, [s.pred_kind for s in scored]
            if variant == "hint":
                self.outputs[key], self.metrics[key] = outs, figures
                self.own_keys = list(dict.fromkeys([*self.own_keys, *own]))
            else:  # the promotion candidate on eval.confirm_rows (see confirm)
                self.metrics[key]["confirmation"] = figures
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


def decode_checked(task: Task, path, rows: list[dict], settings: Settings, cache: PredictionCache, sha256: str,
                   decoder: Decoder, check: fidelity.Check | None, key: str) -> list[Answer]:
    """The GGUF's answers to `rows` (decode, through the memo); with a check, each of its forced
    rows (the first len(check.rows) of eval's rows) teacher-forced right after its answer, on
    the same context: the prompt's KV cache entries are still there, so only the answer's
    positions are computed."""
    if check is None:  # one single-threaded decoder per core (decode.DecoderPool)
        return decode(path, task, rows, settings, cache=cache, sha256=sha256)
    n = min(len(check.rows), len(rows))
    if [r.row_id for r in check.rows[:n]] != [prediction_id(r["text"]) for r in rows[:n]]:
        raise ValueError("fidelity's forced rows are not eval's first rows in eval order")
    answers: list[Answer] = []
    for i in range(n):
        answers += decode(path, task, rows[i: i + 1], settings, cache=cache, sha256=sha256, decoder=decoder)
        check.measure(key, sha256, lambda: decoder.llm, i)
    for i in range(n, len(check.rows)):  # forced rows this model does not answer
        check.measure(key, sha256, lambda: decoder.llm, i)
    return answers + decode(path, task, rows[n:], settings, cache=cache, sha256=sha256)


def confirmation_answers(path, task: Task, rows: list[dict], settings: Settings, cache: PredictionCache,
                         sha256: str, gates: dict, classes: list[str]) -> tuple[list[Answer], list[str]]:
    """A promotion candidate's answers on eval.confirm_rows, decoded a few rows at a time (one
    row per decoder of a DecoderPool kept open throughout; the sample's rows come from the memo), and the count
    gates it went over (metrics.count_gates: a loop, a parse error). Decoding stops after the
    rows that put it over one, and the answers stop at the first such row: more rows can only
    raise a count, so the rest could not change its verdict, and a candidate that loops is the
    one that costs most to decode (v19: commit-messages' three failed candidates first looped at
    rows 62-88 of 240, and their remaining ~500 answers took about a third of its eval). The
    rows decoded beside that first one stay in the memo."""
    from tqdm import tqdm

    answers: list[Answer] = []
    unparsed = closed = 0
    step = decode_workers(settings, len(rows))
    with DecoderPool(path, settings, step) as pool, \
            tqdm(total=len(rows), desc=f"{path.stem} (confirmation)", unit="ex") as bar:
        for at in range(0, len(rows), step):
            chunk = rows[at: at + step]
            for row, answer in zip(chunk, decode(path, task, chunk, settings, cache=cache, sha256=sha256,
                                                 decoder=pool), strict=True):
                answers.append(answer)
                unparsed += not score(task, [row], [answer.text], classes, 1)[1][0].parsed
                closed += answer.closed_by_decoder
                if over := count_gates(unparsed, closed, gates):
                    return answers, over
            bar.update(len(chunk))
    return answers, []


def start_fidelity(task: Task, paths, gold: list[dict], gold_path, rows: list[dict], ggufs: dict, fcfg: dict,
                   settings: Settings, merged_sha256: str,
                   memo: bool) -> tuple[fidelity.Check, TokenizerRoundTrip, Any]:
    """The tokenizer round trip on every GGUF fidelity measures (`ggufs`: the converter's output
    first), then the Check the forced rows go through (eval's first fidelity.rows rows: prompt,
    gold answer, end of turn). Also the merged model's tokenizer."""
    from transformers import AutoTokenizer

    started = time.monotonic()
    tok = AutoTokenizer.from_pretrained(str(paths.merged))
    vocab = {key: tokenizer_digest(path) for key, path in ggufs.items()}
    firsts: dict[str, str] = {}  # the first GGUF of each distinct tokenizer (byte-identical ones split alike)
    for key in ggufs:
        firsts.setdefault(vocab[key], key)
    train = paths.sft("train")
    with fidelity.open_vocabs({key: ggufs[key] for key in firsts.values()}) as vocabs:
        n_gold = fidelity.round_trip(tok, vocabs, fidelity.gold_texts(task, tok, eval_order(gold), str(gold_path)),
                                     vocab)
        n_train = fidelity.round_trip(tok, vocabs, train_texts(tok, train, fcfg["train_prompts"]), vocab)
    round_trip_s = time.monotonic() - started
    log.info("tokenizer round trip: %d gold and %d training texts tokenise the same in %d GGUFs (%d distinct "
             "tokenizers) (%.1f s)", n_gold, n_train, len(ggufs), len(firsts), round_trip_s)
    forced = fidelity.forced_rows(task, tok, rows[: fcfg["rows"] or len(rows)])
    check = fidelity.Check(forced, paths.merged, merged_sha256,
                           fidelity.KLMemo(names.EVAL_CACHE / "kl" if memo else None), settings.n_threads)
    check.round_trip_s = round_trip_s
    return check, TokenizerRoundTrip(gold_texts=n_gold, train_texts=n_train, ggufs=len(ggufs), mismatches=0), tok


def write_fidelity(paths, check: fidelity.Check, fcfg: dict, sizes: dict, shas: dict,
                   tokenizer: TokenizerRoundTrip, order: list[str]) -> None:
    """reports/<task>/fidelity.json (each measured GGUF's figures, bounds, verdict and the SHA-256
    measured; the round trip's counts) and the KL-vs-size plot, its rows in `order` (the ladder's,
    whatever order they were measured in)."""
    figures = fidelity.verdicts(check.figures(), fcfg)
    judged = {k: figures[k] for k in order if k in figures}
    report = FidelityReport(
        models={k: FidelityFigures(**v, size_mb=sizes[k], sha256=shas[k]) for k, v in judged.items()},
        tokenizer=tokenizer)
    write_json(paths.fidelity, report.model_dump(mode="json"))
    write_csv(paths.fidelity_dir / "kl_size.csv", [
        {"type": k, "size_mb": sizes[k], "kl_mean": v["kl_mean"], "kl_p99": v["kl_p99"], "top1": v["top1"]}
        for k, v in judged.items()])
    for key, v in judged.items():
        log.info("fidelity %s: KL mean %.3g (bound %g), p99 %.3g (bound %g), top-1 %.4f over %d tokens%s", key,
                 v["kl_mean"], v["max_kl_mean"], v["kl_p99"], v["max_kl_p99"], v["top1"], v["tokens"],
                 "" if v["passed"] else ": OVER ITS BOUND, not promotable")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    # setup: params, toolchain, the rows in eval order, every GGUF checked against its pin
    params = config.from_argv("eval", argv)
    cfg, paths, task = params.section("eval"), params.paths, get_task(params.task_name)
    installed = params.check_toolchain(TOOLS)
    name, outtype = params.task.model_name, params.convert.outtype
    ladder = list(params.quantize.types)
    check_models(cfg, ladder, outtype)
    controls = [t for t in ladder if t in cfg["fidelity_only"]]  # measured by fidelity, never decoded
    types = [t for t in ladder if t not in controls]  # decoded, gated, promotable
    fcfg = params.section("fidelity")
    fidelity.check_bounds(fcfg, [outtype, *ladder], config.PARAMS)
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
    control_ggufs = {t: gguf_dir / gguf_name(name, t) for t in controls}
    every_gguf = {**ggufs, **control_ggufs}  # each one pinned, and named in the verdict
    sizes, size_bytes, shas, judged = {}, {}, {}, {}
    for key, path in every_gguf.items():
        shas[key] = verify_pin(path)  # a file that changed since quantize pinned it is refused here
        judged[key] = FileHash(path=str(path), sha256=shas[key])  # the verdict names these bytes
        receipt.inputs.append(path)
        size_bytes[key] = path.stat().st_size
        sizes[key] = round(size_bytes[key] / 1e6, 1)
    settings = Settings.from_eval(cfg)
    cache = PredictionCache(names.EVAL_CACHE if cfg["cache"] else None)
    sft_train = paths.sft("train")
    if not sft_train.is_file():
        raise FileNotFoundError(f"{sft_train}: eval sets the model beside the rule labeler on products the SFT "
                                f"export gave no row and checks the tokenizer on its prompts, and there is no "
                                f"export: build it (dvc repro export@{params.task_name})")
    receipt.inputs.append(sft_train)
    hf_models = {"merged_hf": paths.merged}
    if cfg["base_hf"]:
        hf_models["base_hf"] = paths.base_model
    hf_hashes = {key: dir_hash(model_dir) for key, model_dir in hf_models.items()}
    fid_keys = [outtype, *ladder]  # every GGUF fidelity measures (not the base's)

    # fidelity, before anything decodes: the tokenizer round trip (a mismatch would make every
    # figure moot), then the converter's output against the merged model on the forced rows
    check, tokenizer, tok = start_fidelity(task, paths, gold, gold_path, rows, {k: every_gguf[k] for k in fid_keys},
                                           fcfg, settings, hf_hashes["merged_hf"].files["model.safetensors"],
                                           cfg["cache"])
    with Decoder(ggufs[outtype], settings) as decoder:
        for i in range(len(check.rows)):
            check.measure(outtype, shas[outtype], lambda: decoder.llm, i)
    conv = fidelity.verdicts(check.figures(), fcfg)[outtype]
    if why := fidelity.converter_failure(ggufs[outtype].name, outtype, conv, paths.fidelity):
        write_fidelity(paths, check, fcfg, sizes, shas, tokenizer, fid_keys)
        raise RuntimeError(why)

    # decode every model and score it, each quantisation's forced rows right after their answers.
    # eval.cache: answers (and forced figures) memoised by model SHA-256 + decoder settings +
    # prompt, so a change that alters no answer (a gate, min_support, report_model) re-scores
    # without decoding
    run = Run(task, classes, cfg)
    for key, path in ggufs.items():
        key_rows = hf_rows if key == outtype else rows
        with Decoder(path, settings) as decoder:  # the forced rows' (the rest: one decoder per core)
            answers = decode_checked(task, path, key_rows, settings, cache, shas[key], decoder,
                                     check if key in types else None, key)
        run.add(key, key_rows, answers, sizes[key], grammar=True)
        if key in cfg["ablation_models"]:
            run.add(key, rows, decode(path, task, rows, settings, with_hint=False, cache=cache,
                                      sha256=shas[key]), variant="no_hint", grammar=True)
    # the controls (eval.fidelity_only): fidelity's forced rows only, no answer decoded
    for key, path in control_ggufs.items():
        with Decoder(path, settings) as decoder:
            for i in range(len(check.rows)):
                check.measure(key, shas[key], lambda: decoder.llm, i)
    # does retrieval help? the report model again on the same rows, each prompt led by its
    # eval.retrieval_k most similar RAG export rows as worked examples (tuneforge.retrieval, as
    # replay shows them; the export holds no gold row nor a near-duplicate of one)
    ref = cfg["report_model"]
    if cfg["retrieval_k"]:
        rag = paths.rag
        if not rag.is_file():
            raise FileNotFoundError(f"{rag}: eval.retrieval_k={cfg['retrieval_k']} draws worked examples from the "
                                    f"RAG export, and there is none: build it (dvc repro export@{params.task_name}) "
                                    "or set eval.retrieval_k: 0")
        receipt.inputs.append(rag)
        # the merged model's tokenizer: the round trip above checked the GGUFs' split alike
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
    trained = trained_products(sft_train)
    labeler_failures = {}
    for key in types:
        run.metrics[key]["vs_labeler"] = versus_labeler(task, rows, run.kinds[key], run.kinds[names.RULE_LABELER],
                                                        trained)
        labeler_failures[key] = labeler_behind(run.metrics[key]["vs_labeler"], cfg["gates"], task.class_field)

    for key, model_dir in hf_models.items():
        receipt.inputs.append(model_dir / "model.safetensors")
        run.add(key, hf_rows, decode_hf(model_dir, task, hf_rows, settings, cache, key,
                                        sha256=hf_hashes[key].files.get("model.safetensors")))
    for key in [*types, outtype]:
        # as shipped (under the grammar) against the merged model (free): how far the GGUF's
        # answers are from the HF model's, for whatever reason, reported, not gated
        run.metrics[key]["parity"] = parity(run.outputs[key][: len(hf_rows)],
                                            run.outputs["merged_hf"])
        # softer figure beside it: the same predicted kind
        run.metrics[key]["kind_parity"] = parity(run.kinds[key][: len(hf_rows)],
                                                 run.kinds["merged_hf"])
    # the gated one: eval.parity_model decoded as the merged model was, so that only the
    # conversion (and quantisation, for a quantised parity model) can make them differ
    pkey = cfg["parity_model"]
    free = decode_free(ggufs[pkey], task, hf_rows, settings, cache, shas[pkey])
    run.metrics[pkey]["conversion_parity"] = parity([a.text for a in free], run.outputs["merged_hf"])
    # the KL bounds gate each quantisation (the converter's output passed its own above)
    check.close()
    write_fidelity(paths, check, fcfg, sizes, shas, tokenizer, fid_keys)
    over, kl_mean = fidelity_failures(paths.fidelity, judged, fid_keys)
    failures = {k: over.get(k, []) + labeler_failures.get(k, []) for k in ladder}

    # the promotion candidate, smallest first, gated again on eval.confirm_rows (every gold row
    # by default): a sample of 40 rows cannot see a loop or a habit one answer in 60 shows, and
    # the promoted file is the one users get (its first rows' answers come from the memo)
    confirm_rows = eval_order(gold, cfg["confirm_rows"])
    confirm_labeler: list[str] = []

    def confirm(key: str) -> list[str]:
        if len(confirm_rows) <= len(rows):
            return []  # no row beyond the sample
        if not confirm_labeler:
            confirm_labeler.extend(s.pred_kind for s in score(task, confirm_rows, labeler_answers(task, confirm_rows),
                                                              classes, cfg["min_support"])[1])
        answers, over = confirmation_answers(ggufs[key], task, confirm_rows, settings, cache, shas[key],
                                             cfg["gates"], classes)
        decoded = confirm_rows[: len(answers)]
        run.add(key, decoded, answers, variant="confirmation", grammar=True)
        figures = run.metrics[key]["confirmation"]
        figures["confirm_rows"] = len(confirm_rows)
        figures["vs_labeler"] = versus_labeler(task, decoded, run.kinds[f"{key}/confirmation"],
                                               confirm_labeler[: len(decoded)], trained)
        if over:  # stopped early: only the count gates decide, the other figures cover part of the rows
            figures["stopped_by"] = over
            failed = [f"{f} (decoding stopped there: no further row can undo it)" for f in over]
        else:
            failed = (gate(run.summaries[f"{key}/confirmation"], cfg["gates"],
                           run.metrics[cfg["parity_model"]]["conversion_parity"], task.class_field)
                      + labeler_behind(figures["vs_labeler"], cfg["gates"], task.class_field))
        figures["passed_gates"] = not failed
        log.info("confirmation of %s on %d of %d gold rows: %s", key, len(decoded), len(confirm_rows),
                 "passes" if not failed else "; ".join(failed))
        return [f"on {len(decoded)} of {len(confirm_rows)} gold rows (eval.confirm_rows): {f}" for f in failed]

    verdict = Verdict(**decide(run.metrics, run.summaries, types, size_bytes, cfg, judged, task.class_field,
                               failures, kl_mean, confirm, controls),
                      confirm_rows=max(len(confirm_rows), len(rows)),
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
    receipt.outputs += [paths.metrics, paths.verdict, paths.predictions, paths.fidelity,
                        paths.fidelity_dir / "kl_size.csv"]
    receipt.finish(paths.receipt("eval"), records_in=len(rows),
                   records_out=len(rows),
                   extra={"gold_rows": len(gold), "models": len(run.metrics),
                          "hf_rows": len(hf_rows),
                          "unparsed": sum(p.pred_kind == UNPARSED for p in run.predictions),
                          "closed_by_decoder": sum(p.closed_by_decoder for p in run.predictions),
                          "cache_hits": cache.hits, "decoded": cache.misses,
                          "cache_corrupt": cache.corrupt + check.memo.corrupt,
                          # issue 20: what the fidelity checks cost inside this run (the round trip,
                          # the merged model's references, the forced passes, the KL maths)
                          "fidelity_ms": round((check.round_trip_s + check.seconds) * 1000),
                          "fidelity_round_trip_ms": round(check.round_trip_s * 1000),
                          "fidelity_forced": check.forced, "fidelity_memo_hits": check.hits})
    log.info("release %s; promoted %s; %s", verdict["release"], verdict["promoted"],
             ", ".join(f"{k}: {task.class_field} {m[f'{task.class_field}_agreement']}"
                       for k, m in run.metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
