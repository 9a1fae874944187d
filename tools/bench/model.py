"""Bench sections on the built models: sha256 pinning, decoding, training steps."""
from __future__ import annotations

import tempfile
import time
from typing import Any

from tools.bench.common import ROOT, run, timed
from tuneforge.config import Params
from tuneforge.io import read_jsonl, sha256_file
from tuneforge.names import TaskPaths

# ---------------------------------------------------------------- sha256

def bench_sha256(params: Params, task: str, reps: int = 3) -> dict:
    gguf_dir = ROOT / TaskPaths.for_task(task).gguf_dir
    files = sorted(gguf_dir.glob("*.gguf"))
    if not files:
        raise SystemExit(f"bench sha256: no GGUF in {gguf_dir}; build first (dvc repro)")
    mb = sum(f.stat().st_size for f in files) / 1e6
    ours, theirs = [], []
    for _ in range(reps):  # alternate, best of each: both read from the page cache
        ours.append(timed(lambda: [sha256_file(f) for f in files])[0])
        theirs.append(timed(run, ["sha256sum", *map(str, files)])[0])
    ours_s, theirs_s = min(ours), min(theirs)
    return {"files": len(files), "mb": round(mb, 1),
            "sha256_mb_per_s": round(mb / ours_s, 1),
            "baseline_sha256sum_mb_per_s": round(mb / theirs_s, 1),
            "ratio": round(theirs_s / ours_s, 3)}


# ---------------------------------------------------------------- decode

def bench_decode(params: Params, task_name: str, n_prompts: int = 6) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge import decode
    from tuneforge.gguf_tools import verify_pin
    from tuneforge.grammar import compile_gbnf
    from tuneforge.llama_private import load_llama
    from tuneforge.names import eval_order, gguf_name
    from tuneforge.tasks import get_task

    paths, entry, cfg = TaskPaths.for_task(task_name), params.tasks[task_name], params.eval.model_dump()
    task = get_task(task_name)
    gold = eval_order(read_jsonl(ROOT / entry.gold), n_prompts)
    prompts = decode.prompts(task, gold)
    gguf = ROOT / paths.gguf_dir / gguf_name(entry.model_name, "Q8_0")
    verify_pin(gguf)
    settings = decode.Settings.from_eval(cfg)
    gbnfs = [decode.task_gbnf(task, r["text"]) for r in gold]  # each prompt's own, as eval decodes
    out: dict[str, Any] = {"prompts": len(prompts), "max_tokens": cfg["max_tokens"]}
    # eval's decoder (tuneforge.decode: grammar checked on the argmax first), llama-cpp-python's
    # stock sampler chain (grammar over the whole vocabulary every token), and free decoding;
    # each opener gives (answer: (prompt, grammar) -> (text, completion tokens), close)
    def ours(free: bool = False):
        decoder = decode.Decoder(gguf, settings)
        return (lambda p, g: (decoder.answer(p, None if free else g).text,
                              decoder.last["usage"]["completion_tokens"])), decoder.close

    def stock():
        llm = load_llama(gguf, n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                         last_n_tokens_size=settings.repeat_last_n, seed=0, verbose=False)
        compiled = {g: compile_gbnf(g) for g in gbnfs}  # before the clock, as ours compiles each once

        def answer(p: list[dict], g: str) -> tuple[str, int]:
            res = decode.chat_greedy(llm, p, compiled[g], settings.max_tokens, repeat_penalty=settings.repeat_penalty)
            return res["choices"][0]["message"]["content"], res["usage"]["completion_tokens"]
        return answer, llm.close

    openers = {"grammar": ours, "grammar_stock": stock, "free": lambda: ours(free=True)}
    texts: dict[str, list[str]] = {}
    for variant, opener in openers.items():
        answer, close = opener()
        answer(prompts[0], gbnfs[0])  # warm
        tokens, texts[variant], t0 = 0, [], time.perf_counter()
        for p, g in zip(prompts, gbnfs, strict=True):
            text, n = answer(p, g)
            tokens += n
            texts[variant].append(text)
        dt = time.perf_counter() - t0
        close()
        out[f"q8_0_{variant}"] = {"tokens": tokens, "s": round(dt, 2),
                                  "tokens_per_s": round(tokens / dt, 1)}
    # the speed-up must not change a single answer
    out["grammar_first_same_texts"] = texts["grammar"] == texts["grammar_stock"]
    out["eval_batch"] = bench_eval_batch(gguf, task, read_jsonl(ROOT / entry.gold), settings)

    merged = ROOT / paths.merged
    tok = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    tokens, elapsed = 0, 0.0
    with torch.inference_mode():
        for i, p in enumerate([prompts[0], *prompts]):
            enc = tok.apply_chat_template(p, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
            t0 = time.perf_counter()
            gen = model.generate(**enc, do_sample=False, max_new_tokens=cfg["max_tokens"],
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            if i:  # the first call warms up
                elapsed += time.perf_counter() - t0
                tokens += gen.shape[1] - enc["input_ids"].shape[1]
    out["baseline_transformers"] = {"tokens": tokens, "s": round(elapsed, 2),
                                    "tokens_per_s": round(tokens / elapsed, 1)}
    base = out["baseline_transformers"]["tokens_per_s"]
    out["decode_tokens_per_s"] = out["q8_0_grammar"]["tokens_per_s"]
    out["ratio"] = round(out["q8_0_grammar"]["tokens_per_s"] / base, 2)
    out["ratio_free"] = round(out["q8_0_free"]["tokens_per_s"] / base, 2)
    out["ratio_stock_grammar"] = round(out["q8_0_grammar_stock"]["tokens_per_s"] / base, 2)
    return out


def bench_eval_batch(gguf, task, gold: list[dict], settings, n_rows: int = 12) -> dict:
    """A batch of prompts as eval decodes it (tuneforge.decode.gguf_answers: one single-threaded
    decoder per core, decode.DecoderPool) against the same batch on one decoder that
    has every core (the baseline, eval's decoding before it), in the same run, each timed from
    opening the file: the seconds, the ratio, and whether every answer is the same."""
    from tuneforge import decode
    from tuneforge.names import eval_order

    rows = eval_order(gold, n_rows)
    prompts, texts = decode.prompts(task, rows), [r["text"] for r in rows]
    gbnfs, checks = decode.task_gbnfs(task, texts), [decode.task_check(task, t) for t in texts]

    def one_decoder() -> list:
        with decode.Decoder(gguf, settings) as lone:
            return decode.gguf_answers(gguf, prompts, gbnfs, settings=settings, decoder=lone, checks=checks)

    one_s, one = timed(one_decoder)
    per_core_s, per_core = timed(decode.gguf_answers, gguf, prompts, gbnfs, settings=settings, checks=checks)
    # eval's confirmation: a row per decoder at a time, on one pool kept open (stages/eval.py
    # confirmation_answers) against a pool opened for each few rows (the baseline: its code before)
    step = decode.decode_workers(settings, len(rows))
    chunks = [slice(at, at + step) for at in range(0, len(rows), step)]

    def chunked(pool=None) -> list:
        return [a for c in chunks for a in decode.gguf_answers(
            gguf, prompts[c], gbnfs[c], settings=settings, checks=checks[c], decoder=pool)]

    def kept_pool() -> list:
        with decode.DecoderPool(gguf, settings, step) as pool:
            return chunked(pool)

    fresh_s, fresh = timed(chunked)
    kept_s, kept = timed(kept_pool)
    return {"rows": len(rows), "decoders": step,
            "one_decoder_s": round(one_s, 2), "per_core_s": round(per_core_s, 2),
            "ratio": round(one_s / per_core_s, 3), "same_answers": one == per_core,
            "confirmation": {"pool_per_rows_s": round(fresh_s, 2), "kept_pool_s": round(kept_s, 2),
                             "ratio": round(fresh_s / kept_s, 3), "same_answers": fresh == kept == one}}


# ---------------------------------------------------------------- train

class TokenCount:
    """Wraps a data collator; counts the tokens each batch computes on and the real ones."""

    def __init__(self, collator):
        self.collator, self.computed, self.real = collator, 0, 0

    def __call__(self, features):
        batch = self.collator(features)
        ids = batch["input_ids"]
        self.computed += ids.numel()
        mask = batch.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        return batch


def gemm_peak(hidden: int, inter: int, rows: int, reps: int = 5) -> dict:
    """GFLOP/s of torch's matmul on this machine at the model's widest shapes (one batch of
    `rows` tokens through the MLP: [rows, hidden] x [hidden, inter], then back), bf16 and
    fp32, best of `reps`: the ceiling a training step's matrix products could reach here."""
    import torch

    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        g = torch.Generator().manual_seed(0)
        a = torch.randn(rows, hidden, generator=g).to(dtype)
        up = torch.randn(hidden, inter, generator=g).to(dtype)
        down = torch.randn(inter, hidden, generator=g).to(dtype)

        def mlp(a=a, up=up, down=down):
            return (a @ up) @ down

        mlp()  # warm the kernels and thread pool
        best = min(timed(mlp)[0] for _ in range(reps))
        out[name] = round(2 * 2 * rows * hidden * inter / best / 1e9, 1)
    return out


def train_flops_per_token(cfg, seq_len: float, adapted: int = 0) -> float:
    """Matrix-product FLOPs a LoRA training step spends per token: each frozen linear layer
    forward (2 per weight) and its input gradient backward (2 more; a frozen weight gets no
    weight gradient), attention scores and values forward and backward (3 x 4 x seq x hidden
    a layer, causal halves ignored), the LM head on the completion positions only (left out:
    about a quarter of tokens, 1.5% of the total). LoRA's rank-16 products are left out too
    (under 3%). With train.lora_layers (`adapted` > 0) the blocks below the adapted ones run
    forward only. An estimate of the work, the same formula every run: what `peak_share` means."""
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = h * cfg.num_key_value_heads // cfg.num_attention_heads
    linear = h * h + 2 * h * kv + h * h + 3 * h * inter   # weights of one block
    attention = 4 * seq_len * h                            # one block's forward
    backward = adapted or layers                           # blocks the backward pass reaches
    return (2 * linear + attention) * layers + (2 * linear + 2 * attention) * backward


# where a step's time goes: the profiler's self CPU time by operator, in these groups (first match)
STEP_GROUPS = (
    ("matmul", ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::matmul", "mkldnn")),
    ("attention kernel", ("scaled_dot_product",)),
    ("compiled blocks (norms, rotary, SiLU, adapters' adds, casts)", ("CompiledFxGraph", "Compiled",
                                                                      "Torch-Compiled", "TorchDynamo")),
    ("LM head loss and token accuracy", ("log_softmax", "nll_loss", "argmax", "cross_entropy")),
    ("optimizer and gradient clipping", ("adamw", "Optimizer", "linalg_vector_norm", "clip", "AccumulateGrad")),
    ("copies and casts", ("aten::copy_", "aten::_to_copy", "aten::fill_", "aten::to", "aten::zero")),
)


def step_shares(trainer) -> dict:
    """Run `trainer` under torch's profiler; share of self CPU time per STEP_GROUPS group (the
    rest under `other`). The profile names where the time outside the matrix products goes."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        trainer.train()
    totals: dict[str, float] = {}
    for ev in prof.key_averages():
        group = next((g for g, keys in STEP_GROUPS if any(k in ev.key for k in keys)), "other")
        totals[group] = totals.get(group, 0.0) + ev.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {g: round(t / whole, 3) for g, t in sorted(totals.items(), key=lambda kv: -kv[1])}


def v13_loss_trainer():
    """The train stage's trainer with the loss v13 trained with: the LM head over the union of
    the batch's completion positions, the same positions in every row (transformers'
    `logits_to_keep`), where the stage's now projects each row's own. The same loss value;
    kept here so that the v13 baseline runs v13's step, not today's."""
    import torch
    import torch.nn.functional as F

    from tuneforge.trainer import IGNORE, CompletionLossTrainer

    class V13LossTrainer(CompletionLossTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            keep = (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(1)
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           use_cache=False, logits_to_keep=keep).logits
            targets = labels[:, keep + 1]
            counted = targets != IGNORE
            n = num_items_in_batch if num_items_in_batch is not None else counted.sum()
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                   reduction="sum") / torch.as_tensor(n).clamp(min=1)
            with torch.no_grad():  # v13 logged token accuracy too
                self._metrics["train"]["mean_token_accuracy"].append(
                    (((logits.argmax(-1) == targets) & counted).sum() / counted.sum().clamp(min=1)).item())
            return loss

    return V13LossTrainer


def bench_train(params: Params, task: str, steps: int = 20) -> dict:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from tuneforge.llm import load_sft, lora_config, sft_config, token_lengths, train_precision
    from tuneforge.trainer import CompletionLossTrainer, compile_blocks

    paths = TaskPaths.for_task(task)
    cfg = dict(params.train.model_dump(mode="json"), max_steps=steps, logging_steps=steps)
    base = ROOT / paths.base_model
    if not (base / "model.safetensors").is_file():
        raise SystemExit(f"bench train: {base} not built; run dvc repro first")
    tok = AutoTokenizer.from_pretrained(base)
    pool = load_sft(ROOT / paths.sft("train"))
    need = steps * cfg["batch_size"] * cfg["grad_accum"]
    lengths = token_lengths(tok, pool[: need * 2])
    examples = [ex for ex, n in zip(pool, lengths, strict=False) if n <= cfg["max_tokens"]][:need]
    precision = train_precision(cfg, cuda=False)
    out: dict[str, Any] = {"steps": steps, "batch_size": cfg["batch_size"], "max_tokens": cfg["max_tokens"],
                           "examples": len(examples), "threads": torch.get_num_threads(),
                           "precision": precision}

    def fresh_model(dtype=torch.float32, attention: str = "sdpa"):
        torch.manual_seed(cfg["seed"])
        return AutoModelForCausalLM.from_pretrained(base, dtype=dtype, attn_implementation=attention)

    def stage_trainer(scratch: str, n_steps: int, settings: dict = cfg, cls=CompletionLossTrainer):
        args = sft_config(dict(settings, max_steps=n_steps, logging_steps=n_steps), scratch, cuda=False,
                          precision=precision)
        args.disable_tqdm = True
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = fresh_model(dtype, settings["attention"])
        trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(examples),
                      processing_class=tok, peft_config=lora_config(settings, model))
        if settings["compile"]:  # as the train stage: the untimed step below pays the cold compile
            compile_blocks(trainer.model)
        return trainer

    def stage_run(settings: dict, cls=CompletionLossTrainer) -> tuple[dict, Any]:
        with tempfile.TemporaryDirectory() as scratch:  # one untimed step: thread pools, kernels
            stage_trainer(scratch, 1, settings, cls).train()
        with tempfile.TemporaryDirectory() as scratch:
            trainer = stage_trainer(scratch, steps, settings, cls)
            trainer.data_collator = counter = TokenCount(trainer.data_collator)
            dt, result = timed(trainer.train)
        return {"s": round(dt, 2), "real_tokens": counter.real, "computed_tokens": counter.computed,
                "tokens_per_s": round(counter.real / dt, 1), "examples_per_s": round(len(examples) / dt, 3),
                "real_share": round(counter.real / counter.computed, 4),
                "train_loss": round(result.training_loss, 4), "compiled": settings["compile"],
                "attention": settings["attention"], "lora_layers": settings["lora_layers"]}, trainer

    torch.backends.mkldnn.deterministic = True  # as the train stage
    # ours: the train stage's trainer and settings
    out["ours"], trainer = stage_run(cfg)
    # the step the v13 build trained with (torch's fused attention kernel, every block adapted,
    # the LM head over the batch's union of completion positions): how many more examples a
    # second the stage reads now
    before = dict(cfg, attention="sdpa", lora_layers=0)
    out["v13_settings"], _ = stage_run(before, v13_loss_trainer())
    out["v13_settings"]["loss"] = "union of the batch's completion positions"
    out["examples_ratio"] = round(out["ours"]["examples_per_s"] / out["v13_settings"]["examples_per_s"], 2)
    # where a step's time goes (a short profiled run of the stage's settings)
    with tempfile.TemporaryDirectory() as scratch:
        out["step_shares"] = step_shares(stage_trainer(scratch, min(steps, 6)))
    # the machine's own matmul rate at the model's shapes, and training's share of it
    mcfg = trainer.model.get_base_model().config
    ours = out["ours"]
    avg_len = ours["computed_tokens"] / (steps * cfg["batch_size"])
    out["gemm_peak"] = gemm_peak(mcfg.hidden_size, mcfg.intermediate_size, cfg["batch_size"] * round(avg_len))
    flops = train_flops_per_token(mcfg, avg_len, cfg["lora_layers"])
    out["flops_per_token"] = round(flops)
    peak = out["gemm_peak"]["bf16" if precision == "bf16" else "fp32"]
    out["peak_share"] = round(ours["computed_tokens"] / ours["s"] * flops / (peak * 1e9), 3)

    # baseline: plain Trainer, prompt masked out of the loss, each batch padded to its longest
    def encode(ex: dict) -> dict:
        prompt = tok.apply_chat_template(ex["prompt"], add_generation_prompt=True, tokenize=True)
        full = tok.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True)
        prompt, full = (x["input_ids"] if hasattr(x, "keys") else x for x in (prompt, full))
        return {"input_ids": full, "attention_mask": [1] * len(full),
                "labels": [-100] * len(prompt) + full[len(prompt):]}

    data = Dataset.from_list([encode(ex) for ex in examples])

    def plain_trainer(padding: str, n_steps: int, bf16: bool = False) -> dict:
        with tempfile.TemporaryDirectory() as scratch:
            args = TrainingArguments(
                output_dir=scratch, seed=cfg["seed"], max_steps=n_steps,
                per_device_train_batch_size=cfg["batch_size"], learning_rate=cfg["learning_rate"],
                lr_scheduler_type=cfg["lr_scheduler"], warmup_steps=cfg["warmup_steps"],
                logging_steps=n_steps, save_strategy="no", report_to=[], use_cpu=True, bf16=bf16,
                disable_tqdm=True, dataloader_num_workers=0)
            counter = TokenCount(DataCollatorForSeq2Seq(
                tok, padding=padding, max_length=cfg["max_tokens"], label_pad_token_id=-100))
            # the plain recipe: every block adapted, transformers' default attention kernel
            trainer = Trainer(model=get_peft_model(fresh_model(), lora_config(dict(cfg, lora_layers=0))), args=args,
                              train_dataset=data, data_collator=counter)
            dt, _ = timed(trainer.train)
        return {"steps": n_steps, "s": round(dt, 2), "real_tokens": counter.real,
                "computed_tokens": counter.computed, "tokens_per_s": round(counter.real / dt, 1),
                "real_share": round(counter.real / counter.computed, 4)}

    # the headline baseline pads each batch to its longest example (the collator's default);
    # padding to train.max_tokens (the fixed-length recipe) is slow, so it runs 5 steps
    out["baseline_padded"] = plain_trainer("longest", steps)
    out["baseline_max_length"] = plain_trainer("max_length", min(steps, 5))
    # not the baseline: the plain Trainer with bf16 autocast, to show how much of the gain is
    # the precision alone and how much is the stage's batching and loss
    if precision == "bf16":
        out["plain_padded_bf16"] = plain_trainer("longest", steps, bf16=True)
    out["ratio_max_length"] = round(out["ours"]["tokens_per_s"]
                                    / out["baseline_max_length"]["tokens_per_s"], 2)
    out["train_tokens_per_s"] = out["ours"]["tokens_per_s"]
    out["real_token_share"] = out["ours"]["real_share"]
    out["ratio"] = round(out["ours"]["tokens_per_s"] / out["baseline_padded"]["tokens_per_s"], 2)
    return out


# ---------------------------------------------------------------- data stages
