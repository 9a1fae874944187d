"""The task seam: stages learn a task's vocabulary (its classes, which of them a hint
cannot override, what abstaining looks like) from its `Task`, never from changelog code.
A second task (commit messages, tool calls) registers one and the stages take it as is."""
from dataclasses import replace
from enum import Enum
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from tuneforge.records import CandidateLabel, EvidenceRecord, LabelSource, Provenance
from tuneforge.tasks import TASKS, Task, get_task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_is_coherent(name):
    task = get_task(name)
    assert len(set(task.classes)) == len(task.classes)
    assert task.abstain_class in task.classes
    assert task.firm_classes <= set(task.classes) and task.abstain_class not in task.firm_classes
    examples = task.content_free_examples()
    assert examples and len(set(examples)) == len(examples)
    for text in examples:  # what export.unknown_augment trains on: abstentions, said so by the rules
        assert task.is_content_free(text), text
        label, rule = task.rule_label(text, None, "demo", None)
        assert (task.label_class(label), rule) == (task.abstain_class, task.abstain_rule), text
        task.output_model.model_validate(label)
    other = next(c for c in task.classes if c != task.abstain_class)
    assert task.label_class(task.with_class(label, other)) == other
    assert task.label_class(label) == task.abstain_class  # a new label, not this one changed


def test_changelog_classes_are_the_schema_kinds_in_schema_order():
    task = get_task("changelog-actions")
    kind = task.output_model.model_fields["kind"].annotation
    assert issubclass(kind, Enum) and task.classes == tuple(k.value for k in kind)
    assert task.firm_classes == {"security", "breaking", "deprecation"}
    assert task.hint_class("Security fixes") == "security" and task.hint_class(None) is None


class CommitLabel(BaseModel):  # a stand-in for the next task: commit message -> type
    type: Literal["feat", "fix", "revert", "chore"]
    subject: str
    model_config = ConfigDict(extra="forbid")


def commit_task() -> Task:
    base = get_task("changelog-actions")
    return replace(
        base, name="commit-types", output_model=CommitLabel,
        rule_label=lambda text, hint, product, version: ({"type": "feat", "subject": text}, 1),
        style_problems=lambda label, text, hint: [], style_codes=(),
        is_content_free=lambda text: text.lower() == "wip",
        unknown_cue=lambda text, hint: text.lower() == "wip",
        hint_class=lambda hint: {"Fixes": "fix"}.get(hint or ""),
        label_class=lambda label: label["type"],
        with_class=lambda label, cls: dict(label, type=cls),
        classes=("feat", "fix", "revert", "chore"), firm_classes=frozenset({"revert"}),
        abstain_class="chore", abstain_rule=4, content_free_examples=lambda: ("wip",))


def test_score_takes_the_vocabulary_from_the_task():
    """The toy's firm class, abstain class and abstain rule are none of the changelog's
    (security/breaking/deprecation, unknown, 8): score can only get these right from the
    task's own fields."""
    from stages.score import score_record

    task = commit_task()
    cfg = {"hint_disagreement": "needs_human_review", "unknown_without_cue": "needs_human_review",
           "scorer_version": "t"}

    def scored(text, label, rule, hint=None):
        rec = EvidenceRecord(id="x", task=task.name, text=text, hint=hint, product="demo",
                             version=None, format="git_log",
                             provenance=Provenance(source_file="f", line=1, sig_hash="s"),
                             candidates=[CandidateLabel(source=LabelSource.rules, label=label, rule=rule)])
        return score_record(task, rec, cfg)

    feat = {"type": "feat", "subject": "s"}
    assert scored("add x", feat, 1).category.value == "accepted"
    clash = scored("add x", feat, 1, hint="Fixes")
    assert clash.category.value == "needs_human_review" and "hint_rule_disagree" in clash.reasons
    firm = scored("revert x", {"type": "revert", "subject": "s"}, 2, hint="Fixes")
    assert firm.category.value == "accepted" and "hint_rule_disagree" not in firm.reasons
    assert "content_free_text" in scored("wip", feat, 1).reasons
    assert scored("wip", {"type": "chore", "subject": "s"}, 4).category.value == "accepted"
    fallback = scored("tidy", {"type": "chore", "subject": "s"}, 4)
    assert fallback.category.value == "needs_human_review" and "unknown_without_cue" in fallback.reasons
    assert "label_schema_invalid" in scored("x", {"type": "security", "subject": "s"}, 1).reasons
