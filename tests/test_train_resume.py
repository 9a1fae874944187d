"""A killed train stage resumes from its last checkpoint to the same adapter bytes (issue 21
item 5): train.checkpoint_every saves adapter, optimiser, scheduler and RNG states under
.cache/train-checkpoints/<task>/<run key>/, a rerun resumes from the newest complete one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_model_chain import TASK_NAME, make_workdir


def test_last_checkpoint_passes_over_one_a_kill_cut_short(tmp_path):
    from stages.train import last_checkpoint

    assert last_checkpoint(tmp_path / "none") is None
    for step, state in ((2, "{}"), (4, "{}"), (6, None), (8, '{"global_st')):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"  # 6: no state, 8: torn state


class Killed(Exception):
    """Stands in for the signal that stops a `dvc repro` mid-run."""


@pytest.mark.model
def test_a_killed_train_stage_resumes_to_the_same_adapter_bytes(tiny_base, tmp_path, monkeypatch):
    from stages import base, train
    from tuneforge import names
    from tuneforge.trainer import CompletionLossTrainer

    root = make_workdir(tmp_path / "w", tiny_base, train={"max_steps": 6, "checkpoint_every": 2,
                                                          "lora_dropout": 0.1})  # dropout draws from the RNG
    monkeypatch.chdir(root)
    # this test's own checkpoint folder: a run killed in another session (the machine cache is
    # shared) must not count as this run's leftover
    monkeypatch.setattr(names, "CACHE", tmp_path / "cache")
    adapter = root / "models" / TASK_NAME / "adapter"
    outputs = [adapter / "adapter_model.safetensors", adapter / "tuneforge.json",
               root / "reports" / TASK_NAME / "train" / "loss.csv"]
    assert base.main([]) == 0 and train.main([TASK_NAME]) == 0
    uninterrupted = [p.read_bytes() for p in outputs]
    checkpoints = names.TaskPaths(TASK_NAME).train_checkpoints
    assert not any(checkpoints.glob("*/checkpoint-*")), "a finished run leaves no checkpoint"

    step = CompletionLossTrainer.training_step

    def killed_at_step_5(self, *args, **kwargs):
        if self.state.global_step == 4:
            raise Killed
        return step(self, *args, **kwargs)

    monkeypatch.setattr(CompletionLossTrainer, "training_step", killed_at_step_5)
    with pytest.raises(Killed):
        train.main([TASK_NAME])
    (run_dir,) = [d for d in checkpoints.iterdir() if (d / "checkpoint-4").is_dir()]
    monkeypatch.setattr(CompletionLossTrainer, "training_step", step)
    assert train.main([TASK_NAME]) == 0
    receipt = json.loads((root / "reports" / TASK_NAME / "receipts" / "train.json").read_text())
    assert receipt["counts"]["extra"]["resumed_from_step"] == 4
    assert [p.read_bytes() for p in outputs] == uninterrupted
    assert not run_dir.exists()


def test_params_checkpoint_the_default_build():
    import yaml

    train = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["train"]
    assert 0 < train["checkpoint_every"] < train["max_steps"]
