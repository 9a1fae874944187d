"""The release decision eval writes into verdict.json and register acts on: every quantisation
against params.yaml's eval.gates, the fidelity checks' KL bounds and the rule labeler, and the
smallest one that passes them all, on eval's sample and again on eval.confirm_rows, promoted."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneforge.metrics import gate
from tuneforge.names.shapes import FidelityReport, read_model
from tuneforge.verdict import FileHash, ModelVerdict


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
    controls = cfg["fidelity_only"]
    if unknown := sorted(set(controls) - set(types)):
        raise ValueError(f"eval.fidelity_only {unknown} are not in quantize.types {types}")
    if clash := sorted(set(controls) & {cfg["report_model"], cfg["parity_model"], *cfg["ablation_models"]}):
        raise ValueError(f"eval.fidelity_only {clash}: eval decodes these (eval.report_model, parity_model or "
                         "ablation_models), and a fidelity-only GGUF is never decoded")


# a fidelity-only GGUF's reason to fail: it was never decoded, so no gate could pass it
NOT_DECODED = ("not decoded (eval.fidelity_only): measured by fidelity alone (KL, top-1), as the importance "
               "matrix's control; never promoted")


def fidelity_failures(path: Path, ggufs: dict[str, FileHash], keys: list[str]
                      ) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Each GGUF's reasons to fail from the fidelity report eval wrote (reports/<task>/fidelity.json),
    which must have measured the very bytes eval judges: figures for another file are refused.
    Also each one's KL mean: `decide` breaks a tie in size with it."""
    fix = "eval writes it (its fidelity checks) before the gates read it: rerun eval (dvc repro)"
    report = read_model(path, FidelityReport, fix)
    out, kl_mean = {}, {}
    for key in keys:
        fig = report.models.get(key)
        if fig is None:
            raise ValueError(f"{path}: no fidelity figures for {key}: {fix}")
        if fig.sha256 != ggufs[key].sha256:
            raise ValueError(f"{path}: {key}'s figures were measured on sha256 {fig.sha256}, but eval "
                             f"judges {ggufs[key].path} with sha256 {ggufs[key].sha256}: {fix}")
        out[key] = [] if fig.passed else [
            f"fidelity KL mean {fig.kl_mean:.3g} (bound {fig.max_kl_mean:g}), "
            f"p99 {fig.kl_p99:.3g} (bound {fig.max_kl_p99:g})"]
        kl_mean[key] = fig.kl_mean
    return out, kl_mean


# the gold subsets the labeler gate reads (scoring.versus_labeler's keys): only rows the rule
# labeler was not tuned on. The eval report and the README's confirmation table name them from here.
LABELER_GATE_SUBSETS = ("untouched", "unseen_untouched")


def labeler_behind(versus: dict[str, dict], gates: dict, class_field: str = "kind") -> list[str]:
    """A quantisation fails eval.gates.max_p_labeler_better when the rule labeler beats it on the
    gold rows never read while the labeler was tuned, or on those of them from products the model
    never saw, by more than chance explains: the exact sign test over the rows only one of them
    gets right (a threshold on the point figures would pass or fail on noise at 40 rows). None =
    no gate. Both subsets hold only rows the labeler was not tuned on: its rules were written
    reading the other gold rows, so there its figure is in-sample. v18's changelog-actions Q8_0,
    on all 384 rows: on unseen_products 40 vs the labeler's 54 of 67, but 27 vs 42 of those 48
    rows the labeler was tuned on, and 13 vs 12 of the 19 it was not (on every untouched row 87 vs 84)."""
    p = gates.get("max_p_labeler_better")
    if p is None:
        return []
    out = []
    for name in LABELER_GATE_SUBSETS:
        v = versus[name]
        if v["n"] and v["p_labeler_better"] < p:
            out.append(f"rule labeler ahead on {name} rows: {class_field} {v['labeler']:.3f} vs {v['model']:.3f} "
                       f"over {v['n']} rows ({v['labeler_only']} only it got right, {v['model_only']} only the "
                       f"model; sign test p {v['p_labeler_better']:.3g} < {p})")
    return out


def decide(metrics: dict[str, dict], summaries: dict[str, dict], types: list[str],
           size_bytes: dict[str, int], cfg: dict, ggufs: dict[str, FileHash],
           class_field: str = "kind", failures: dict[str, list[str]] | None = None,
           kl_mean: dict[str, float] | None = None,
           confirm: Callable[[str], list[str]] | None = None,
           controls: Sequence[str] = ()) -> dict[str, Any]:
    """Gate every quantisation; promote the smallest that passes, and passes again on more gold
    rows (`confirm`: a candidate's reasons to fail there, eval.confirm_rows; tried smallest
    first, a candidate that fails is failed with them and the next one tried). Sizes are compared to three
    significant figures of `size_bytes` (each verdict shows MB to one decimal): a K type with and without the
    importance matrix has the same tensor bytes and differs by the matrix's few hundred bytes of
    metadata, so the pair ties, and the tie goes to the lower fidelity KL mean (`kl_mean`: the
    closer one to the trained model), then by name. `metrics`
    and `summaries`: eval's, per model key (each gated one gets `passed_gates` in its
    metrics); `ggufs`: each key's FileHash, so each verdict names the bytes it was made on;
    `failures`: each key's other reasons to fail (fidelity_failures: over its KL bounds;
    labeler_behind: the rule labeler ahead of it). `controls`: GGUFs fidelity measured but eval
    never decoded (eval.fidelity_only): each fails with NOT_DECODED (and any KL bound it is over)."""
    # the conversion check: eval.parity_model decoded as the merged model is (no grammar)
    ref_parity = metrics[cfg["parity_model"]]["conversion_parity"]
    models = {}
    for key in [*types, *controls]:
        decoded = key not in controls  # a control has no answers for a gate to read
        failed = ((gate(summaries[key], cfg["gates"], ref_parity, class_field) if decoded else [NOT_DECODED])
                  + (failures or {}).get(key, []))
        models[key] = ModelVerdict(verdict="fail" if failed else "pass", confirmed=None, failed=failed,
                                   size_mb=round(size_bytes[key] / 1e6, 1), gguf=ggufs[key].path,
                                   sha256=ggufs[key].sha256)
        if decoded:
            metrics[key]["passed_gates"] = not failed
    passing = [k for k in types if models[k].verdict == "pass"]
    closeness = kl_mean or {}
    promoted = None
    for key in sorted(passing, key=lambda k: (float(f"{size_bytes[k]:.3g}"), closeness.get(k, float("inf")), k)):
        more = confirm(key) if confirm is not None else []
        if not more:
            promoted = key
            models[key] = models[key].model_copy(update={"confirmed": True})
            break
        models[key] = models[key].model_copy(update={"verdict": "fail", "confirmed": False, "failed": more})
        metrics[key]["passed_gates"] = False
    return {"parity_model": cfg["parity_model"], "parity": ref_parity, "gates": cfg["gates"],
            "models": models, "promoted": promoted, "release": "pass" if promoted else "fail"}
