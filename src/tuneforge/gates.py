"""The release decision eval writes into verdict.json and register acts on: every quantisation
against params.yaml's eval.gates, and the smallest one that passes them all promoted."""
from __future__ import annotations

from typing import Any

from tuneforge.metrics import gate
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


def decide(metrics: dict[str, dict], summaries: dict[str, dict], types: list[str],
           sizes: dict[str, float], cfg: dict, ggufs: dict[str, FileHash],
           class_field: str = "kind") -> dict[str, Any]:
    """Gate every quantisation; promote the smallest that passes (ties by name). `metrics`
    and `summaries`: eval's, per model key (each gated one gets `passed_gates` in its
    metrics); `ggufs`: each key's FileHash, so each verdict names the bytes it was made on."""
    ref_parity = metrics[cfg["parity_model"]]["parity"]
    models = {}
    for key in types:
        failed = gate(summaries[key], cfg["gates"], ref_parity, class_field)
        models[key] = ModelVerdict(verdict="fail" if failed else "pass", failed=failed,
                                   size_mb=sizes[key], gguf=ggufs[key].path, sha256=ggufs[key].sha256)
        metrics[key]["passed_gates"] = not failed
    passing = [k for k in types if models[k].verdict == "pass"]
    promoted = min(passing, key=lambda k: (sizes[k], k)) if passing else None
    return {"parity_model": cfg["parity_model"], "parity": ref_parity, "gates": cfg["gates"],
            "models": models, "promoted": promoted, "release": "pass" if promoted else "fail"}
