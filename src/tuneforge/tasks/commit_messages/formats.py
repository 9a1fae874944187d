"""predict --format renderers of a commit-messages label (the task's `formats`).

`git`: a ready commit message, as `git commit` takes it and the prepare-commit-msg hook
(tuneforge.hook) writes it: `type(scope)!: subject`, then a blank line and the body.
"""
from __future__ import annotations

import textwrap

BODY_WIDTH = 72  # git's own advice for commit message bodies


def render_git(label: dict) -> str:
    """`type(scope)!: subject` (no scope: `type: subject`; `!` only when breaking), then, when
    there is a body, a blank line and the body wrapped at 72 columns."""
    scope = f"({label['scope']})" if label.get("scope") else ""
    header = f"{label['type']}{scope}{'!' if label.get('breaking') else ''}: {' '.join(label['subject'].split())}"
    if not label.get("body"):
        return header
    lines = textwrap.wrap(" ".join(label["body"].split()), BODY_WIDTH, break_long_words=False,
                          break_on_hyphens=False)
    kept: list[str] = []
    for line in lines:
        # git drops a line that starts with its comment character when it cleans up an
        # edited message (the hook's case): a word "#123" that wrapping would put first on a
        # line stays at the end of the line before it
        while kept and line.startswith("#"):
            word, _, line = line.partition(" ")
            kept[-1] += " " + word
        if line:
            kept.append(line)
    return header + "\n\n" + "\n".join(kept)
