"""What eval writes for people and plots: report.md (models, release gates, hint ablation,
per-kind figures and confusion of the report model, first parse errors) and the CSV plots."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tuneforge.gates import LABELER_GATE_SUBSETS
from tuneforge.io import atomic_path
from tuneforge.metrics import FIELDS, headline_keys


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


def comparison_table(figures: dict, heads: list[str], names: tuple[str, str]) -> list[str]:
    """tuneforge.metrics.compare's two passes and their delta as a table, one row each."""
    return ["| | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads),
            *(f"| {k} | " + " | ".join(_fmt(figures[k][h]) for h in heads) + " |" for k in (*names, "delta"))]


def _verdict_cell(v: dict) -> str:
    """A model's verdict as the gate table shows it: a pass never tried on confirm_rows says so."""
    if v["verdict"] == "pass" and v["confirmed"] is None:
        return "pass on these rows only (never tried on confirm_rows)"
    return v["verdict"]


def report_md(metrics: dict, summaries: dict, verdict: dict, ref: str, cfg: dict,
              n_rows: int, n_hf: int, errors: dict[str, list[str]], fields: tuple[str, str] = FIELDS,
              extra: tuple[str, ...] = ()) -> str:
    """`fields`: the task's graded fields (tuneforge.metrics.FIELDS); `extra`: more metrics
    columns (the task's own figures, Task.eval_figures)."""
    heads = headline_keys(fields)
    c = fields[0]
    cols = ["n", *heads, f"{c}_agreement_ci95_low", f"{c}_agreement_ci95_high", "parse_errors",
            "closed_by_decoder", "closed_by_decoder_rate", "unknown_precision", "unknown_recall", "parity",
            "kind_parity", "conversion_parity", *extra, "size_mb"]
    intro = (f"Holdout rows evaluated: {n_rows} (eval.holdout_limit={cfg['holdout_limit']}); "
             f"HF models and parity on the first {n_hf} of them. Greedy decoding; GGUFs under "
             "the output-schema grammar, HF models unconstrained: parity and kind_parity compare "
             "the two as each ships. conversion_parity: the parity model decoded as the HF model "
             "is (no grammar) against it, the conversion check the gate reads. closed_by_decoder: GGUF answers "
             f"still open at eval.max_tokens={cfg['max_tokens']} (a loop, usually) that the decoder "
             "closed, so they parse; their end is the decoder's, not the model's.")
    out = ["# Eval report", "", intro, "", "## Models", "",
           "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, m in metrics.items():
        out.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |")
    g = cfg["gates"]
    gates = (f"min_class_agreement={g['min_class_agreement']} ({c}), max_parse_errors="
             f"{g['max_parse_errors']}, min_parity={g['min_parity']} (conversion_parity of "
             f"{cfg['parity_model']})" + (f", max_closed_by_decoder={g['max_closed_by_decoder']}"
                                          if "max_closed_by_decoder" in g else "")
             + (f", max_p_labeler_better={g['max_p_labeler_better']}."
                if g.get("max_p_labeler_better") is not None else "."))
    out += ["", "## Release gates", "", gates, "",
            "| model | verdict | failed gates |", "|---|---|---|"]
    for name, v in verdict["models"].items():
        out.append(f"| {name} | {_verdict_cell(v)} | {'; '.join(v['failed']) or '-'} |")
    promoted = verdict["promoted"] or "none"
    out += ["", f"Promoted: **{promoted}** (the smallest GGUF passing every gate, on these rows and again on "
            f"{verdict['confirm_rows']} gold rows, eval.confirm_rows; at equal size, the one closer to the trained "
            "model by fidelity's KL mean).", ""]
    tried = [n for n in metrics if "confirmation" in metrics[n]]
    if tried:
        out += [f"## Confirmation (eval.confirm_rows: {verdict['confirm_rows']} gold rows)", "",
                "Each promotion candidate, smallest first, decoded on these rows and gated again; the first that "
                "passes is promoted. A candidate's decoding stops at the row that puts it over a count gate (a "
                "loop, a parse error), which no further row can undo: its figures then cover the rows decoded "
                "(n).", "", "| model | " + " | ".join(cols[:-1]) + " | passed |",
                "|---|" + "---|" * len(cols)]
        for name in tried:
            m = metrics[name]["confirmation"]
            out.append(f"| {name} | " + " | ".join(_fmt(m.get(k)) for k in cols[:-1])
                       + f" | {_fmt(m['passed_gates'])} |")
        out.append("")
    for name in [n for n in metrics if "hint_ablation" in metrics[n]]:
        out += [f"## Hint ablation ({name})", "",
                *comparison_table(metrics[name]["hint_ablation"], heads, ("with_hint", "without_hint")), ""]
    for name in [n for n in metrics if "retrieval" in metrics[n]]:
        rt = metrics[name]["retrieval"]
        out += [f"## Retrieval ({name})", "",
                f"The same rows, each prompt led by its {rt['k']} most similar rows of the task's RAG export as "
                f"worked examples (as `tuneforge.replay` shows them; as many as fit n_ctx): "
                f"{_fmt(rt['examples_shown_mean'])} shown on average, {rt['rows_without_examples']} rows with none, "
                f"{rt.get('closed_by_decoder', 0)} answers closed by the decoder.", "",
                *comparison_table(rt, heads, ("with_retrieval", "without_retrieval")), ""]
    for name in [n for n in metrics if "vs_labeler" in metrics[n]]:
        if name == ref:
            out += [f"## Against the rule labeler ({name})", "",
                    f"The rule labeler answered the same rows; per subset, each one's {c} agreement, the rows only "
                    "one got right, and the one-sided exact sign test that the labeler is better. untouched: gold "
                    "rows never read while the labeler was tuned; unseen_products: rows of products that gave the "
                    "SFT export no row; unseen_untouched: those of them never read while the labeler was tuned. "
                    f"The gate (eval.gates.max_p_labeler_better) reads {' and '.join(LABELER_GATE_SUBSETS)}: on "
                    "the other rows the labeler's figure is in-sample.", "",
                    "| rows | n | model | rule labeler | only the model | only the labeler | p (labeler better) |",
                    "|---|---|---|---|---|---|---|"]
            out += [f"| {k} | {v['n']} | {_fmt(v['model'])} | {_fmt(v['labeler'])} | {v['model_only']} | "
                    f"{v['labeler_only']} | {_fmt(v['p_labeler_better'])} |"
                    for k, v in metrics[name]["vs_labeler"].items()]
            out.append("")
    s = summaries[ref]
    macro = (f"macro-F1 over {c}s with support >= {cfg['min_support']}: {_fmt(s['macro_f1'])} "
             f"({', '.join(s['macro_f1_kinds']) or f'no {c} has enough support'})")
    out += [f"## Per-{c} precision / recall / F1 ({ref})", "", macro, "",
            f"| {c} | precision | recall | F1 | support | predicted |", "|---|---|---|---|---|---|"]
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
