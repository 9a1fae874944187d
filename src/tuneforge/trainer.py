"""The train stage's trainer: trl's SFTTrainer with a loss that projects only the
completion positions through the LM head.

Why: the loss counts only positions whose next token is in the completion (the
assistant turn), a third of a changelog example's tokens. trl's fused LM head scores
every position off Triton devices, and computes entropy and top-1 over the 49k-entry
vocabulary for its metrics; on a 2-core CPU that was half of each step (measured by
`make bench ONLY=train`). Here the LM head sees only those positions, row by row (a hook
on its input, `completion_mask`), while the model runs its own forward, so accelerate's
autocast and a DDP wrapper still apply. (transformers' `logits_to_keep` keeps the same
positions in every row of a batch: the union of four rows' completions, which sit at other
offsets behind prompts of other lengths; on commit-messages' first 64 training rows that was
about half as many head rows again as the rows' own.)

Imports torch and trl at module level: only the train stage and the benchmark load it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from tuneforge.llm import cpu_flags

IGNORE = -100
WEIGHTS = "loss_weights"  # the dataset column (and batch key) of per-token loss weights (`weigh`)

# CPU matrix-multiply instruction sets, the most capable first: oneDNN (torch's CPU GEMMs) runs
# bf16 on AMX tiles, else AVX512-BF16, else emulates it; fp32 on AVX-512 or AVX2. Each sums a
# product in another order, so the same train params give other weights on another of these.
CPU_MATMUL_ISAS = (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"),
                   ("avx2", "avx2"))


def matmul_isa(cuda: bool, cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The instruction set training's matrix products ran on: `cuda sm_XY` (the GPU's compute
    capability), or the CPU's best of CPU_MATMUL_ISAS from its flags (`baseline` below AVX2,
    `unknown` where /proc/cpuinfo cannot be read). The train receipt records it, so that
    `make verify-repro` can name a machine of another kind as the reason weights differ."""
    if cuda:
        major, minor = torch.cuda.get_device_capability()
        return f"cuda sm_{major}{minor}"
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return "unknown"
    return next((name for flag, name in CPU_MATMUL_ISAS if flag in flags), "baseline")


def completion_mask(labels: torch.Tensor) -> torch.Tensor:
    """(batch, length) True where a position's next-token label counts: the positions whose
    logits the loss reads, row by row (the last position predicts nothing)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE
    return mask


@contextmanager
def head_on(head: torch.nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """While active, the LM head's input is cut to the masked positions, (batch, length,
    hidden) -> (positions, hidden), so it projects only those: a forward pre-hook, so the
    model's own forward (and whatever wraps it) runs unchanged around it."""

    def cut(module, args):
        (hidden, *rest) = args
        if hidden.shape[:2] != mask.shape:
            raise RuntimeError(f"LM head input {tuple(hidden.shape)} does not match the completion mask "
                               f"{tuple(mask.shape)}: the model sliced its hidden states itself")
        return (hidden[mask], *rest)

    handle = head.register_forward_pre_hook(cut)
    try:
        yield
    finally:
        handle.remove()


class CompletionLossTrainer(SFTTrainer):
    """Loss = mean negative log-likelihood of the completion tokens, as trl's (same value
    in fp32: checked in tests), with the LM head run on completion positions only.
    Logs num_tokens (real tokens seen) and mean_token_accuracy like trl.

    A batch with WEIGHTS (`weigh`, train.field_weights) sums each token's term times its
    weight, still divided by the token count: a weight of 5 on a value's tokens counts them
    as five tokens each."""

    def _set_signature_columns_if_needed(self):
        # transformers drops every dataset column the model's forward does not name; the
        # weights are this loss's, not the model's
        super()._set_signature_columns_if_needed()
        if WEIGHTS not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, WEIGHTS]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:  # sft_config sets prediction_loss_only, so eval never asks
            raise NotImplementedError("CompletionLossTrainer returns the loss only")
        labels = inputs["labels"]
        mask = completion_mask(labels)
        head = self.accelerator.unwrap_model(model).get_output_embeddings()
        with head_on(head, mask):  # logits_to_keep=0: the whole (batch, length) reaches the head, cut there
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           use_cache=False, logits_to_keep=0).logits
        targets = labels[:, 1:][mask[:, :-1]]  # (positions,), as the head's rows
        n = num_items_in_batch if num_items_in_batch is not None else targets.numel()
        weights = inputs.get(WEIGHTS)
        if weights is None:
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        else:  # the weight of the token each position predicts, as targets are read
            per_token = F.cross_entropy(logits.float(), targets, reduction="none")
            loss = (per_token * weights[:, 1:][mask[:, :-1]].to(per_token.dtype)).sum()
        loss = loss / torch.as_tensor(n, device=loss.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as trl: DDP averages the gradients

        mode = "train" if model.training else "eval"
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets).sum()
            total = self.accelerator.gather_for_metrics(torch.as_tensor(targets.numel(), device=loss.device)).sum()
            correct = self.accelerator.gather_for_metrics(correct).sum()
            self._metrics[mode]["mean_token_accuracy"].append(
                (correct / total).item() if total > 0 else 0.0)
            if mode == "train":
                self._total_train_tokens += self.accelerator.gather_for_metrics(
                    inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


def compile_blocks(model: torch.nn.Module) -> int:
    """Regional compilation: compile each repeated decoder block in place with torch.compile
    (inductor), so the ~40% of a CPU step spent outside the matrix products (dtype casts
    around the fp32 LoRA weights, RMSNorm, rotary, SiLU, the adapters' scale-and-add) runs as
    fused kernels. Profiled on SmolLM2-135M, 4 x 376 tokens, 2 cores: 3.5 s -> 2.0 s a step,
    after ~35 s of compiling one block (the others hit its cache: the recipe at
    pytorch.org/tutorials/recipes/regional_compilation.html). dynamic=True compiles once
    for every batch length instead of once per new length.

    Why not accelerate's compile_regions (what `SFTConfig(torch_compile=True)` with regional
    compilation runs): it builds a new module tree whose blocks are OptimizedModule wrappers;
    `nn.Module.compile` keeps the tree, so peft's save and the adapter's tensor names are the
    ones an uncompiled run writes. Returns the number of blocks compiled."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    blocks = [m for m in base.modules() if type(m).__name__ in names]
    if not blocks:
        raise RuntimeError(f"train.compile: {type(base).__name__} names no repeated block in _no_split_modules; "
                           "set train.compile false")
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def _fingerprint(dataset, step: str, arg) -> str:
    """The mapped dataset's fingerprint, from its input's and what the map does: `datasets` cannot
    hash a closure over the tokenizer and would warn and draw a random one on every run."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps([dataset._fingerprint, step, arg]).encode()).hexdigest()[:16]


def _labelled_once(ids: Sequence[int], labels: Sequence[int], want: Sequence[int], what: str, why: str) -> int:
    """Where the token run `want` starts in `ids`, found exactly once among the labelled tokens
    (labels not IGNORE); otherwise a ValueError naming `what` and `why` it matters."""
    n = len(want)
    at = [s for s in range(len(ids) - n + 1)
          if ids[s: s + n] == want and all(t != IGNORE for t in labels[s: s + n])]
    if len(at) != 1:
        raise ValueError(f"{what} found {len(at)} times among the completion's labelled tokens, not once: {why}")
    return at[0]


def unlearn(dataset, tok, fields: list[Sequence[str]]):
    """`dataset` (the trainer's tokenised one: input_ids, labels, and the conversational
    completion) with the value tokens of each row's `fields[i]` keys taken out of the loss
    (labels -100): what the label's source could not know (Task.unknown_fields). A key's value is
    found as the canonical label renders it, ` "key": value`, once among the completion's
    labelled tokens; a row where it is not (another rendering, a tokenisation that merges the
    value with what follows) fails loudly rather than teaching the value after all. With no key
    in any row, `dataset` itself (a task without the hook trains on exactly what trl built)."""
    import json

    if len(fields) != len(dataset):
        raise ValueError(f"{len(fields)} unknown-field lists for {len(dataset)} training rows")
    if not any(fields):
        return dataset

    def mask(row: dict, i: int) -> dict:
        if not fields[i]:
            return row
        label = json.loads(row["completion"][-1]["content"])
        ids, labels = row["input_ids"], list(row["labels"])
        for key in fields[i]:
            head = tok.encode(f' "{key}":', add_special_tokens=False)
            whole = tok.encode(f' "{key}": {json.dumps(label[key], ensure_ascii=False)}', add_special_tokens=False)
            if whole[: len(head)] != head:
                raise ValueError(f"training row {i}: the tokenizer splits `{key}`'s value into its key")
            at = _labelled_once(ids, labels, whole, f"training row {i}: `{key}`'s value {label[key]!r}",
                                "cannot take it out of the loss")
            labels[at + len(head): at + len(whole)] = [IGNORE] * (len(whole) - len(head))
        return {**row, "labels": labels}

    return dataset.map(mask, with_indices=True, desc="Taking unknown label fields out of the loss",
                       new_fingerprint=_fingerprint(dataset, "unlearn", fields))


def weigh(dataset, tok, weights: dict[str, float]):
    """`dataset` (the trainer's tokenised one: input_ids, labels, and the conversational
    completion) with a WEIGHTS column beside input_ids: `weights[key]` on the tokens that spell
    each answer's `key` value, 1.0 elsewhere (train.field_weights). Why: the class and severity
    a label is judged by are ~6 of an answer's ~60 tokens (` "`, the value, `",` each); the free text (subject, action)
    holds most of the loss, so a step budget's gradient goes mostly there.

    The answer's tokens are found as the tokenizer alone gives them, once among the row's
    labelled tokens; a value is its top-level `"key": ` followed by one JSON value (read with
    json's own decoder), and a token is the value's when its characters overlap it (so a
    closing quote merged with the comma, `",`, is weighted too). A row where either is not
    found once fails loudly. No weights: `dataset` itself (no column; the loss is the plain one)."""
    import json

    if not weights:
        return dataset
    decoder = json.JSONDecoder()

    def add(row: dict, i: int) -> dict:
        text = row["completion"][-1]["content"]
        answer = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, labels, want = row["input_ids"], row["labels"], answer["input_ids"]
        at = _labelled_once(ids, labels, want, f"training row {i}: the answer's {len(want)} tokens",
                            "cannot weigh its fields")
        out = [1.0] * len(ids)
        for key, weight in sorted(weights.items()):
            head = f'"{key}": '
            if text.count(head) != 1:
                raise ValueError(f"training row {i}: `{head.strip()}` occurs {text.count(head)} times in the "
                                 f"answer, not once: cannot weigh train.field_weights' {key!r}")
            start = text.index(head) + len(head)
            _, end = decoder.raw_decode(text, start)
            for k, (lo, hi) in enumerate(answer["offset_mapping"]):
                if lo < end and hi > start:
                    out[at + k] = float(weight)
        return {**row, WEIGHTS: out}

    return dataset.map(add, with_indices=True, desc="Weighing the label fields' tokens",
                       new_fingerprint=_fingerprint(dataset, "weigh", sorted(weights.items())))


class WeightedCollator:
    """trl's collator with each example's WEIGHTS padded like its labels (0 past the end)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        weights = [ex[WEIGHTS] for ex in examples]
        out = self.inner([{k: v for k, v in ex.items() if k != WEIGHTS} for ex in examples])
        padded = torch.zeros(out["labels"].shape, dtype=torch.float32)
        for row, w in enumerate(weights):
            padded[row, : len(w)] = torch.as_tensor(w, dtype=torch.float32)
        out[WEIGHTS] = padded
        return out
