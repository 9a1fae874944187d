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
    style_problems: Callable[[dict, str], list[str]]
    is_content_free: Callable[[str], bool]
    unknown_cue: Callable[[str, str | None], bool]  # rule 8 with a reason in the entry itself
    hint_kind: Callable[[str | None], object]
    label_class: Callable[[dict], str]  # the stratification/confusion key of a label

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
    is_content_free=changelog.is_content_free,
    unknown_cue=changelog.unknown_cue,
    hint_kind=changelog.hint_kind,
    label_class=lambda label: label["kind"],
))
