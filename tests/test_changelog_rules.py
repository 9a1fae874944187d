"""The rule labeler (the default teacher) and the STYLE checks, on contract cases."""
import pytest

from tuneforge import changelog as cl
from tuneforge.tasks import get_task

CASES = [
    # (text, hint, expected kind, expected rule)
    ("Fix heap buffer overflow in avifDecoderParse (CVE-2023-1234).", "Fixed", "security", 1),
    ("The `--foo` option has been removed; use `--bar` instead.", None, "breaking", 2),
    ("MCP tool search is now enabled by default, which reduces context usage.", "Performance", "breaking", 3),
    ("The `--foo` option is deprecated and will be removed in 3.0.", None, "deprecation", 4),
    ("chmod -R no longer exits with error status when encountering symlinks.", "Bug fixes", "fix", 5),
    ("Speed up `git status` on large repositories.", None, "performance", 6),
    ("Add `--json` output to the `list` command.", "Added", "feature", 7),
    ("Bug fixes and reliability improvements", None, "unknown", 8),
    ("Internal refactoring", None, "unknown", 8),
    ("Updated dependencies", None, "unknown", 8),
    ("Document the `core.fsync` configuration variable.", None, "docs", 9),
]


@pytest.mark.parametrize("text,hint,kind,rule", CASES)
def test_locked_rules(text, hint, kind, rule):
    assert cl.rule_kind(text, hint) == (cl.Kind(kind), rule)


@pytest.mark.parametrize("text,hint,kind,rule", CASES)
def test_rule_labels_are_schema_valid_and_styled(text, hint, kind, rule):
    label, got_rule = cl.rule_label(text, hint, "demo", "1.2.3")
    cl.ActionItem.model_validate(label)
    assert got_rule == rule
    assert cl.style_problems(label, text) == [], label


def test_severity_rules():
    assert cl.rule_severity(cl.Kind.security, 1, "remote code execution via crafted URL") == "critical"
    assert cl.rule_severity(cl.Kind.security, 1, "fix XSS in the web UI") == "high"
    assert cl.rule_severity(cl.Kind.breaking, 2, "removed --foo") == "high"
    assert cl.rule_severity(cl.Kind.breaking, 3, "now on by default") == "medium"
    assert cl.rule_severity(cl.Kind.deprecation, 4, "deprecated") == "medium"
    assert cl.rule_severity(cl.Kind.fix, 5, "fix a crash on empty input") == "medium"
    assert cl.rule_severity(cl.Kind.fix, 5, "fix silent data corruption when appending") == "critical"
    assert cl.rule_severity(cl.Kind.fix, 5, "fix a typo in a label") == "low"
    assert cl.rule_severity(cl.Kind.feature, 7, "add a flag") == "low"


def test_deadline_versions_and_dates():
    assert cl.rule_deadline("X is deprecated and will be removed in 3.0.", cl.Kind.deprecation) == "3.0"
    assert cl.rule_deadline("Support ends; removed by 2027-01-31.", cl.Kind.deprecation) == "2027-01-31"
    assert cl.rule_deadline("Fixed in 3.0.", cl.Kind.fix) is None


def test_style_checks_catch_each_rule():
    text = "Add `--json` output to the `list` command."
    good, _ = cl.rule_label(text, None, "demo", "1.0")
    assert cl.style_problems(good, text) == []
    assert "style_subject_length" in cl.style_problems({**good, "subject": "json"}, text)
    assert "style_subject_case" in cl.style_problems({**good, "subject": "Json Output"}, text)
    assert "style_action_not_imperative" in cl.style_problems(
        {**good, "action_text": "The `--json` flag is new."}, text)
    assert "style_action_too_long" in cl.style_problems(
        {**good, "action_text": "Use `--json` " + "now " * 40 + "."}, text)
    assert "style_identifier_missing" in cl.style_problems(
        {**good, "action_text": "Use the new output flag."}, text)
    assert "style_identifier_not_in_input" in cl.style_problems(
        {**good, "action_text": "Use `--yaml` output."}, text)
    assert "style_action_not_one_sentence" in cl.style_problems(
        {**good, "action_text": "Use `--json` output. It is nice."}, text)


def test_prompt_and_label_rendering_round_trip():
    task = get_task("changelog-actions")
    label, _ = task.rule_label("Add `--json` output.", "Added", "demo", "1.0")
    rendered = task.render_label(label)
    assert list(task.parse_label(rendered).model_dump()) == cl.FIELD_ORDER
    assert task.parse_label(rendered).model_dump(mode="json") == label
    msgs = task.messages("Add `--json` output.", "Added", "demo")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "Section: Added" in msgs[1]["content"]
    assert "Section" not in task.messages("x", None, "demo")[1]["content"]
    with pytest.raises(ValueError):
        task.parse_label("```json\n" + rendered + "\n```")


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="changelog-actions"):
        get_task("commit-messages")
