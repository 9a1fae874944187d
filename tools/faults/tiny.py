"""The tiny-model chain the model half runs: params, the tiny base, the SFT rows it trains on."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from tools.faults.roots import ROOT


def tiny_model_params(params: dict, tiny_base: Path) -> dict:
    """The tiny-model chain's params (tests/test_model_chain.py): seconds, not minutes."""
    params["paths"]["cache_dir"] = str(Path(os.environ.get("TUNEFORGE_CACHE", ROOT / ".cache")))
    params["base"] = {"source": "hf-dir", "path": str(tiny_base), "name": "tiny-llama"}
    params["train"].update(max_steps=4, batch_size=2, valid_examples=2, logging_steps=1, warmup_steps=1)
    params["eval"].update(holdout_limit=6, hf_subset=2, max_tokens=24, n_ctx=512)
    params["register"]["ollama"] = "never"
    return params


def build_tiny_base(out: Path) -> Path:
    from tuneforge.base_models import load_tokenizer, resolve_base
    from tuneforge.llm import build_tiny_model

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    cache = Path(os.environ.get("TUNEFORGE_CACHE", ROOT / ".cache"))
    src = resolve_base(params["base"], cache)
    return build_tiny_model(load_tokenizer(src), out, seed=0)


def model_available() -> str | None:
    """None when the model half can run here, else why not."""
    for mod in ("torch", "llama_cpp", "transformers", "peft", "trl", "gguf"):
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not installed"
    return None


def write_tiny_exports(root: Path) -> None:
    """SFT rows and gold for the model stages (the rule labeler's labels, as the chain test)."""
    from tuneforge.io import write_jsonl
    from tuneforge.tasks import get_task

    task = get_task("changelog-actions")
    entries = [
        ("Fixed a crash when `--output` points to a directory.", "Bug fixes", "git"),
        ("Removed the deprecated `foo` command; use `bar` instead.", "Breaking changes", "npm"),
        ("Added a `--json` flag to the `status` command.", "Features", "git"),
        ("Made `git log` faster on large repositories.", None, "git"),
        ("Documented the `core.fsmonitor` setting.", "Documentation", "git"),
        ("The `--legacy` option is deprecated and will be removed in 3.0.", None, "pip"),
        ("Fixed CVE-2024-1234: path traversal in archive extraction.", "Security", "tar"),
        ("Added support for `zstd` compressed archives.", None, "tar"),
    ]

    def row(i, text, hint, product, split):
        label, _ = task.rule_label(text, hint, product, "1.0")
        msgs = task.messages(text, hint, product) + [{"role": "assistant", "content": task.render_label(label)}]
        return {"id": f"{split}-{i}", "messages": msgs, "kind": label["kind"], "product": product,
                "hint_shown": hint is not None, "split": split}

    sft = root / "data" / "exports" / "sft"
    write_jsonl(sft / "train.jsonl", [row(i, *e, "train") for i, e in enumerate(entries * 2)])
    write_jsonl(sft / "valid.jsonl", [row(i, *e, "valid") for i, e in enumerate(entries[:3])])
    gold = []
    for text, hint, product in entries:
        label, rule = task.rule_label(text, hint, product, "1.0")
        gold.append({"text": text, "hint": hint, "product": product, "version": "1.0", "label": label,
                     "rule": rule})
    write_jsonl(root / "data" / "gold" / "holdout.jsonl", gold)
