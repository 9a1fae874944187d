"""Task registry: everything task-specific that stages need, looked up by name.

Stages never import a task module directly; they ask `get_task(params["task"])`.
A new task (commit messages, tool calls) registers its own `Task` here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from tuneforge import changelog


@dataclass(frozen=True)
class Task:
    name: str
    output_model: type[BaseModel]
    system_prompt: str
    render_user: Callable[[str, str | None, str | None], str]
    render_label: Callable[[dict], str]
    parse_label: Callable[[str], BaseModel]
    rule_label: Callable[[str, str | None, str, str | None], tuple[dict, int]]
    style_problems: Callable[[dict, str, str | None], list[str]]  # (label, text, hint)
    style_codes: tuple[str, ...]  # every code style_problems can give
    is_content_free: Callable[[str], bool]
    unknown_cue: Callable[[str, str | None], bool]  # the entry itself says why it abstains
    hint_class: Callable[[str | None], str | None]  # the class a section hint suggests alone
    label_class: Callable[[dict], str]  # the stratification/confusion key of a label
    with_class: Callable[[dict, str], dict]  # the label with its class replaced
    classes: tuple[str, ...]  # every value label_class can take, in report order
    firm_classes: frozenset[str]  # classes a section hint neither gives nor overrides
    abstain_class: str  # "nothing to act on": the class content-free text must get
    abstain_rule: int  # the rule labeler's rule number that answers abstain_class
    content_free_examples: Callable[[], tuple[str, ...]]  # synthetic abstain entries

    def messages(self, text: str, hint: str | None, product: str | None) -> list[dict]:
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": self.render_user(text, hint, product)},
        ]


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


register(Task(
    name=changelog.TASK_NAME,
    output_model=changelog.ActionItem,
    system_prompt=changelog.SYSTEM_PROMPT,
    render_user=changelog.render_user,
    render_label=changelog.render_label,
    parse_label=changelog.parse_label,
    rule_label=changelog.rule_label,
    style_problems=changelog.style_problems,
    style_codes=changelog.STYLE_CODES,
    is_content_free=changelog.is_content_free,
    unknown_cue=changelog.unknown_cue,
    hint_class=lambda hint: kind.value if (kind := changelog.hint_kind(hint)) else None,
    label_class=lambda label: label["kind"],
    with_class=lambda label, kind: dict(label, kind=kind),
    classes=tuple(k.value for k in changelog.Kind),
    firm_classes=frozenset(k.value for k in changelog.FIRM_KINDS),
    abstain_class=changelog.Kind.unknown.value,
    abstain_rule=changelog.UNKNOWN_RULE,
    content_free_examples=changelog.content_free_examples,
))
