"""The changelog-actions task: one change entry -> one strict-JSON action item.

Contract: shared/task/changelog-actions.md, restated in SCHEMA.md and STYLE.md.
schema.py (the output model) and prompt.py are all that model-side code imports; the
rule labeler (kinds.py, labeler.py), the STYLE checks (style.py) and the content-free
examples (examples.py) load on first use through `Lazy` (the labeler also on the first
prompt built: the prompt shows its reading of the entry).
"""
from __future__ import annotations

from tuneforge.tasks import Lazy, Task, register
from tuneforge.tasks.changelog_actions import prompt, schema

TASK_NAME = "changelog-actions"

TASK = register(Task(
    name=TASK_NAME,
    output_model=schema.ActionItem,
    system_prompt=prompt.SYSTEM_PROMPT,
    render_user=prompt.render_user,
    render_label=schema.render_label,
    parse_label=schema.parse_label,
    rule_label=Lazy(f"{__name__}.labeler", "rule_label"),
    style_problems=Lazy(f"{__name__}.style", "style_problems"),
    style_codes=Lazy(f"{__name__}.style", "STYLE_CODES").resolve,
    is_content_free=Lazy(f"{__name__}.kinds", "is_content_free"),
    unknown_cue=Lazy(f"{__name__}.kinds", "unknown_cue"),
    hint_class=Lazy(f"{__name__}.kinds", "hint_class"),
    label_class=lambda label: label["kind"],
    with_class=lambda label, kind: dict(label, kind=kind),
    classes=tuple(k.value for k in schema.Kind),
    firm_classes=frozenset(k.value for k in schema.FIRM_KINDS),
    abstain_class=schema.Kind.unknown.value,
    abstain_rule=schema.UNKNOWN_RULE,
    content_free_examples=Lazy(f"{__name__}.examples", "content_free_examples"),
    card_notes=(
        "Most training labels are hand labels, drawn where the project's deterministic rule labeler is least "
        "reliable; the rest are the labeler's own (the gold holdout is hand-labeled).",
        "Its prompt shows the rule labeler's kind and severity for the entry (a `Rules:` line before it): "
        "the model was trained to overrule them where the hand labels do, so prompts built elsewhere "
        "must carry that line too (tuneforge.predict and tuneforge.serve build it).",
        "Besides that line it sees only the entry, its section heading and the product, never the release's "
        "version: its training labels name a version only where the entry or heading shows one (STYLE.md), "
        "so a version in an answer that is in neither is made up.",
    ),
    source_formats=("debian_changelog", "git_relnotes", "gnu_news", "keepachangelog", "markdown_bullets",
                    "rst_changes"),
))
