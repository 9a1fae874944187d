"""Label values their source could not know are not learned (Task.unknown_fields): a
commit-messages label built from an author's message that named no component has a null scope
meaning "not said", and training takes that value's tokens out of the loss
(tuneforge.trainer.unlearn) instead of teaching null."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import ROOT

PROMPT = [{"role": "system", "content": "Write the commit message."},
          {"role": "user", "content": 'Files (1):\nmodified src/udev.c +1 -1\n(the answer has "scope": null)'}]


def commit_row(scope: str | None, source: str = "rules") -> dict:
    label = {"type": "fix", "scope": scope, "subject": "Fix the device check", "body": None,
             "breaking": False, "ignore": []}
    from tuneforge.tasks import get_task

    text = get_task("commit-messages").render_label(label)
    return {"id": f"r-{scope}-{source}", "kind": "fix", "label_source": source, "product": "udev",
            "messages": [*PROMPT, {"role": "assistant", "content": text}]}


@pytest.mark.parametrize(("scope", "source", "unknown"), [
    (None, "rules", ("scope",)),   # the author named no component: not said
    ("udev", "rules", ()),         # the author's `udev: ` prefix
    (None, "human", ()),           # a person chose null: none fits
    (None, "teacher", ()),
    (None, "replay", ()),
])
def test_only_a_null_scope_from_an_authors_message_is_unknown(scope, source, unknown):
    from stages.train import UNKNOWN, example
    from tuneforge.tasks import get_task

    task = get_task("commit-messages")
    row = commit_row(scope, source)
    assert task.unknown_fields(json.loads(row["messages"][-1]["content"]), source) == unknown
    assert tuple(example(task, row).get(UNKNOWN, ())) == unknown


def test_a_task_without_the_hook_learns_every_field():
    from stages.train import UNKNOWN, example
    from tuneforge.tasks import get_task

    task = get_task("changelog-actions")
    assert task.unknown_fields is None
    row = {"id": "c", "kind": "fix", "label_source": "rules",
           "messages": [*PROMPT, {"role": "assistant", "content": '{"kind": "fix"}'}]}
    assert UNKNOWN not in example(task, row)


class Captured(Exception):
    """Stops train() where the trainer would start, with the dataset it would read."""


def tokenised_by_train(tiny_base, monkeypatch, rows: list[dict], *, learn_all: bool = False):
    """The dataset stages.train.train hands its trainer for these SFT rows (trl's tokenisation,
    then unlearn), captured where training would start; `learn_all`: the rows' examples with
    nothing marked unknown (what trl alone gives)."""
    from stages import train
    from tuneforge.tasks import get_task
    from tuneforge.trainer import CompletionLossTrainer

    def capture(self, *args, **kwargs):
        raise Captured(self.train_dataset, self.eval_dataset)

    monkeypatch.setattr(CompletionLossTrainer, "train", capture)
    cfg = {**yaml.safe_load((ROOT / "params.yaml").read_text())["train"], "compile": False, "max_steps": 1,
           "lora_layers": 0}
    task = get_task("commit-messages")
    with pytest.raises(Captured) as got:
        examples = [train.example(task, r) for r in rows]
        if learn_all:
            examples = train.learnable(examples)
        train.train(tiny_base, examples, examples, cfg, tiny_base.parent / "adapter")  # valid: the same rows
    return got.value.args


@pytest.mark.model
def test_train_takes_the_unknown_scope_value_and_nothing_else_out_of_the_loss(tiny_base, monkeypatch):
    from transformers import AutoTokenizer

    from tuneforge.trainer import IGNORE

    tok = AutoTokenizer.from_pretrained(str(tiny_base))
    rows = [commit_row(None), commit_row("udev"), commit_row(None, "human")]
    trained, valid = tokenised_by_train(tiny_base, monkeypatch, rows)
    plain, _ = tokenised_by_train(tiny_base, monkeypatch, rows, learn_all=True)
    assert [r["labels"] for r in valid] == [r["labels"] for r in trained]  # the valid loss is scored as trained
    for i, row in enumerate(trained):
        assert row["input_ids"] == plain[i]["input_ids"]
        changed = [k for k, (a, b) in enumerate(zip(row["labels"], plain[i]["labels"], strict=True)) if a != b]
        if i == 0:  # one token: the null after "scope":, in the answer (the prompt quotes the same text)
            assert [tok.decode([row["input_ids"][k]]) for k in changed] == [" null"]
            assert tok.decode(row["input_ids"][changed[0] - 3: changed[0]]) == ' "scope":'
            assert row["labels"][changed[0]] == IGNORE and plain[i]["labels"][changed[0]] != IGNORE
        else:
            assert changed == []


@pytest.mark.model
def test_a_value_not_found_once_in_the_answer_fails_loudly(tiny_base):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from tuneforge.trainer import IGNORE, unlearn

    tok = AutoTokenizer.from_pretrained(str(tiny_base))
    compact = '{"type":"fix","scope":null}'  # not the canonical rendering: ` "scope": null` is not there
    ids = tok.encode('"scope": null', add_special_tokens=False) + tok.encode(compact, add_special_tokens=False)
    n = len(tok.encode('"scope": null', add_special_tokens=False))
    row = {"completion": [{"role": "assistant", "content": compact}], "input_ids": ids,
           "labels": [IGNORE] * n + ids[n:]}
    with pytest.raises(ValueError, match="row 0: `scope`'s value None found 0 times"):
        unlearn(Dataset.from_list([row]), tok, [("scope",)])
    with pytest.raises(ValueError, match="2 unknown-field lists for 1 training rows"):
        unlearn(Dataset.from_list([row]), tok, [("scope",), ()])
