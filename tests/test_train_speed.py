"""The train section's two speed knobs (issue 21 item 4), on the tiny model:
train.lora_layers adapts only the top blocks, so backward never reaches the ones below;
train.attention picks the attention kernel and leaves the gradients the same."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.train import load_model  # noqa: E402
from tests.test_model_chain import ENTRIES, sft_row  # noqa: E402


def train_cfg(**over) -> dict:
    """params.yaml's train section for one uncompiled step of the tiny model (2 blocks: the
    top one adapted unless a test says otherwise)."""
    return {**yaml.safe_load((ROOT / "params.yaml").read_text())["train"], "max_steps": 1, "batch_size": 4,
            "compile": False, "lora_layers": 1, **over}


def tiny_trainer(tiny_base, tmp_path, cfg: dict):
    """The train stage's trainer (its model loader, LoRA settings and trainer class) on the tiny
    model over the chain test's ten entries; test_bench's profile test trains one too."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    from tuneforge.llm import lora_config, sft_config, sft_example
    from tuneforge.trainer import CompletionLossTrainer

    torch.manual_seed(0)
    model = load_model(tiny_base, cfg, cuda=False, precision="fp32")
    data = Dataset.from_list([sft_example(sft_row(i, *e, "train")) for i, e in enumerate(ENTRIES)])
    return CompletionLossTrainer(model=model, args=sft_config(cfg, str(tmp_path / "t"), cuda=False),
                                 train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tiny_base),
                                 peft_config=lora_config(cfg, model))


def one_step(tiny_base, tmp_path, cfg: dict):
    """One forward and backward of the train stage's trainer; returns the trainer and which
    decoder blocks the backward pass reached."""
    trainer = tiny_trainer(tiny_base, tmp_path, cfg)
    reached: set[int] = set()
    blocks = trainer.model.get_base_model().model.layers
    for i, block in enumerate(blocks):
        block.register_full_backward_hook(lambda m, gi, go, i=i: reached.add(i))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.compute_loss(trainer.model, dict(batch)).backward()
    return trainer, reached


def test_lora_layers_adapts_the_top_blocks_and_backward_stops_there(tiny_base, tmp_path):
    every, reached_all = one_step(tiny_base, tmp_path, train_cfg(lora_layers=0))
    n = every.model.get_base_model().config.num_hidden_layers
    assert n >= 2 and reached_all == set(range(n))  # the check below can tell

    top, reached = one_step(tiny_base, tmp_path, train_cfg(lora_layers=1))
    trainable = [name for name, p in top.model.named_parameters() if p.requires_grad]
    assert trainable and all(f".layers.{n - 1}." in name for name in trainable), trainable
    # every linear layer of that block, as `all-linear` adapts in every block
    per_block = {name.split(f".layers.{n - 1}.")[1] for name in trainable}
    assert per_block == {name.split(".layers.0.")[1] for name, p in every.model.named_parameters()
                         if p.requires_grad and ".layers.0." in name}
    assert reached == {n - 1}  # the blocks below ran forward only


def test_lora_layers_over_the_model_is_a_loud_error(tiny_base):
    from tuneforge.llm import lora_config

    model = load_model(tiny_base, train_cfg(), cuda=False, precision="fp32")
    with pytest.raises(ValueError, match=r"train.lora_layers 99: the base model has only \d+ decoder blocks"):
        lora_config(train_cfg(lora_layers=99), model)
    with pytest.raises(ValueError, match="needs the model"):
        lora_config(train_cfg(lora_layers=1))


def test_attention_kernel_is_the_one_asked_for_and_gives_the_same_gradients(tiny_base, tmp_path):
    import torch

    grads = {}
    for kernel in ("eager", "sdpa"):
        trainer, _ = one_step(tiny_base, tmp_path, train_cfg(attention=kernel))
        assert trainer.model.get_base_model().config._attn_implementation == kernel
        grads[kernel] = {n: p.grad for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert grads["eager"].keys() == grads["sdpa"].keys()
    for name, g in grads["eager"].items():
        assert torch.allclose(g, grads["sdpa"][name], rtol=1e-4, atol=1e-6), name
