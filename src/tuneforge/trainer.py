"""The train stage's trainer: trl's SFTTrainer with a loss that projects only the
completion positions through the LM head.

Why: the loss counts only positions whose next token is in the completion (the
assistant turn), a third of a changelog example's tokens. trl's fused LM head scores
every position off Triton devices, and computes entropy and top-1 over the 49k-entry
vocabulary for its metrics; on a 2-core CPU that was half of each step (measured by
`make bench ONLY=train`). Here the model is asked for the logits of those positions only
(transformers' `logits_to_keep`), through its own forward, so accelerate's autocast and
a DDP wrapper still apply.

Imports torch and trl at module level: only the train stage and the benchmark load it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer

IGNORE = -100


def completion_positions(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions whose next-token label counts in any row of the batch
    (rows are padded to a common length, so one index list serves them all)."""
    return (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(1)


class CompletionLossTrainer(SFTTrainer):
    """Loss = mean negative log-likelihood of the completion tokens, as trl's (same value
    in fp32: checked in tests), with the LM head run on completion positions only.
    Logs num_tokens (real tokens seen) and mean_token_accuracy like trl."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:  # sft_config sets prediction_loss_only, so eval never asks
            raise NotImplementedError("CompletionLossTrainer returns the loss only")
        labels = inputs["labels"]
        keep = completion_positions(labels)
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       use_cache=False, logits_to_keep=keep).logits
        targets = labels[:, keep + 1]
        counted = targets != IGNORE
        n = num_items_in_batch if num_items_in_batch is not None else counted.sum()
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                               ignore_index=IGNORE, reduction="sum")
        loss = loss / torch.as_tensor(n, device=loss.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as trl: DDP averages the gradients

        mode = "train" if model.training else "eval"
        with torch.no_grad():
            correct = ((logits.argmax(-1) == targets) & counted).sum()
            total = self.accelerator.gather_for_metrics(counted.sum()).sum()
            correct = self.accelerator.gather_for_metrics(correct).sum()
            self._metrics[mode]["mean_token_accuracy"].append(
                (correct / total).item() if total > 0 else 0.0)
            if mode == "train":
                self._total_train_tokens += self.accelerator.gather_for_metrics(
                    inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
