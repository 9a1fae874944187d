"""Task registry: everything task-specific that stages need, looked up by name.

Stages never import a task package directly; they ask `get_task(name)`, which imports the
package `tuneforge.tasks.<name with - as _>` (params.yaml's tasks.<name>.package, which
dvc.yaml's deps read) on first use. A task is a package beside this file
(changelog_actions/: schema, prompt, labeler, STYLE checks, content-free examples) that
registers its `Task` when imported; a new task (commit messages) is a new package, a
params.yaml `tasks` entry and its data. Only the asked-for task's package is imported, so
one task's stages neither load nor depend on another task's code.

Model-side code (merge, register, predict, eval's decoding) needs a task's schema and
prompt only, so a task gives its labeler-side members as `Lazy`: their module is
imported on first use, and those stages neither load the labeler nor depend on it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel


class Lazy:
    """A task member that lives in `module`, imported on first use and then kept: call it
    like the function it names, or `resolve()` it for a value (`Lazy(m, "CODES").resolve`)."""

    __slots__ = ("module", "name", "_target")

    def __init__(self, module: str, name: str):
        self.module, self.name, self._target = module, name, None

    def resolve(self) -> Any:
        if self._target is None:
            self._target = getattr(importlib.import_module(self.module), self.name)
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Lazy({self.module}.{self.name})"


@dataclass(frozen=True)
class Task:
    # model-facing: what decoding, merge, register and predict need
    name: str
    output_model: type[BaseModel]
    system_prompt: str
    render_user: Callable[[str, str | None, str | None], str]
    render_label: Callable[[dict], str]
    parse_label: Callable[[str], BaseModel]
    # labeler-side (a task package gives these as `Lazy`)
    rule_label: Callable[[str, str | None, str, str | None], tuple[dict, int]]
    style_problems: Callable[[dict, str, str | None], list[str]]  # (label, text, hint)
    style_codes: Callable[[], tuple[str, ...]]  # every code style_problems can give
    is_content_free: Callable[[str], bool]
    unknown_cue: Callable[[str, str | None], bool]  # the entry itself says why it abstains
    hint_class: Callable[[str | None], str | None]  # the class a section hint suggests alone
    # the task's vocabulary
    label_class: Callable[[dict], str]  # the stratification/confusion key of a label
    with_class: Callable[[dict, str], dict]  # the label with its class replaced
    classes: tuple[str, ...]  # every value label_class can take, in report order
    firm_classes: frozenset[str]  # classes a section hint neither gives nor overrides
    abstain_class: str  # "nothing to act on": the class content-free text must get
    abstain_rule: int  # the rule labeler's rule number that answers abstain_class
    content_free_examples: Callable[[], tuple[str, ...]]  # synthetic abstain entries
    # how eval names the graded fields: metrics "<class_field>_agreement" (the class is
    # label_class's) and "<second_field>_agreement" (label[second_field], compared as a string)
    class_field: str = "kind"
    second_field: str = "severity"
    # tuneforge.sources format names backfill may detect in this task's snapshot; () = every format
    source_formats: tuple[str, ...] = ()
    # the prompt shows the record's hint (a changelog's section heading); False when the hint is
    # the label's source (a commit's own message), which no prompt may show
    hint_in_prompt: bool = True
    # export: no product (a source package) has rows in both the gold holdout and SFT, and the
    # valid split takes whole products (the contract's "split by source package")
    holdout_by_product: bool = False
    # export: (train records, export.augment_rate, export.seed) -> the same number of records, a
    # seeded share of them changed with a ground truth known by construction (junk injection)
    augment: Callable[[list, float, int], list] | None = None
    # eval: (gold rows, answer texts) -> the task's own figures for one model (chrF, ...)
    eval_figures: Callable[[list[dict], list[str]], dict] | None = None
    # the model card's "Limits" bullets that only this task has (where its labels come from, ...)
    card_notes: tuple[str, ...] = ()
    # predict --format: name -> label renderer (json, the canonical render_label, is always there)
    formats: dict[str, Callable[[dict], str]] = field(default_factory=dict)
    # predict: what one entry of a plain-text input is. "line": each non-blank line, whitespace
    # normalised (a release note); "document": the whole input, its line breaks kept (a diff)
    input_kind: Literal["line", "document"] = "line"
    # decoding: (the output JSON schema, one input's text) -> the schema narrowed to what that
    # input allows (commit-messages: `ignore` is exactly the diff's junk paths), so the decoding
    # grammar rules out answers the input itself refutes; None: one schema for every input
    narrow_schema: Callable[[dict, str], dict] | None = None
    # decoding: (one input's text) -> a test of the answer's raw text as far as it is decoded,
    # for what a grammar cannot say (commit-messages: no name the diff does not show); the
    # decoder takes the model's most likely token the grammar allows that keeps it True.
    # None: the grammar alone
    answer_check: Callable[[str], Callable[[str], bool]] | None = None
    # predict: (a label) -> one line for stderr beside an answer rendered in a non-JSON format,
    # for what that format leaves out (commit-messages: the `ignore` paths a git message cannot
    # hold); None: nothing to say
    advice: Callable[[dict], str | None] | None = None
    # train: (a training label, its label source) -> the label's keys whose value that source
    # cannot know, so training learns nothing from them (tuneforge.trainer.unlearn takes their
    # value tokens out of the loss). commit-messages: an author's message without a
    # `component: ` prefix says nothing of the scope, so its null is not the contract's
    # "none fits". None: every key of every label is learned
    unknown_fields: Callable[[dict, str], tuple[str, ...]] | None = None

    def output_schema(self, text: str | None = None) -> dict:
        """The JSON schema an answer to `text` is decoded under (None: the task's whole schema)."""
        schema = self.output_model.model_json_schema()
        return schema if text is None or self.narrow_schema is None else self.narrow_schema(schema, text)

    @property
    def fields(self) -> tuple[str, str]:
        """(class_field, second_field): the names tuneforge.metrics gives the graded figures."""
        return self.class_field, self.second_field

    def messages(self, text: str, hint: str | None, product: str | None) -> list[dict]:
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": self.render_user(text, hint, product)},
        ]


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice (a second package uses its name)")
    if task.input_kind not in ("line", "document"):  # predict would read any other word as "line"
        raise ValueError(f"task {task.name!r}: input_kind {task.input_kind!r} is neither 'line' nor 'document'")
    TASKS[task.name] = task
    return task


def package_name(name: str) -> str:
    """The package that holds task `name`: tuneforge.tasks.<name, '-' -> '_'>."""
    return name.replace("-", "_")


def known() -> list[str]:
    """Every task package beside this file, by task name."""
    here = Path(__file__).parent
    return sorted(p.name.replace("_", "-") for p in here.iterdir() if (p / "__init__.py").is_file())


def get_task(name: str) -> Task:
    if name not in TASKS:
        if name not in known():
            raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(known())}")
        importlib.import_module(f"{__name__}.{package_name(name)}")
        if name not in TASKS:
            raise ValueError(f"tuneforge.tasks.{package_name(name)} registers no task named {name!r}")
    return TASKS[name]
