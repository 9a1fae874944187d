"""The tiny-model chain the model half runs: params, the tiny base, the SFT rows it trains on."""
from __future__ import annotations

from pathlib import Path

import yaml

from tools.faults.roots import PATHS, SHARED_CACHE, TASK, repo_params, task_entry
from tuneforge import names

# the importance matrix over a few short windows: the tiny chain's SFT text is a few thousand tokens
TINY_IMATRIX = {"imatrix_rows": 64, "imatrix_ctx": 64, "imatrix_chunks": 4}


def tiny_model_params(params: dict, tiny_base: Path) -> dict:
    """The tiny-model chain's params (tests/test_model_chain.py): seconds, not minutes."""
    params["base"] = {"source": "hf-dir", "path": str(tiny_base), "name": "tiny-llama"}
    params["train"].update(max_steps=4, batch_size=2, valid_examples=2, logging_steps=1, warmup_steps=1,
                           lora_layers=1)  # of the tiny model's 2 blocks
    params["eval"].update(holdout_limit=6, hf_subset=2, max_tokens=24, n_ctx=512)
    params["quantize"].update(TINY_IMATRIX)
    params["register"]["ollama"] = "never"
    return params


def write_tiny_params(root: Path, tiny_base: Path) -> dict:
    """Turn `root`'s params.yaml into the tiny chain's, and give the root's cache (the stages'
    TUNEFORGE_CACHE, roots.stage_env) the machine's downloads: convert's sdist and converter.
    Links, so a download lands in the shared cache; eval's answer memo is not linked."""
    params = tiny_model_params(yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")), tiny_base)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cache = root / ".cache"
    cache.mkdir(exist_ok=True)
    # llama.cpp's tools (quantize's `-imat` entries) take minutes to build: made once, in the
    # shared cache, so the folder is linked even before the first build fills it
    (SHARED_CACHE / "llama-tools").mkdir(parents=True, exist_ok=True)
    for sub in sorted(SHARED_CACHE.glob("*")) if SHARED_CACHE.is_dir() else []:
        if sub.name != names.EVAL_CACHE.name and not (cache / sub.name).exists():
            (cache / sub.name).symlink_to(sub.resolve(), target_is_directory=sub.is_dir())
    return params


def model_name(params: dict) -> str:
    return task_entry(params)["model_name"]


def build_tiny_base(out: Path) -> Path:
    from tuneforge.base_models import load_tokenizer, resolve_base
    from tuneforge.llm import build_tiny_model

    src = resolve_base(repo_params()["base"], SHARED_CACHE)
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

    task = get_task(TASK)
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
                "hint_shown": hint is not None, "split": split, "label_source": "rules"}

    write_jsonl(root / PATHS.sft("train"), [row(i, *e, "train") for i, e in enumerate(entries * 2)])
    write_jsonl(root / PATHS.sft("valid"), [row(i, *e, "valid") for i, e in enumerate(entries[:3])])
    # eval's retrieval pass (eval.retrieval_k) reads worked examples from the RAG export; as the
    # export stage's, it holds no gold entry
    rag = [("Fixed a hang when `--input` is a named pipe.", "Bug fixes", "git"),
           ("Removed the `baz` subcommand; use `qux`.", "Breaking changes", "npm"),
           ("Added a `--yaml` flag to `log`.", "Features", "git")]
    write_jsonl(root / PATHS.rag, [
        {"id": f"rag-{i}", "text": text, "hint": hint, "product": product,
         "label": task.rule_label(text, hint, product, "1.0")[0], "category": "accepted",
         "source_file": f"{product}/NEWS", "line": i + 1} for i, (text, hint, product) in enumerate(rag)])
    gold = []
    for text, hint, product in entries:
        label, rule = task.rule_label(text, hint, product, "1.0")
        gold.append({"text": text, "hint": hint, "product": product, "version": "1.0", "label": label,
                     "rule": rule})
    write_jsonl(root / task_entry(repo_params())["gold"], gold)
