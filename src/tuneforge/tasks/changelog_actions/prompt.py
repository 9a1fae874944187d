"""changelog-actions' prompt: a one-line system prompt and, as the user turn, the entry with its
product, section heading and the rule labeler's kind and severity for it."""
from __future__ import annotations

import functools

SYSTEM_PROMPT = (
    "Turn the changelog entry into one JSON action item with keys kind, severity, "
    "subject, action_text, deadline, tags. Output JSON only."
)


@functools.lru_cache(maxsize=1 << 16)
def _rule_reading(text: str, hint: str | None):
    """labeler.rule_reading, imported on first use (model-side code imports this module) and
    remembered: export builds a record's prompt for its SFT row and its preference pair."""
    from tuneforge.tasks.changelog_actions.labeler import rule_reading
    return rule_reading(text, hint)


def render_user(text: str, hint: str | None, product: str | None) -> str:
    lines = []
    if product:
        lines.append(f"Product: {product}")
    if hint:
        lines.append(f"Section: {hint}")
    # the rule labeler's reading of the same input, as evidence the model may overrule; before
    # the entry, which stays the last line (tools and tests read the text after "Entry: ")
    kind, severity = _rule_reading(text, hint)
    lines.append(f"Rules: {kind.value}, {severity.value}")
    lines.append(f"Entry: {text}")
    return "\n".join(lines)
