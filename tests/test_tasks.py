"""The task seam: stages learn a task's vocabulary (its classes, which of them a hint
cannot override, what abstaining looks like) from its `Task`, never from changelog code.
A second task (commit messages, tool calls) registers one and the stages take it as is."""
from dataclasses import replace
from enum import Enum
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from tuneforge.records import CandidateLabel, EvidenceRecord, LabelSource, Provenance
from tuneforge.tasks import Task, get_task, known


@pytest.mark.parametrize("name", known())
def test_every_registered_task_is_coherent(name):
    task = get_task(name)
    assert len(set(task.classes)) == len(task.classes)
    assert task.abstain_class in task.classes
    assert task.firm_classes <= set(task.classes) and task.abstain_class not in task.firm_classes
    examples = task.content_free_examples()  # none for a task with no abstain class (commits)
    assert len(set(examples)) == len(examples)
    for text in examples:  # what export.unknown_augment trains on: abstentions, said so by the rules
        assert task.is_content_free(text), text
        label, rule = task.rule_label(text, None, "demo", None)
        assert (task.label_class(label), rule) == (task.abstain_class, task.abstain_rule), text
        task.output_model.model_validate(label)
    label, _ = task.rule_label(examples[0] if examples else "diff --git a/x b/x\n", None, "demo", None)
    task.output_model.model_validate(label)
    before = task.label_class(label)
    other = next(c for c in task.classes if c != before)
    assert task.label_class(task.with_class(label, other)) == other
    assert task.label_class(label) == before  # a new label, not this one changed
    assert task.class_field in task.output_model.model_fields and task.second_field in task.output_model.model_fields
    assert task.label_class(label) == label[task.class_field]  # metrics name the class by class_field


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
        style_problems=lambda label, text, hint: [], style_codes=lambda: (),
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


# What model-side code does with a task (merge's probe prompt, register's card, predict's
# parse), then the labeler-side member score calls; the modules loaded after each, as JSON.
MODEL_SIDE = """
import json, sys
from tuneforge.tasks import get_task
task = get_task("changelog-actions")
task.output_model.model_json_schema()
label = {"kind": "fix", "severity": "low", "subject": "foo crash", "action_text": "Upgrade.",
         "deadline": None, "tags": ["demo"]}
task.parse_label(task.render_label(label))
print(json.dumps([task.system_prompt[:4], sorted(m for m in sys.modules if m.startswith("tuneforge"))]))
task.messages("Fix a crash in `foo`.", "Bug fixes", "demo")
print(json.dumps(sorted(m for m in sys.modules if m.startswith("tuneforge"))))
task.rule_label("Fix a crash in `foo`.", None, "demo", None)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("tuneforge"))))
"""


def test_model_side_use_of_a_task_loads_no_labeler_until_it_builds_a_prompt():
    """Asking for the task, its schema and parsing an answer import neither the rule labeler,
    nor the STYLE checks, nor the examples (nor the regex prefilter they use). Building a
    changelog prompt loads the labeler's kind rules (the prompt shows their reading: the
    `Rules:` line) but still not the STYLE-free rest: the examples. Fails when the task package
    imports its labeler eagerly."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.run([sys.executable, "-c", MODEL_SIDE], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    first, prompted, after = proc.stdout.strip().splitlines()
    _, loaded = json.loads(first)
    package = "tuneforge.tasks.changelog_actions"
    labeler_side = {f"{package}.{m}" for m in ("kinds", "labeler", "style", "examples")} | {"tuneforge.prefilter"}
    assert {f"{package}.schema", f"{package}.prompt"} <= set(loaded)
    assert not labeler_side & set(loaded), sorted(labeler_side & set(loaded))
    assert {f"{package}.kinds", f"{package}.labeler", "tuneforge.prefilter"} <= set(json.loads(prompted))
    assert f"{package}.examples" not in set(json.loads(prompted))
    assert {f"{package}.kinds", f"{package}.labeler"} <= set(json.loads(after))  # the Lazy resolves


def test_a_task_name_registers_once_and_an_unknown_one_is_named():
    from tuneforge.tasks import register

    with pytest.raises(ValueError, match="'changelog-actions' is registered twice"):
        register(get_task("changelog-actions"))
    with pytest.raises(ValueError, match=r"unknown task 'commit-types'; known tasks: changelog-actions"):
        get_task("commit-types")
