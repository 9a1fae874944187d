"""Hugging Face model plumbing for the model stages: tiny test models, SFT data
collation, greedy generation. (The base-model registry is tuneforge.base_models.)

torch/transformers are imported inside the functions that need them, so importing
this module (for the data helpers) stays cheap.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tuneforge.config import key_line
from tuneforge.io import read_jsonl, write_json
from tuneforge.names import SIDECAR
from tuneforge.names.shapes import TinyBase
from tuneforge.toolchain import MODEL_PACKAGES, check_toolchain, toolchain  # noqa: F401 (the stages import them here)

log = logging.getLogger(__name__)

@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp dir beside `path`; swap it in for `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# ---------------------------------------------------------------- tiny models for tests

def build_tiny_model(tokenizer, out_dir: str | Path, *, hidden: int = 64, layers: int = 2,
                     heads: int = 4, kv_heads: int = 2, intermediate: int = 128,
                     seed: int = 0) -> Path:
    """A random-weight llama with the given tokenizer: the whole chain (train, merge,
    convert, quantize, eval) runs on it in seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=2048, tie_word_embeddings=True, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).to(torch.float32)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / SIDECAR, TinyBase(name="tiny-random-llama", source="tiny", seed=seed,
                                           toolchain=toolchain()).model_dump(mode="json"))
    return Path(out_dir)


# ---------------------------------------------------------------- SFT data

def sft_example(row: dict) -> dict:
    """An exported SFT row -> trl's conversational prompt/completion form, so the loss
    falls on the assistant turn only."""
    messages = row["messages"]
    roles = [m["role"] for m in messages]
    if roles[-1] != "assistant" or "assistant" in roles[:-1]:
        raise ValueError(f"row {row.get('id')}: expected one final assistant turn, got {roles}")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags (/proc/cpuinfo's words), or None where the file cannot be read:
    what native_bf16 and trainer.matmul_isa decide from."""
    try:
        return set(Path(cpuinfo).read_text(encoding="ascii", errors="replace").split())
    except OSError:
        return None


def native_bf16(cuda: bool) -> bool:
    """Whether the hardware multiplies bf16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 / AMX (on the 2-core EPYC here bf16 matmuls run 3.7x fp32's rate; a
    CPU without them would emulate bf16, slower than fp32)."""
    import torch

    if cuda:
        return torch.cuda.is_bf16_supported()
    return bool((cpu_flags() or set()) & {"avx512_bf16", "amx_bf16"})


PRECISIONS = ("bf16", "fp32", "auto")


def _where(path: str | Path, keys: list[str]) -> str:
    line = key_line(path, keys)
    return f"{path}:{line}" if line else str(path)


def train_precision(cfg: dict, cuda: bool, params_file: str | Path = "params.yaml") -> str:
    """The precision training runs in, from train.precision: 'bf16' (bf16 base weights + bf16
    autocast, fp32 adapter) or 'fp32', as written, on any hardware (a CPU without native bf16
    emulates it, slower); 'auto' picks bf16 where the hardware multiplies it natively, else fp32.
    An explicit value is part of DVC's key; what 'auto' chose is not (DVC keys on the text
    'auto'), so the train stage writes it into the adapter sidecar (a DVC output, hence in the
    key of every later stage) and its receipt."""
    if "bf16" in cfg:
        raise ValueError(f"{_where(params_file, ['train', 'bf16'])}: train.bf16 was "
                         "replaced by train.precision: bf16 | fp32 | auto")
    want = cfg.get("precision")
    if want not in PRECISIONS:
        raise ValueError(f"{_where(params_file, ['train', 'precision'])}: train.precision "
                         f"is {want!r}; use one of {', '.join(PRECISIONS)}")
    if want == "auto":
        return "bf16" if native_bf16(cuda) else "fp32"
    if want == "bf16" and not native_bf16(cuda):
        log.warning("train.precision bf16 on hardware without native bf16: emulated, slower than fp32 "
                    "(set fp32 for speed; the result then differs, and so does DVC's key)")
    return want


def sft_config(cfg: dict, out_dir: str, cuda: bool, precision: str = "fp32", save_every: int = 0):
    """trl settings of the train stage (the benchmark trains with the same ones). `save_every`
    > 0: a resumable checkpoint in out_dir every that many steps, only the latest kept.

    Batches are drawn length-grouped (examples of similar length together, seeded) and
    padded to their longest: on CPU this beat trl's padding-free packing, whose
    block-diagonal attention mask takes a slow masked-attention path."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=out_dir, seed=cfg["seed"], data_seed=cfg["seed"],
        max_steps=cfg["max_steps"] or -1, num_train_epochs=cfg["epochs"],
        per_device_train_batch_size=cfg["batch_size"], per_device_eval_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["grad_accum"], learning_rate=cfg["learning_rate"],
        lr_scheduler_type=cfg["lr_scheduler"], warmup_steps=cfg["warmup_steps"],
        weight_decay=0.0, max_grad_norm=1.0, logging_steps=cfg["logging_steps"],
        save_strategy="steps" if save_every else "no", save_steps=save_every or 500, save_total_limit=1,
        eval_strategy="no", report_to=[], disable_tqdm=False,
        padding_free=False, max_length=None,  # over-long rows were dropped up front
        train_sampling_strategy="group_by_length",
        completion_only_loss=True, prediction_loss_only=True,
        # trl defaults checkpointing on; transformers 5 names it activation_checkpointing
        activation_checkpointing=cuda and cfg["gradient_checkpointing"],
        bf16=precision == "bf16", fp16=False, use_cpu=not cuda, dataloader_num_workers=0,
    )


def lora_config(cfg: dict, model=None):
    """peft's LoRA settings from the train section. train.lora_layers N > 0 adapts only the top
    N decoder blocks of `model` (needed then). Why the top: autograd stops below the lowest
    block that holds a trainable weight, so the blocks under it run forward only (on 2 cores
    the top half cut a step by about a third: `make bench ONLY=train`)."""
    from peft import LoraConfig

    targets, layers = cfg["target_modules"], None
    if cfg["lora_layers"]:
        if model is None:
            raise ValueError("lora_config: train.lora_layers needs the model to count its blocks")
        n, blocks = cfg["lora_layers"], model.config.num_hidden_layers
        if n > blocks:
            raise ValueError(f"train.lora_layers {n}: the base model has only {blocks} decoder blocks")
        layers = list(range(blocks - n, blocks))
        if targets == "all-linear":  # peft takes a block list only beside module names, not its shorthand
            targets = linear_names(model)
    return LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"],
                      lora_dropout=cfg["lora_dropout"], target_modules=targets,
                      layers_to_transform=layers, bias="none", task_type="CAUSAL_LM")


def linear_names(model) -> list[str]:
    """What peft's `all-linear` names: the last name of every linear layer but the output head."""
    import torch

    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not head})


def load_sft(path: str | Path) -> list[dict]:
    return [sft_example(r) for r in read_jsonl(path)]


def budget_order(rows: list[dict], cfg: dict, num_processes: int = 1) -> tuple[list[dict], int]:
    """The SFT rows in the order the train stage reads them, and how many its step budget plans
    to read (0: no budget, every row): kind-balanced (train.kind_balance), hand-labeled rows
    first within a kind when train.prefer_human_labels. train and tools.replay_sample both ask
    this, so the rows a replay experiment picks are the ones training reads."""
    planned = cfg["max_steps"] * cfg["batch_size"] * cfg["grad_accum"] * num_processes
    prefer = (lambda r: r.get("label_source") == "human") if cfg["prefer_human_labels"] else None
    return balanced_order(rows, cfg["kind_balance"], planned, prefer=prefer), planned


def balanced_order(rows: list[dict], alpha: float, n: int, key: str = "kind",
                   prefer: Callable[[dict], bool] | None = None) -> list[dict]:
    """`rows` reordered so that the first `n` hold each `key` value in proportion to
    count**alpha: 1 keeps the export's mix, 0 draws every value equally (as far as its rows
    last). A step budget sees a few hundred rows of a mix that is 45% fixes and under 2%
    deprecations; this lets the rare kinds be learned. Within a value, and for the rows
    after the first n, export order (a seeded shuffle) is kept, so the result is seeded.
    `prefer` (train.prefer_human_labels: hand-labeled rows): within a value, the rows it
    picks come first, so a step budget reads them before any other row of their kind; the
    kind mix is the same either way."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"kind balance alpha must be within [0, 1], got {alpha}")
    preferred = {i for i, row in enumerate(rows) if prefer(row)} if prefer else set()
    if (alpha == 1 and not preferred) or not n or n >= len(rows):
        return list(rows)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row[key], []).append(i)
    for k in groups:  # stable: export order among the preferred, then among the rest
        groups[k].sort(key=lambda i: i not in preferred)
    weight = {k: len(idx) ** alpha for k, idx in groups.items()}
    quota: dict[str, int] = {}
    open_, left = sorted(groups), n
    while True:  # a value whose share exceeds its rows gives them all; the rest share again
        total = sum(weight[k] for k in open_)
        full = [k for k in open_ if left * weight[k] / total >= len(groups[k])]
        if not full:
            break
        for k in full:
            quota[k] = len(groups[k])
            left -= quota[k]
            open_.remove(k)
    share = {k: left * weight[k] / total for k in open_}
    quota.update({k: int(share[k]) for k in open_})
    by_remainder = sorted(open_, key=lambda k: (int(share[k]) - share[k], k))
    for k in by_remainder[: left - sum(quota[k] for k in open_)]:
        quota[k] += 1
    first = sorted(i for k, idx in groups.items() for i in idx[: quota[k]])
    chosen = set(first)
    return [rows[i] for i in first] + [r for i, r in enumerate(rows) if i not in chosen]


def token_lengths(tokenizer, examples: list[dict]) -> list[int]:
    """Tokens of each rendered prompt+completion, as the trainer will see them."""
    out = []
    for ex in examples:
        ids = tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        out.append(len(ids))
    return out


# ---------------------------------------------------------------- generation

def hf_generate(model_dir: str | Path, prompts: list[list[dict]], max_new_tokens: int,
                desc: str = "generate") -> list[str]:
    """Greedy transformers generation, one prompt at a time (no padding effects)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    outs = []
    with torch.inference_mode():
        for messages in tqdm(prompts, desc=desc, unit="ex"):
            enc = tok.apply_chat_template(messages, add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            outs.append(tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return outs

