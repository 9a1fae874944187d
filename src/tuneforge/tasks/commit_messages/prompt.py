"""commit-messages' prompt: a one-paragraph system prompt and a bounded view of the diff.

`render_user` is the one builder of the user turn for train (export), eval and predict, so the
model is always shown the same view of a diff. The author's message (a record's `hint`) is the
label source and is never shown: the model must write the message from the diff alone.
"""
from __future__ import annotations

import re

from tuneforge.tasks.commit_messages.diff import FileChange, parse_diff, split_lines

SYSTEM_PROMPT = (
    "Write the commit message for the staged diff as one JSON object with keys type, scope, "
    "subject, body, breaking, ignore: type is a Conventional Commits type, scope a component the "
    "diff shows or null, subject an imperative line of at most 72 characters, body null or up to "
    "three sentences the diff supports, breaking true only for a removed or renamed interface or a "
    "flipped default, ignore the junk paths that must not be committed. Output JSON only."
)

# The view's size in estimated tokens: the paths and counts, then whole hunks while they fit.
# Estimated by counting words and punctuation marks (TOKEN_RE), not with the model's tokenizer:
# predict and the commit hook must not load one, and the view only needs a size that grows
# with the text and is the same on every machine. Code averages about one real token per
# estimated one, so 320 keeps prompt + label well inside train.max_tokens (see SCHEMA.md).
PROMPT_BUDGET = 320
MAX_FILES = 24  # paths listed (about 7 tokens each); a larger change says how many more there are
LINE_CHARS = 160  # a longer hunk line (minified code, a base64 blob) is cut and marked
TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


def file_line(change: FileChange) -> str:
    where = f"{change.old_path} -> {change.path}" if change.old_path else change.path
    if change.status == "binary":
        return f"binary {where}"
    return f"{change.status} {where} +{change.added} -{change.removed}"


def _cut(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + " [line cut]"


def render_user(text: str, hint: str | None, product: str | None) -> str:
    """The bounded view of the diff `text`. `hint` (the author's message) is ignored on purpose."""
    del hint  # the label source: showing it would teach the model to copy, not to read the diff
    changes = parse_diff(text)
    head = [f"Product: {product}"] if product else []
    head.append(f"Files ({len(changes)}):")
    head += [file_line(c) for c in changes[:MAX_FILES]]
    if len(changes) > MAX_FILES:
        head.append(f"... and {len(changes) - MAX_FILES} more files")
    tail_reserve = estimate_tokens("Hunks: [hunk cut] Hunks left out: 9999 of 9999")  # the lines that close the view
    if not changes:  # not a diff this parser reads: show its first lines, to the same budget
        head.append("(no file sections found; the start of the text follows)")
        budget = PROMPT_BUDGET - estimate_tokens("\n".join(head)) - tail_reserve
        return "\n".join(head + _fit([_cut(ln) for ln in split_lines(text)], budget))
    used = estimate_tokens("\n".join(head)) + tail_reserve
    blocks = []  # one per hunk, in file order: the file's path before its first hunk
    for change in changes:
        for n, hunk in enumerate(change.hunks):
            lines = ([f"--- {change.path}"] if n == 0 else []) + [hunk.header] + [_cut(ln) for ln in hunk.lines]
            blocks.append(lines)
    shown: list[str] = []
    kept = 0
    for lines in blocks:
        cost = estimate_tokens("\n".join(lines))
        if used + cost > PROMPT_BUDGET:
            break
        shown += lines
        used += cost
        kept += 1
    if blocks and kept == 0:
        # Not even the first hunk fits: show its start cut at a line, so the model sees some
        # code; the note below counts it as left out.
        shown = _fit(blocks[0], PROMPT_BUDGET - used) + ["[hunk cut]"]
    tail = f"Hunks left out: {len(blocks) - kept} of {len(blocks)}"
    return "\n".join(head + ["Hunks:"] + shown + [tail])


def _fit(lines: list[str], budget: int) -> list[str]:
    out = []
    for line in lines:
        budget -= estimate_tokens(line)
        if budget < 0:
            break
        out.append(line)
    return out
