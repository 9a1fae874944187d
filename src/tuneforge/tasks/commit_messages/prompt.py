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
# Estimated by counting punctuation marks and word runs, a run as one token per 4 characters
# (a BPE vocabulary splits long identifiers, numbers and non-English words into pieces), not
# with the model's tokenizer: predict and the commit hook must not load one, and the view only
# needs a size that grows with the text and is the same on every machine. Measured against
# SmolLM2's tokenizer on 2,053 Debian patch views: real tokens are 1.13x the estimate on
# average, 1.5x at the 99th percentile. 400 keeps prompt + label inside train.max_tokens 1024.
PROMPT_BUDGET = 400
FILES_BUDGET = PROMPT_BUDGET // 2  # the path list's share; a larger change says how many more paths it has
LINE_CHARS = 160  # a longer hunk line (minified code, a base64 blob) is cut and marked
TOKEN_RE = re.compile(r"\w+|[^\w\s]")
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return sum(-(-len(m) // CHARS_PER_TOKEN) for m in TOKEN_RE.findall(text))  # ceil: a mark counts 1


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
    listed = _fit([_cut(file_line(c)) for c in changes], FILES_BUDGET)
    head += listed
    if len(listed) < len(changes):
        head.append(f"... and {len(changes) - len(listed)} more files")
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
