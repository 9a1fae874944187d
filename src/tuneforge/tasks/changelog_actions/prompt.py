"""changelog-actions' prompt: a one-line system prompt and the entry as the user turn."""
from __future__ import annotations

SYSTEM_PROMPT = (
    "Turn the changelog entry into one JSON action item with keys kind, severity, "
    "subject, action_text, deadline, tags. Output JSON only."
)


def render_user(text: str, hint: str | None, product: str | None) -> str:
    lines = []
    if product:
        lines.append(f"Product: {product}")
    if hint:
        lines.append(f"Section: {hint}")
    lines.append(f"Entry: {text}")
    return "\n".join(lines)
