"""commit-messages' output: one strict-JSON commit message per staged diff.

Contract: shared/task/commit-messages.md, restated in SCHEMA.md beside this file. Model-side
code (merge, register, predict, eval's decoding) needs only this module and prompt.py (and
diff.py, which the prompt view parses with), never the labeler.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tuneforge.tasks.commit_messages.prompt import is_junk, parse_diff


class CommitType(str, Enum):
    """The Conventional Commits types, in the contract's order (its rules 1-11 decide one)."""

    feat = "feat"
    fix = "fix"
    perf = "perf"
    refactor = "refactor"
    docs = "docs"
    test = "test"
    build = "build"
    ci = "ci"
    style = "style"
    revert = "revert"
    chore = "chore"


# A component name as the diff shows it (`udev`, `http_chunks`, `lib.net`, `dbus-glib`). Written
# as `[class]+(-[class]+)*` so tuneforge.grammar bounds it by its maxLength (the converter drops
# maxLength beside a pattern; grammar.py rewrites exactly this shape into a bounded rule).
SCOPE_CHAR = "[a-z0-9_.]"  # one character of a scope's name; `-` only between them
SCOPE_PATTERN = rf"^{SCOPE_CHAR}+(-{SCOPE_CHAR}+)*$"
SUBJECT_MAX = 72  # the contract's limit
# Every string is bounded, so the decoding grammar is too and a looping answer closes. 60 words
# (the contract's body limit) at about 6.5 characters a word, with margin.
BODY_MAX = 400
IGNORE_MAX_ITEMS = 16  # more junk than this in one staged change is not a commit to write
PATH_MAX = 200


class CommitMessage(BaseModel):
    """The model's output. Structural rules live here (and so in the JSON Schema and the
    decoding grammar); word-level STYLE rules are checked by style.style_problems."""

    type: CommitType
    scope: str | None = Field(pattern=SCOPE_PATTERN, max_length=32)
    subject: str = Field(min_length=1, max_length=SUBJECT_MAX)
    body: str | None = Field(min_length=1, max_length=BODY_MAX)
    breaking: bool
    ignore: list[Annotated[str, StringConstraints(min_length=1, max_length=PATH_MAX)]] = Field(
        max_length=IGNORE_MAX_ITEMS, json_schema_extra={"uniqueItems": True})

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"description": "One commit message for one staged diff."},
    )


FIELD_ORDER = list(CommitMessage.model_fields)


def junk_paths(paths: Iterable[str]) -> list[str]:
    """A diff's `ignore` from its paths (in diff order, each once): the junk by the contract's
    list (prompt.is_junk), the first IGNORE_MAX_ITEMS. The labeler writes training labels with
    it and for_diff forces it at decoding, so the two cannot drift apart."""
    return [p for p in paths if is_junk(p)][:IGNORE_MAX_ITEMS]


def for_diff(schema: dict, text: str) -> dict:
    """The output schema for one staged diff (Task.narrow_schema): `ignore` is exactly the
    diff's junk paths, the contract's list (prompt.is_junk: swap files, `.DS_Store`,
    `__pycache__/`, `*.pyc`, top-level build output, `node_modules/`, `.env`, key files), in diff
    order, at most IGNORE_MAX_ITEMS; `[]` when it has none. The labeler writes every training
    label's `ignore` by the same list, so this is the answer the model was taught.

    Why the grammar decides it and the model does not: left to choose among the diff's paths
    (v16), Q8_0 left a junk path out on 4 of eval's 13 junk rows (`.env` once) and put real
    source files in on 2 (`src/options.c`, `t/io/msg.t`), which a user following the answer
    would have unstaged. Neither mistake is one a list can make on the paths it names. A
    secret in a file the list does not name is not caught here (backfill redacts secrets in
    training data; predict sees the user's diff as it is).

    A junk path that JSON must escape (a quote, a backslash, a control or non-ASCII character)
    cannot be forced: llama-cpp-python's schema converter writes a literal's backslashes into
    the grammar unescaped (`_format_literal` escapes only quotes and line breaks), so such a
    literal would not match its own JSON. A diff with one keeps the whole schema rather than
    forbid a path it shows; other paths never reach the grammar, whatever they hold."""
    paths = dict.fromkeys(c.path for c in parse_diff(text))
    junk = junk_paths(p for p in paths if 0 < len(p) <= PATH_MAX)
    if any(json.dumps(p)[1:-1] != p or not p.isprintable() for p in junk):
        return schema
    ignore = dict(schema["properties"]["ignore"], const=junk)
    return {**schema, "properties": {**schema["properties"], "ignore": ignore}}


def render_label(label: dict) -> str:
    """Canonical assistant text: contract key order, compact, UTF-8 kept (the same json.dumps
    settings as changelog-actions, so both tasks' labels read alike)."""
    ordered = {k: label[k] for k in FIELD_ORDER}
    return json.dumps(ordered, ensure_ascii=False, separators=(", ", ": "))


def parse_label(text: str) -> CommitMessage:
    """Strict: the whole text must be one JSON object valid against the schema."""
    return CommitMessage.model_validate_json(text.strip(), strict=False)


def junk_note(label: dict) -> str | None:
    """predict's stderr line beside a `--format git` message (Task.advice): the staged paths the
    answer's `ignore` names, which the message leaves out and the commit should too."""
    if not label.get("ignore"):
        return None
    return (f"staged junk to leave out of this commit: {', '.join(label['ignore'])} "
            "(unstage with: git restore --staged -- PATH)")


def format_git(label: dict) -> str:
    """predict --format git: `type(scope)!: subject`, a blank line and the body when there is
    one (the `!` only for a breaking change; no parentheses without a scope)."""
    scope = f"({label['scope']})" if label.get("scope") else ""
    bang = "!" if label.get("breaking") else ""
    head = f"{label['type']}{scope}{bang}: {label['subject']}\n"
    return head + (f"\n{label['body']}\n" if label.get("body") else "")
