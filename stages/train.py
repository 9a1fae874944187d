"""train: base model + SFT export -> LoRA adapter, loss curve, metadata sidecar.

Run: python -m stages.train <task>     (or: accelerate launch -m stages.train <task>)
In:  params.train (LoRA and optimiser settings, CPU budget), models/base (the base stage's
     fp32 safetensors + tokenizer + sidecar), data/<task>/exports/sft/{train,valid}.jsonl
Out: models/<task>/adapter   adapter_model.safetensors, adapter_config.json, tuneforge.json
     reports/<task>/train/loss.csv (DVC plots), .../train/metrics.json (DVC metrics),
     reports/<task>/receipts/train.json

Loss falls on the assistant turn only (trl prompt/completion data), and only those
positions go through the LM head (tuneforge.trainer); of that turn, not on the value of a
label key its source could not know (the task's unknown_fields: commit-messages' scope where
the author named no component). Batches are drawn length-grouped
and padded to their longest (~94% real tokens). The same seed, data and hardware give
the same adapter SHA-256.
Precision: train.precision, bf16 (bf16 base weights + autocast, fp32 adapter) or fp32 as
written; auto picks bf16 where the hardware has it natively (CUDA, or a CPU with
AVX512-BF16/AMX). What ran is written into the adapter sidecar (`precision`, `device`,
`qlora`) and the receipt (params.resolved). No gradient checkpointing on CPU. With CUDA,
4-bit QLoRA if asked.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from tuneforge import config
from tuneforge.io import atomic_path, read_jsonl, sha256_file, sig_hash, write_json
from tuneforge.llm import (
    MODEL_PACKAGES,
    atomic_dir,
    budget_order,
    lora_config,
    sft_config,
    sft_example,
    token_lengths,
    toolchain,
    train_precision,
)
from tuneforge.names import SIDECAR
from tuneforge.names.shapes import AdapterSidecar, BaseRef, BaseSidecar, Dataset, ExamplesRead, FileHash, read_sidecar
from tuneforge.receipts import Receipt
from tuneforge.tasks import Task, get_task

log = logging.getLogger("train")

TOOLS = ["torch", "transformers", "peft", "trl", "accelerate", "datasets"]
UNKNOWN = "unknown_fields"  # an example's keys whose value its label's source could not know


def example(task: Task, row: dict) -> dict:
    """The SFT row as trl's prompt/completion example, with the label keys its source could not
    know (Task.unknown_fields) under UNKNOWN where there are any: train takes their value tokens
    out of the loss (tuneforge.trainer.unlearn)."""
    ex = sft_example(row)
    if task.unknown_fields is not None:
        unknown = task.unknown_fields(json.loads(ex["completion"][-1]["content"]), row.get("label_source", "rules"))
        if unknown:
            ex[UNKNOWN] = list(unknown)
    return ex


def learnable(examples: list[dict]) -> list[dict]:
    """The examples as trl reads them: prompt and completion, without the UNKNOWN mark."""
    return [{k: v for k, v in ex.items() if k != UNKNOWN} for ex in examples]


def split_by_length(examples: list[dict], lengths: list[int], max_tokens: int
                    ) -> tuple[list[dict], int]:
    """Drop (and count) examples longer than `max_tokens`: batches are never truncated."""
    kept = [ex for ex, n in zip(examples, lengths, strict=True) if n <= max_tokens]
    return kept, len(examples) - len(kept)


def check_base(base_dir: Path) -> BaseSidecar:
    """The base stage's sidecar, or an error naming `base_dir` when that stage has not run
    (train reads the base; it no longer resolves or writes it)."""
    run = "run the base stage first (python -m stages.base, or dvc repro base)"
    if not base_dir.is_dir():
        raise FileNotFoundError(f"base model {base_dir} missing: {run}")
    if not (base_dir / SIDECAR).is_file():
        raise FileNotFoundError(f"base model {base_dir} has no {SIDECAR}: {run}")
    if not (base_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"base model {base_dir} has no model.safetensors: {run}")
    return read_sidecar(base_dir, BaseSidecar)  # a sidecar of another kind fails, naming file and field


def load_model(base_dir: Path, cfg: dict, cuda: bool, precision: str):
    import torch
    from transformers import AutoModelForCausalLM

    # train.attention: eager attention's backward beat torch's CPU flash-attention kernel
    # (sdpa) at these lengths, ~1.2x a step (make bench ONLY=train); the weights are the same
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if precision == "bf16" else torch.float32,
                              "attn_implementation": cfg["attention"]}
    if cfg["qlora"]:
        if not cuda:
            raise RuntimeError("train.qlora needs CUDA (bitsandbytes 4-bit); set it false on CPU")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as e:
            raise RuntimeError("train.qlora: bitsandbytes is not installed") from e
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(str(base_dir), **kwargs)


def loss_rows(log_history: list[dict]) -> list[dict]:
    return [{"step": h["step"], "loss": round(h["loss"], 6),
             "learning_rate": float(h.get("learning_rate", 0.0)),
             "tokens": int(float(h.get("num_tokens", 0)))}
            for h in log_history if "loss" in h and "step" in h]


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def run_key(cfg: dict, train_ex: list[dict], valid_ex: list[dict], base_sha256: str) -> str:
    """What a run's checkpoints belong to: the train params, the examples in order and the base
    weights. A checkpoint of any other run is never resumed."""
    return sig_hash({"params": cfg, "train": train_ex, "valid": valid_ex, "base": base_sha256})[:24]


def mean_loss(history: list[dict]) -> float:
    """The run's mean training loss from its loss curve (each logged window weighted by its
    steps): trainer_state.json keeps the curve across a resume, while the trainer's own
    train_loss would average only the steps run since."""
    total, steps, last = 0.0, 0, 0
    for h in history:
        if "loss" in h and "step" in h:
            total, steps, last = total + h["loss"] * (h["step"] - last), steps + h["step"] - last, h["step"]
    return total / steps if steps else float("nan")


def restore_token_count(trainer, checkpoint: Path) -> None:
    """trl counts the tokens it trained on (the loss curve's `tokens`) in an attribute the
    checkpoint does not restore; it is put back from the checkpoint's last log line, which is
    at the checkpoint's own step (train.checkpoint_every is a multiple of logging_steps)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    seen = [h["num_tokens"] for h in state["log_history"]
            if h.get("step") == state["global_step"] and "num_tokens" in h]
    if not hasattr(trainer, "_total_train_tokens") or not seen:
        raise RuntimeError(f"{checkpoint}: cannot restore trl's token count (no num_tokens logged at step "
                           f"{state['global_step']}, or trl no longer keeps _total_train_tokens)")
    trainer._total_train_tokens = int(float(seen[-1]))


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in run_dir: transformers writes trainer_state.json last,
    so a checkpoint a kill cut short (no state, or a torn one) is passed over for the one
    before it, which the trainer deletes only after the new one is saved."""
    steps = sorted((int(d.name.split("-")[1]), d) for d in run_dir.glob("checkpoint-*")
                   if d.name.split("-")[1].isdigit()) if run_dir.is_dir() else []
    for _, d in reversed(steps):
        try:
            json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
            return d
        except (OSError, ValueError):
            log.warning("checkpoint %s is incomplete (killed while saving?): passed over", d)
    return None


def train(base_dir: Path, train_ex: list[dict], valid_ex: list[dict], cfg: dict,
          adapter_dir: Path, checkpoints: Path | None = None) -> dict:
    """Fit the adapter; save it (main process only); return the training summary.

    With train.checkpoint_every and a `checkpoints` folder, a resumable checkpoint is saved every
    that many steps under checkpoints/<run key>/, and a run that finds one of its own resumes
    from it (the trainer restores adapter, optimiser, scheduler, RNG states and skips the batches
    already read), so a killed `dvc repro` continues where it stopped and ends with the same
    adapter bytes; a finished run removes its folder."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    from tuneforge.trainer import CompletionLossTrainer, WeightedCollator, compile_blocks, unlearn, weigh

    cuda = torch.cuda.is_available()
    if cfg["num_threads"] and not cuda:
        torch.set_num_threads(cfg["num_threads"])
    # oneDNN (torch's CPU bf16 matmuls) may split a reduction across threads and sum the parts
    # in finishing order unless asked not to; the adapter's SHA-256 is DVC's key, so ask
    torch.backends.mkldnn.deterministic = True
    precision = train_precision(cfg, cuda)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = load_model(base_dir, cfg, cuda, precision)
    lora = lora_config(cfg, model)
    every = cfg["checkpoint_every"] if checkpoints is not None else 0
    if every % cfg["logging_steps"]:
        raise ValueError(f"train.checkpoint_every ({every}) must be a multiple of train.logging_steps "
                         f"({cfg['logging_steps']}): a resumed run takes its token count from the log at its step")
    run_dir = (checkpoints / run_key(cfg, train_ex, valid_ex, sha256_file(base_dir / "model.safetensors"))
               if every else None)
    with tempfile.TemporaryDirectory(prefix="tuneforge-train-") as scratch:
        trainer = CompletionLossTrainer(model=model, args=sft_config(cfg, str(run_dir or scratch), cuda, precision,
                                                                     save_every=every),
                                        train_dataset=Dataset.from_list(learnable(train_ex)),
                                        eval_dataset=Dataset.from_list(learnable(valid_ex)) if valid_ex else None,
                                        processing_class=tok, peft_config=lora)
        # weighed before unlearn: weigh finds each answer among the labelled tokens whole
        weights = cfg["field_weights"]
        trainer.train_dataset = unlearn(weigh(trainer.train_dataset, tok, weights), tok,
                                        [ex.get(UNKNOWN, ()) for ex in train_ex])
        if valid_ex:  # scored as trained
            trainer.eval_dataset = unlearn(weigh(trainer.eval_dataset, tok, weights), tok,
                                           [ex.get(UNKNOWN, ()) for ex in valid_ex])
        if weights:
            trainer.data_collator = WeightedCollator(trainer.data_collator)
        if cfg["qlora"] and cuda:
            # trl casts a 4-bit model's adapter to bf16 (the QLoRA paper's setting; seen on an H200,
            # tests/test_gpu.py). Kept in fp32 here, as on every other path: bf16 holds 8 significant
            # bits, so an Adam step smaller than 1/256 of a weight (the cosine schedule's tail) is
            # lost, and the merge folds the adapter into an fp32 base. The optimiser is made later,
            # in train(), so it holds these fp32 tensors.
            for param in trainer.model.parameters():
                if param.requires_grad:
                    param.data = param.data.float()
        if cfg["compile"]:
            log.info("compiled %d decoder blocks (train.compile)", compile_blocks(trainer.model))
        resume = last_checkpoint(run_dir) if run_dir else None
        if resume:
            log.info("resuming from %s (train.checkpoint_every %d)", resume, every)
            restore_token_count(trainer, resume)
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        valid_loss = trainer.evaluate()["eval_loss"] if valid_ex else None
        if trainer.is_world_process_zero():
            with atomic_dir(adapter_dir) as tmp:
                trainer.model.save_pretrained(str(tmp))
                sort_target_modules(tmp / "adapter_config.json")
            if run_dir is not None and run_dir.is_dir():  # this run's only: others may be running
                shutil.rmtree(run_dir)
        history = trainer.state.log_history
    return {"steps": result.global_step, "train_loss": round(mean_loss(history), 6),
            "valid_loss": None if valid_loss is None else round(valid_loss, 6),
            "loss_curve": loss_rows(history), "device": "cuda" if cuda else "cpu",
            "precision": precision, "resumed_from_step": int(resume.name.split("-")[1]) if resume else 0,
            "qlora": bool(cfg["qlora"] and cuda)}


def sort_target_modules(config_path: Path) -> None:
    """peft stores target_modules from a Python set, so their order follows the
    process's string-hash seed; sorted, adapter_config.json is the same every run."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("train", argv)
    cfg, paths = params.section("train"), params.paths
    task = get_task(params.task_name)
    if unknown := sorted(set(cfg["field_weights"]) - set(task.output_model.model_fields)):
        raise ValueError(f"train.field_weights names {', '.join(map(repr, unknown))}: not a field of "
                         f"{task.name}'s answer ({', '.join(task.output_model.model_fields)})")
    params.check_toolchain(TOOLS)
    base_dir, adapter_dir = paths.base_model, paths.adapter
    base = check_base(base_dir)
    log.info("base %s from %s", base.root.name, base_dir)
    from accelerate import PartialState

    state = PartialState()
    receipt = Receipt("train", params.declared(), packages=TOOLS)
    train_path, valid_path = paths.sft("train"), paths.sft("valid")
    reports = paths.train_reports
    receipt.inputs += [train_path, valid_path, base_dir / "model.safetensors"]

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    rows = list(read_jsonl(train_path))
    # scored as trained: a value the label's source could not know is not in the valid loss either
    valid_all = [example(task, r) for r in read_jsonl(valid_path)][: cfg["valid_examples"]]
    if not rows:
        raise ValueError(f"{train_path} holds no examples: nothing to train on")
    # A step budget (max_steps) reads only the examples it will train on: the export's
    # train order is already a seeded shuffle, so its first rows are a fair sample, and
    # tokenising all ~27k rows for 240 steps' worth cost ~30 s of the CPU budget.
    # kind_balance reorders it first so that sample is not 45% fixes.
    # train.prefer_human_labels: within each kind, hand-labeled rows are read first
    ordered, planned = budget_order(rows, cfg, state.num_processes)
    per_step = cfg["batch_size"] * cfg["grad_accum"] * state.num_processes
    train_all = [example(task, r) for r in ordered]
    train_ex, too_long, examined, lengths = [], 0, 0, []
    while examined < len(train_all) and (not planned or len(train_ex) < planned):
        chunk = train_all[examined: examined + planned - len(train_ex)] if planned else train_all
        chunk_lengths = token_lengths(tok, chunk)
        kept, dropped = split_by_length(chunk, chunk_lengths, cfg["max_tokens"])
        train_ex, too_long, lengths = train_ex + kept, too_long + dropped, lengths + chunk_lengths
        examined += len(chunk)
    valid_ex, _ = split_by_length(valid_all, token_lengths(tok, valid_all), cfg["max_tokens"])
    kinds_read = dict(sorted(Counter(r["kind"] for r in ordered[:examined]).items()))
    sources_read = dict(sorted(Counter(r.get("label_source", "rules") for r in ordered[:examined]).items()))
    unknown_read = dict(sorted(Counter(k for ex in train_ex for k in ex.get(UNKNOWN, ())).items()))
    log.info("%d of %d train examples read (%d over %d tokens dropped), mean %.0f tokens; "
             "%d steps x %d = %d examples planned; kinds read %s; label sources read %s; "
             "values not learned (Task.unknown_fields) %s", examined,
             len(train_all), too_long, cfg["max_tokens"], sum(lengths) / len(lengths), cfg["max_steps"],
             per_step, planned, kinds_read, sources_read, unknown_read)

    summary = train(base_dir, train_ex, valid_ex, cfg, adapter_dir, paths.train_checkpoints)
    if not state.is_main_process:
        return 0
    adapter_sha = sha256_file(adapter_dir / "adapter_model.safetensors")
    # No git revision here (the receipt has it): an artifact depends on its inputs only,
    # so a clean build at any commit with the same inputs gives the same bytes.
    sidecar = AdapterSidecar(
        params=cfg, adapter_sha256=adapter_sha,
        base=BaseRef(dir=str(base_dir), sha256=sha256_file(base_dir / "model.safetensors")),
        dataset=Dataset(train=FileHash(path=str(train_path), sha256=sha256_file(train_path)),
                        valid=FileHash(path=str(valid_path), sha256=sha256_file(valid_path))),
        examples=ExamplesRead(train=len(train_ex), too_long=too_long, valid=len(valid_ex),
                              kinds_read=kinds_read, sources_read=sources_read),
        toolchain=toolchain(MODEL_PACKAGES + (["bitsandbytes"] if summary["qlora"] else [])),
        **{k: v for k, v in summary.items() if k not in ("loss_curve", "resumed_from_step")},
    )
    write_json(adapter_dir / SIDECAR, sidecar.model_dump(mode="json"))
    write_csv(reports / "loss.csv", summary["loss_curve"],
              ["step", "loss", "learning_rate", "tokens"])
    write_json(reports / "metrics.json", {
        "train_loss": summary["train_loss"], "valid_loss": summary["valid_loss"],
        "steps": summary["steps"], "examples": len(train_ex),
        "tokens": summary["loss_curve"][-1]["tokens"] if summary["loss_curve"] else 0})
    from tuneforge.trainer import matmul_isa  # torch and trl at import: loaded once training ran

    # what train.precision: auto (and the hardware) chose, beside the params DVC keyed on, and the
    # instruction set the matrix products ran on (weights differ across them: verify-repro reads it)
    receipt.params["resolved"] = {**{k: summary[k] for k in ("precision", "device", "qlora")},
                                  "matmul_isa": matmul_isa(summary["device"] == "cuda")}
    receipt.outputs += [adapter_dir / "adapter_model.safetensors", adapter_dir / SIDECAR,
                        reports / "loss.csv"]
    # records in: the rows the step budget read; the rest of the export is not consumed
    receipt.finish(paths.receipt("train"), records_in=examined,
                   records_out=len(train_ex), quarantined=too_long,
                   extra={"steps": summary["steps"], "valid_examples": len(valid_ex),
                          "resumed_from_step": summary["resumed_from_step"],
                          "export_rows": len(train_all), "not_read": len(train_all) - examined,
                          **{f"kind_{k}": v for k, v in kinds_read.items()},
                          **{f"source_{k}": v for k, v in sources_read.items()},
                          **{f"unknown_{k}": v for k, v in unknown_read.items()}})
    log.info("adapter %s (sha256 %s), train loss %.4f, valid loss %s", adapter_dir,
             adapter_sha[:16], summary["train_loss"], summary["valid_loss"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
