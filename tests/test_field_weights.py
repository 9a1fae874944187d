"""train.field_weights (tuneforge.trainer.weigh): the tokens of the answer fields a label is
judged by count more in the loss; every other token, and a run without weights, as before."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_train_speed import tiny_trainer, train_cfg  # noqa: E402


def weighed_rows(tiny_base, tmp_path, weights: dict):
    from tuneforge.trainer import weigh

    trainer = tiny_trainer(tiny_base, tmp_path, train_cfg())
    tok = trainer.processing_class
    return trainer, tok, weigh(trainer.train_dataset, tok, weights)


@pytest.mark.model
def test_the_weighted_fields_tokens_and_only_they_get_the_weight(tiny_base, tmp_path):
    import json

    from tuneforge.trainer import IGNORE, WEIGHTS

    trainer, tok, rows = weighed_rows(tiny_base, tmp_path, {"kind": 5.0, "severity": 3.0})
    for row in rows:
        label = json.loads(row["completion"][-1]["content"])
        weighted = {w: tok.decode([row["input_ids"][k] for k, x in enumerate(row[WEIGHTS]) if x == w])
                    for w in (5.0, 3.0)}
        # the value and its quotes (a token may carry the space before or the comma after)
        assert weighted[5.0].strip(' ",') == label["kind"], weighted
        assert weighted[3.0].strip(' ",') == label["severity"], weighted
        assert set(row[WEIGHTS]) == {1.0, 3.0, 5.0}
        assert all(row["labels"][k] != IGNORE for k, x in enumerate(row[WEIGHTS]) if x != 1.0)  # answer only
    untouched, _, same = weighed_rows(tiny_base, tmp_path, {})
    assert same is untouched.train_dataset  # no weights: the dataset itself, no column


@pytest.mark.model
def test_a_field_not_found_once_or_an_answer_not_labelled_fails_loudly(tiny_base, tmp_path):
    from datasets import Dataset

    from tuneforge.trainer import IGNORE, weigh

    trainer = tiny_trainer(tiny_base, tmp_path, train_cfg())
    tok, row = trainer.processing_class, dict(trainer.train_dataset[0])
    with pytest.raises(ValueError, match=r"row 0: `\"deadline_at\":` occurs 0 times"):
        weigh(Dataset.from_list([row]), tok, {"deadline_at": 2.0})
    unlabelled = {**row, "labels": [IGNORE] * len(row["labels"])}
    with pytest.raises(ValueError, match="row 0: the answer's .* tokens found 0 times"):
        weigh(Dataset.from_list([unlabelled]), tok, {"kind": 2.0})


@pytest.mark.model
def test_the_loss_weighs_each_token_as_asked(tiny_base, tmp_path):
    import torch
    import torch.nn.functional as F

    from tuneforge.trainer import WEIGHTS, WeightedCollator, completion_mask

    trainer, _, rows = weighed_rows(tiny_base, tmp_path, {"kind": 5.0})
    collate = WeightedCollator(trainer.data_collator)
    batch = collate([rows[i] for i in range(3)])
    assert batch[WEIGHTS].shape == batch["labels"].shape
    plain = trainer.data_collator([{k: v for k, v in rows[i].items() if k != WEIGHTS} for i in range(3)])
    assert torch.equal(plain["input_ids"], batch["input_ids"]) and torch.equal(plain["labels"], batch["labels"])

    trainer.model.eval()
    with torch.no_grad():
        weighted = trainer.compute_loss(trainer.model, dict(batch))
        unweighted = trainer.compute_loss(trainer.model, dict(plain))
        ones = trainer.compute_loss(trainer.model, {**batch, WEIGHTS: torch.ones_like(batch[WEIGHTS])})
        # by hand: every completion token's NLL times the weight of the token it predicts
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        mask = completion_mask(batch["labels"])
        nll = F.cross_entropy(logits[:, :-1][mask[:, :-1]].float(), batch["labels"][:, 1:][mask[:, :-1]],
                              reduction="none")
        w = batch[WEIGHTS][:, 1:][mask[:, :-1]]
    assert torch.allclose(ones, unweighted, rtol=1e-5)
    assert torch.allclose(weighted, (nll * w).sum() / w.numel(), rtol=1e-5)
    assert weighted > unweighted  # the kind's tokens counted five times


@pytest.mark.model
def test_the_weights_column_reaches_the_loss_through_the_trainers_own_loader(tiny_base, tmp_path):
    from tuneforge.trainer import WEIGHTS, WeightedCollator

    trainer, _, rows = weighed_rows(tiny_base, tmp_path, {"kind": 5.0})
    trainer.train_dataset, trainer.data_collator = rows, WeightedCollator(trainer.data_collator)
    batch = next(iter(trainer.get_train_dataloader()))  # transformers drops the columns forward does not name
    assert WEIGHTS in batch and float(batch[WEIGHTS].max()) == 5.0


def test_field_weights_must_name_fields_of_the_answer(tmp_path, monkeypatch):
    import shutil

    import yaml

    from stages import train

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"]["changelog-actions"]["overrides"]["train"] = {"field_weights": {"knd": 5.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"train.field_weights names 'knd': not a field of changelog-actions"):
        train.main(["changelog-actions"])
