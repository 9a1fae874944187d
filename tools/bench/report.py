"""make bench: the figures users compare, each beside a baseline measured in the same run.

Run: python -m tuneforge.bench [--only build,data,train,decode,sha256] [--sizes 10000,100000]
Out: reports/bench.json (sections merged, so --only refreshes one) and the README table
     between the bench markers.

Sections (issue #6):
  build   a clean clone of HEAD built from scratch, stage by stage (full_build_s,
          peak_rss_mb), its outputs compared with the committed dvc.lock (bit-identical
          check), then one eval.* param changed (incremental_ratio), then a no-op
          `dvc repro` against `dvc status` (noop_repro_s), and the same two commands on
          a chain of as many empty `cp` stages (dvc_floor: DVC's own no-op ratio)
  data    backfill -> export on entries resampled from the real snapshot, against a
          plain-Python `json` implementation of the same steps (entries_per_s); at the
          largest size, the floor: four stage start-ups plus the shared labeler's time
          spread over every core, and the largest ratio it leaves (floor)
  train   20 LoRA steps with the train stage's settings (padding-free) against a plain
          transformers Trainer padding each batch (train_tokens_per_s, real-token share)
  decode  the Q8_0 GGUF under eval's grammar against transformers `generate` on the
          merged model, same prompts (decode_tokens_per_s)
  sha256  pinning the GGUFs (hashlib, as quantize/eval do) against `sha256sum`

Needs a built pipeline in the working tree (models/, data/exports) for train, decode
and sha256; `build` needs a committed, clean tree. Absolute times are printed; only
ratios carry targets, and no test asserts a time.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from tuneforge.io import canonical_json, load_params, read_jsonl, sha256_file, write_json
from tuneforge.verify_repro import build_clean_clone, compare_locks, pipeline_stages

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "bench.json"
README = ROOT / "README.md"
DATA_STAGES = ("backfill", "evidence", "score", "export")  # what the data section runs and times
TARGETS = {
    "entries_per_s": "≥ 100k entries/s at 1M, ≥ 20× the baseline",
    "noop_repro_s": "≤ 1.2× `dvc status`",
    "train_tokens_per_s": "≥ 2× the padded Trainer, ≥ 90% real tokens",
    "decode_tokens_per_s": "≥ 5× transformers `generate`",
    "incremental_ratio": "≤ 10% of the full build",
    "sha256_mb_per_s": "≥ 0.8× `sha256sum`",
    "full_build_s": "≤ 15 min on 2 cores",
    "peak_rss_mb": "reported",
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def run(cmd: list[str], cwd: Path | str = ROOT, env: dict | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n"
                           f"{out.stderr[-4000:]}")
    return out.stdout


# ---------------------------------------------------------------- sha256

def bench_sha256(params: dict, reps: int = 3) -> dict:
    gguf_dir = ROOT / params["paths"]["gguf_dir"]
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

def bench_decode(params: dict, n_prompts: int = 6) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.gguf_tools import chat_greedy, json_grammar, load_llama, open_gguf, verify_pin
    from tuneforge.tasks import get_task

    paths, cfg = params["paths"], params["eval"]
    task = get_task(params["task"])
    gold = sorted(read_jsonl(ROOT / paths["gold"]), key=lambda r: hashlib.sha256(
        r["text"].encode()).hexdigest())[:n_prompts]
    prompts = [task.messages(r["text"], r.get("hint"), r.get("product")) for r in gold]
    gguf = ROOT / paths["gguf_dir"] / f"{params['convert']['model_name']}-Q8_0.gguf"
    verify_pin(gguf)
    threads = cfg["n_threads"] or os.cpu_count() or 1
    grammar = json_grammar(task.output_model.model_json_schema())
    out: dict[str, Any] = {"prompts": len(prompts), "max_tokens": cfg["max_tokens"]}
    # eval's decoder (grammar checked on the argmax first), llama-cpp-python's stock sampler
    # chain (grammar over the whole vocabulary every token), and free decoding
    def stock():
        return load_llama(gguf, n_ctx=cfg["n_ctx"], n_threads=threads, seed=0, verbose=False)

    def ours():
        return open_gguf(gguf, n_ctx=cfg["n_ctx"], n_threads=threads)

    decoders = {"grammar": (ours, grammar), "grammar_stock": (stock, grammar), "free": (ours, None)}
    texts: dict[str, list[str]] = {}
    for variant, (opener, g) in decoders.items():
        llm = opener()
        chat_greedy(llm, prompts[0], g, 8)  # warm
        tokens, texts[variant], t0 = 0, [], time.perf_counter()
        for p in prompts:
            res = chat_greedy(llm, p, g, cfg["max_tokens"])
            tokens += res["usage"]["completion_tokens"]
            texts[variant].append(res["choices"][0]["message"]["content"])
        dt = time.perf_counter() - t0
        llm.close()
        out[f"q8_0_{variant}"] = {"tokens": tokens, "s": round(dt, 2),
                                  "tokens_per_s": round(tokens / dt, 1)}
    # the speed-up must not change a single answer
    out["grammar_first_same_texts"] = texts["grammar"] == texts["grammar_stock"]

    merged = ROOT / paths["merged"]
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


def bench_train(params: dict, steps: int = 20) -> dict:
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
    from tuneforge.trainer import CompletionLossTrainer

    paths = params["paths"]
    cfg = dict(params["train"], max_steps=steps, logging_steps=steps)
    base = ROOT / paths["base_model"]
    if not (base / "model.safetensors").is_file():
        raise SystemExit(f"bench train: {base} not built; run dvc repro first")
    tok = AutoTokenizer.from_pretrained(base)
    pool = load_sft(ROOT / paths["exports_dir"] / "sft" / "train.jsonl")
    need = steps * cfg["batch_size"] * cfg["grad_accum"]
    lengths = token_lengths(tok, pool[: need * 2])
    examples = [ex for ex, n in zip(pool, lengths, strict=False) if n <= cfg["max_tokens"]][:need]
    precision = train_precision(cfg, cuda=False)
    out: dict[str, Any] = {"steps": steps, "batch_size": cfg["batch_size"], "max_tokens": cfg["max_tokens"],
                           "examples": len(examples), "threads": torch.get_num_threads(),
                           "precision": precision}

    def fresh_model(dtype=torch.float32):
        torch.manual_seed(cfg["seed"])
        return AutoModelForCausalLM.from_pretrained(base, dtype=dtype)

    def stage_trainer(scratch: str, n_steps: int):
        args = sft_config(dict(cfg, max_steps=n_steps, logging_steps=n_steps), scratch, cuda=False,
                          precision=precision)
        args.disable_tqdm = True
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        return CompletionLossTrainer(model=fresh_model(dtype), args=args,
                                     train_dataset=Dataset.from_list(examples),
                                     processing_class=tok, peft_config=lora_config(cfg))

    with tempfile.TemporaryDirectory() as scratch:  # one untimed step: thread pools, kernels
        stage_trainer(scratch, 1).train()
    # ours: the train stage's trainer and settings
    with tempfile.TemporaryDirectory() as scratch:
        trainer = stage_trainer(scratch, steps)
        trainer.data_collator = counter = TokenCount(trainer.data_collator)
        dt, result = timed(trainer.train)
    out["ours"] = {"s": round(dt, 2), "real_tokens": counter.real, "computed_tokens": counter.computed,
                   "tokens_per_s": round(counter.real / dt, 1),
                   "real_share": round(counter.real / counter.computed, 4),
                   "train_loss": round(result.training_loss, 4)}

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
            trainer = Trainer(model=get_peft_model(fresh_model(), lora_config(cfg)), args=args,
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

def real_entries(snapshot: Path) -> list[tuple[str, str | None, str | None, str]]:
    """(text, hint, version, product) of every entry the parsers find in the snapshot."""
    from tuneforge.harvest import iter_snapshot
    from tuneforge.sources import UnknownFormatError, detect_format, product_from_path
    from tuneforge.text import normalise_ws

    out = []
    for name, raw in iter_snapshot(snapshot):
        text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
        try:
            fmt = detect_format(name, text)
        except UnknownFormatError:
            continue
        product = product_from_path(name)
        for e in fmt.parse(name, text):
            body = normalise_ws(e.text)
            if body:
                out.append((body, normalise_ws(e.hint) if e.hint else None, e.version, product))
    return out


def write_resampled(entries: list, n: int, seed: int, out_dir: Path, per_file: int = 5000) -> int:
    """n entries drawn with replacement, written as Markdown changelogs, one product per
    folder; returns the number of bullets written."""
    rng = random.Random(seed)
    by_product: dict[str, list] = defaultdict(list)
    for text, hint, version, product in rng.choices(entries, k=n):
        # a version-like heading for entries without one: the Markdown sniffer wants one
        by_product[product].append((version or "0.0.0", hint or "", text))
    written = 0
    for product, rows in sorted(by_product.items()):
        rows.sort(key=lambda r: (r[0], r[1]))
        for k in range(0, len(rows), per_file):
            lines, last = ["# Changelog", ""], (None, None)
            for version, hint, text in rows[k:k + per_file]:
                if version != last[0]:
                    lines += [f"## {version}", ""]
                    last = (version, None)
                if hint != last[1]:
                    if hint:
                        lines += [f"### {hint}", ""]
                    last = (version, hint)
                lines.append(f"- {text}")
                written += 1
            path = out_dir / product / f"CHANGELOG-{k // per_file:04d}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def plain_pipeline(src: Path, out: Path, gold_path: Path, task_name: str, cfg: dict) -> dict:
    """The same steps in plain Python and `json`, one record at a time: parse, redact,
    dedupe, label, score, export (gold excluded, seeded split). The baseline."""
    from tuneforge.redact import redact
    from tuneforge.tasks import get_task
    from tuneforge.text import content_key, normalise_ws

    task = get_task(task_name)
    out.mkdir(parents=True, exist_ok=True)
    seen, n_in = set(), 0
    step_s, t0 = {}, time.perf_counter()
    with open(out / "entries.jsonl", "w", encoding="utf-8") as f:  # backfill
        for path in sorted(src.rglob("*.md")):
            version = hint = None
            product = path.relative_to(src).parts[0]
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("## "):
                    version, hint = line[3:].strip(), None
                elif line.startswith("### "):
                    hint = line[4:].strip()
                elif line.startswith("- "):
                    n_in += 1
                    text = normalise_ws(line[2:])
                    if not cfg["backfill"]["min_chars"] <= len(text) <= cfg["backfill"]["max_chars"]:
                        continue
                    text, _ = redact(text)
                    key = content_key(text)
                    if key in seen:
                        continue
                    seen.add(key)
                    f.write(json.dumps({"id": key, "text": text, "hint": hint, "product": product,
                                        "version": version}) + "\n")
    step_s["backfill"], t0 = time.perf_counter() - t0, time.perf_counter()
    label_s = 0.0  # the rule labeler's own time: the stages call the same function
    with open(out / "entries.jsonl", encoding="utf-8") as fin, \
            open(out / "evidence.jsonl", "w", encoding="utf-8") as fout:  # evidence
        for line in fin:
            row = json.loads(line)
            t_label = time.perf_counter()
            row["label"], row["rule"] = task.rule_label(row["text"], row["hint"], row["product"],
                                                        row["version"])
            label_s += time.perf_counter() - t_label
            fout.write(json.dumps(row) + "\n")
    step_s["evidence"], t0 = time.perf_counter() - t0, time.perf_counter()
    with open(out / "evidence.jsonl", encoding="utf-8") as fin, \
            open(out / "scored.jsonl", "w", encoding="utf-8") as fout:  # score
        for line in fin:
            row = json.loads(line)
            problems = task.style_problems(row["label"], row["text"], row["hint"])
            content_free = task.is_content_free(row["text"])
            row["accepted"] = not problems and row["rule"] != task.abstain_rule and not (
                content_free and task.label_class(row["label"]) != task.abstain_class)
            fout.write(json.dumps(row) + "\n")
    step_s["score"], t0 = time.perf_counter() - t0, time.perf_counter()
    gold = {content_key(r["text"]) for r in read_jsonl(gold_path)}
    counts: dict[str, Any] = {"in": n_in, "train": 0, "valid": 0}
    with open(out / "scored.jsonl", encoding="utf-8") as fin, \
            open(out / "train.jsonl", "w", encoding="utf-8") as ftrain, \
            open(out / "valid.jsonl", "w", encoding="utf-8") as fvalid:  # export
        for line in fin:
            row = json.loads(line)
            if not row["accepted"] or row["id"] in gold:
                continue
            messages = task.messages(row["text"], row["hint"], row["product"])
            messages.append({"role": "assistant", "content": task.render_label(row["label"])})
            u = int(hashlib.sha256(f"split:{row['id']}".encode()).hexdigest()[:8], 16) / 2**32
            split = "valid" if u < cfg["export"]["valid_fraction"] else "train"
            (fvalid if split == "valid" else ftrain).write(json.dumps({"messages": messages}) + "\n")
            counts[split] += 1
    step_s["export"] = time.perf_counter() - t0
    counts["step_s"], counts["label_s"] = step_s, label_s
    return counts


def bench_data(params: dict, sizes: list[int]) -> dict:
    paths = params["paths"]
    t0 = time.perf_counter()
    entries = real_entries(ROOT / paths["snapshot"])
    out: dict[str, Any] = {"real_entries": len(entries),
                           "sample_s": round(time.perf_counter() - t0, 1), "sizes": {}}
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}", TQDM_DISABLE="1")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="tuneforge-bench-data-") as tmp:
            work = Path(tmp)
            written = write_resampled(entries, n, params["export"]["seed"], work / "snapshot")
            p = json.loads(json.dumps(params))
            p["paths"].update(snapshot="snapshot", gold=str(ROOT / paths["gold"]),
                              human_labels=str(ROOT / paths["human_labels"]))
            (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
            stage_s = {}
            for stage in DATA_STAGES:
                stage_s[stage] = round(timed(run, [sys.executable, "-m", f"stages.{stage}"],
                                             work, env)[0], 2)
            ours_s = sum(stage_s.values())
            receipt = json.loads((work / paths["receipts_dir"] / "backfill.json").read_text())
            export = json.loads((work / paths["receipts_dir"] / "export.json").read_text())
            # Markdown rendering merges or drops a few odd entries (~0.2%); more would mean
            # the figure counts work the stages never did
            if abs(receipt["counts"]["records_in"] - written) > 0.01 * written:
                raise RuntimeError(f"bench data: {written} entries written, backfill read "
                                   f"{receipt['counts']['records_in']}")
            base_s, counts = timed(plain_pipeline, work / "snapshot", work / "plain",
                                   ROOT / paths["gold"], params["task"], params)
        out["sizes"][str(n)] = {
            "entries": written, "parsed": receipt["counts"]["records_in"],
            "unique": receipt["counts"]["records_out"],
            "stage_s": stage_s, "s": round(ours_s, 2),
            "entries_per_s": round(written / ours_s),
            "sft_rows": export["counts"]["records_out"],
            "baseline_json": {"s": round(base_s, 2), "entries_per_s": round(written / base_s),
                              "parsed": counts["in"], "sft_rows": counts["train"] + counts["valid"],
                              "step_s": {k: round(v, 2) for k, v in counts["step_s"].items()},
                              "label_s": round(counts["label_s"], 2)},
            "ratio": round(base_s / ours_s, 2)}
        print(f"bench data {n}: {out['sizes'][str(n)]}", flush=True)
    largest = out["sizes"][str(max(sizes))]
    largest["floor"] = data_floor(largest, env)
    out["entries_per_s"] = largest["entries_per_s"]
    out["ratio"] = largest["ratio"]
    out["at_entries"] = max(sizes)
    return out


def data_floor(size: dict, env: dict, reps: int = 3) -> dict:
    """The least time the four stages can take with this labeler, measured in this run:
    four interpreters that import a stage and exit, plus the baseline's labeling time
    spread over every core (the stages call the same labeler on the same unique
    entries). The baseline's time over it is the largest ratio they could reach."""
    startup = {}
    for stage in DATA_STAGES:
        startup[stage] = round(min(timed(run, [sys.executable, "-c", f"import stages.{stage}"],
                                         ROOT, env)[0] for _ in range(reps)), 2)
    cores = os.cpu_count() or 1
    label_s = size["baseline_json"]["label_s"]
    floor_s = sum(startup.values()) + label_s / cores
    return {"stage_startup_s": startup, "label_s": label_s, "cores": cores,
            "floor_s": round(floor_s, 2), "max_ratio": round(size["baseline_json"]["s"] / floor_s, 2)}


# ---------------------------------------------------------------- build

def noop_times(repo: Path, env: dict | None = None, reps: int = 3) -> tuple[float, float]:
    """Best-of-`reps` seconds of a no-op `dvc status` and `dvc repro` in `repo`, alternated
    so that machine noise falls on both alike."""
    status, repro = [], []
    for _ in range(reps):
        status.append(timed(run, ["dvc", "status"], repo, env)[0])
        repro.append(timed(run, ["dvc", "repro"], repo, env)[0])
    return min(status), min(repro)


def dvc_noop_floor(n_stages: int, reps: int = 3) -> dict:
    """DVC's own no-op ratio on a pipeline of the same length with nothing in it: a chain
    of `cp` stages, one small file in and out each, committed. What `dvc repro` costs
    beyond `dvc status` there is DVC's, whatever the stages hold."""
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-dvc-floor-") as tmp:
        toy = Path(tmp)
        env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
                   GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
        run(["git", "init", "-q"], toy, env)
        run(["dvc", "init", "-q"], toy, env)
        (toy / "s0.txt").write_text("x\n")
        stages = {f"s{i}": {"cmd": f"cp s{i - 1}.txt s{i}.txt", "deps": [f"s{i - 1}.txt"],
                            "outs": [f"s{i}.txt"]} for i in range(1, n_stages + 1)}
        (toy / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
        run(["dvc", "repro", "-q"], toy, env)
        run(["git", "add", "-A"], toy, env)
        run(["git", "commit", "-qm", "toy pipeline"], toy, env)
        status, repro = noop_times(toy, env, reps)  # measured as the real pipeline's
    return {"stages": n_stages, "noop_repro_s": round(repro, 2),
            "dvc_status_s": round(status, 2), "noop_ratio": round(repro / status, 3)}


def bench_build(params: dict) -> dict:
    """Clean build of HEAD in a scratch clone; the incremental rebuild; the no-op repro."""
    # what the earlier sections of this same run wrote does not count as uncommitted work
    ours = {str(REPORT.relative_to(ROOT)), str(README.relative_to(ROOT))}
    dirty = [line[3:] for line in run(["git", "status", "--porcelain", "--untracked-files=no"]
                                      ).splitlines() if line[3:] not in ours]
    if dirty:
        raise SystemExit(f"bench build: commit first (it builds HEAD in a clean clone): {dirty}")
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-build-") as tmp:
        clone = Path(tmp) / "repo"
        stage_s, total_s = build_clean_clone(ROOT, clone)
        rss = {}
        for stage in stage_s:
            receipt = clone / params["paths"]["receipts_dir"] / f"{stage}.json"
            rss[stage] = json.loads(receipt.read_text())["peak_rss_mb"]
        identical, moved, compared = compare_locks(ROOT / "dvc.lock", clone / "dvc.lock", params)

        # incremental: one eval.* param changed (a release gate), then repro
        clone_params = yaml.safe_load((clone / "params.yaml").read_text())
        old = clone_params["eval"]["gates"]["min_kind_agreement"]
        new = round(old - 0.05, 2)
        text = (clone / "params.yaml").read_text()
        needle = f"min_kind_agreement: {old:.2f}"
        if needle not in text:
            raise RuntimeError(f"bench build: {needle!r} not found in params.yaml")
        (clone / "params.yaml").write_text(text.replace(needle, f"min_kind_agreement: {new:.2f}", 1))
        incremental_s, log = timed(run, ["dvc", "repro"], clone)
        reran = sorted({s for s in stage_s if f"Running stage '{s}'" in log})

        status, repro = noop_times(clone)
    return {
        "full_build_s": stage_s, "full_build_total_s": round(total_s, 1),
        "peak_rss_mb": rss,
        "bit_identical": {"identical": identical, "compared": compared, "changed": moved},
        "incremental": {"param": f"eval.gates.min_kind_agreement {old} -> {new}",
                        "s": round(incremental_s, 1), "stages_rerun": reran},
        "incremental_ratio": round(incremental_s / total_s, 4),
        "noop_repro_s": round(repro, 2), "baseline_dvc_status_s": round(status, 2),
        "noop_ratio": round(repro / status, 3),
        "dvc_floor": dvc_noop_floor(len(stage_s)),
    }


# ---------------------------------------------------------------- report

def table(report: dict) -> str:
    s = report.get("sections", {})
    rows = []

    def add(key: str, value: str, baseline: str, ratio: str) -> None:
        rows.append(f"| `{key}` | {value} | {baseline} | {ratio} | {TARGETS[key]} |")

    if d := s.get("data"):
        for n, r in sorted(d["sizes"].items(), key=lambda item: int(item[0])):
            floor = r.get("floor")
            add("entries_per_s", f"{r['entries_per_s']:,} at {int(n):,} entries ({r['s']} s)" + (
                f"; floor with this labeler: four stage start-ups {sum(floor['stage_startup_s'].values()):.2f} s"
                f" + labeling {floor['label_s']} s / {floor['cores']} cores = {floor['floor_s']} s, "
                f"at most {floor['max_ratio']}×" if floor else ""),
                f"{r['baseline_json']['entries_per_s']:,} ({r['baseline_json']['s']} s)", f"{r['ratio']}×")
    if b := s.get("build"):
        floor = b.get("dvc_floor")
        add("noop_repro_s", f"{b['noop_repro_s']} s" + (
            f" (DVC alone, a {floor['stages']}-stage `cp` chain: {floor['noop_repro_s']} s against "
            f"{floor['dvc_status_s']} s, {floor['noop_ratio']}×)" if floor else ""),
            f"`dvc status` {b['baseline_dvc_status_s']} s", f"{b['noop_ratio']}×")
    if t := s.get("train"):
        bf16 = t.get("plain_padded_bf16")
        add("train_tokens_per_s", f"{t['train_tokens_per_s']} tok/s, {t['real_token_share']:.0%} real "
            f"({t.get('precision', 'fp32')})",
            f"padded to longest: {t['baseline_padded']['tokens_per_s']} tok/s, "
            f"{t['baseline_padded']['real_share']:.0%} real; padded to {t.get('max_tokens', 512)}: "
            f"{t['baseline_max_length']['tokens_per_s']} tok/s"
            + (f"; plain Trainer with bf16 autocast: {bf16['tokens_per_s']} tok/s" if bf16 else ""),
            f"{t['ratio']}× ({t['ratio_max_length']}× vs fixed length)")
    if d := s.get("decode"):
        stock = d.get("q8_0_grammar_stock", {}).get("tokens_per_s", "?")
        add("decode_tokens_per_s", f"{d['decode_tokens_per_s']} tok/s (Q8_0, grammar checked on the "
            f"argmax first; stock sampler chain {stock}, free {d['q8_0_free']['tokens_per_s']}; "
            f"same texts: {'yes' if d.get('grammar_first_same_texts') else 'NO'})",
            f"{d['baseline_transformers']['tokens_per_s']} tok/s", f"{d['ratio']}×")
    if b:
        add("incremental_ratio", f"{b['incremental']['s']} s ({b['incremental']['param']})",
            f"full build {b['full_build_total_s']} s", f"{b['incremental_ratio']:.1%}")
    if h := s.get("sha256"):
        add("sha256_mb_per_s", f"{h['sha256_mb_per_s']} MB/s", f"{h['baseline_sha256sum_mb_per_s']} MB/s",
            f"{h['ratio']}×")
    if b:
        # bench.json is written with sorted keys: list the stages in dvc.yaml's order
        order = pipeline_stages(ROOT)

        def per_stage(values: dict) -> str:
            return ", ".join(f"{k} {values[k]}" for k in sorted(values, key=order.index))

        add("full_build_s", f"{b['full_build_total_s'] / 60:.1f} min ({per_stage(b['full_build_s'])})",
            "-", "-")
        add("peak_rss_mb", per_stage(b["peak_rss_mb"]), "-", "-")
    m = report.get("machine", {})
    head = (f"Measured by `make bench` on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"{m.get('memory_gib', '?')} GiB (sections run {', '.join(sorted(report.get('ran', {})))}).")
    return "\n".join([head, "", "| figure | ours | baseline (same run) | ratio | target |",
                      "|---|---|---|---|---|", *rows])


def update_readme(text: str) -> None:
    """The table between the bench markers (tuneforge.readme_sections, shared with make faults)."""
    from tuneforge import readme_sections

    try:
        readme_sections.update(["bench"], README, ROOT, bodies={"bench": text})
    except ValueError as e:
        raise SystemExit(str(e)) from e


SECTIONS = ("sha256", "decode", "train", "data", "build")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tuneforge.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="data section entry counts")
    ap.add_argument("--train-steps", type=int, default=20)
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    params = load_params(ROOT / "params.yaml")
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    report.setdefault("sections", {})
    report.setdefault("ran", {})
    report["machine"] = machine()
    for name in args.only.split(","):
        if name not in SECTIONS:
            ap.error(f"unknown section {name!r}")
        print(f"bench: {name} ...", flush=True)
        t0 = time.perf_counter()
        if name == "data":
            result = bench_data(params, [int(x) for x in args.sizes.split(",")])
        elif name == "train":
            result = bench_train(params, args.train_steps)
        else:
            result = globals()[f"bench_{name}"](params)
        result["bench_s"] = round(time.perf_counter() - t0, 1)
        report["sections"][name] = result
        report["ran"][name] = datetime.date.today().isoformat()
        print(canonical_json({name: result}), flush=True)
        write_json(REPORT, report)
    text = table(report)
    update_readme(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
