"""STYLE.md's word-level rules, which a schema-valid label can still break: the scorer
applies them to training labels and eval to parsed answers."""
from __future__ import annotations

import re

from tuneforge.prefilter import compile_re
from tuneforge.tasks.changelog_actions.labeler import IDENT_RE, identifiers, in_input, is_identifier
from tuneforge.tasks.changelog_actions.schema import TAG_PATTERN

VERSION_RE = compile_re(r"(?<![\w.-])v?\d+(?:\.\d+)+(?![\w-]|\.\d)")

IMPERATIVE_VERBS = {
    "add", "adjust", "adopt", "apply", "audit", "avoid", "check", "configure", "consider",
    "disable", "enable", "expect", "ignore", "install", "migrate", "move", "note", "plan",
    "read", "rebuild", "recompile", "remove", "rename", "replace", "retest", "review", "rotate",
    "run", "set", "stop", "switch", "test", "try", "update", "upgrade", "use", "verify", "watch",
}

# Every reason code style_problems gives, in STYLE.md's order (a test holds the three together).
STYLE_CODES = ("style_subject_length", "style_subject_case", "style_action_not_imperative",
               "style_action_too_long", "style_action_not_one_sentence", "style_identifier_missing",
               "style_identifier_not_in_input", "style_version_not_in_input", "style_tags")


def style_problems(label: dict, text: str, hint: str | None = None) -> list[str]:
    """STYLE.md rules a schema-valid label can still break; each a reason code."""
    problems = []
    stated = [m.group(0) for m in VERSION_RE.finditer(label["action_text"])]
    if label["deadline"]:
        stated.append(label["deadline"])
    if any(not in_input(v.removeprefix("v"), text, hint) for v in stated):
        problems.append("style_version_not_in_input")
    subject_words = label["subject"].split()
    if not 2 <= len(subject_words) <= 6:
        problems.append("style_subject_length")
    if any(w != w.lower() and not is_identifier(w) for w in subject_words):
        problems.append("style_subject_case")
    action = label["action_text"]
    first = action.split()[0].lower() if action.split() else ""
    if first not in IMPERATIVE_VERBS:
        problems.append("style_action_not_imperative")
    if len(action.split()) > 35:
        problems.append("style_action_too_long")
    if not action.endswith(".") or re.search(r"[.!?]\s+[A-Z]", IDENT_RE.sub("x", action)):
        problems.append("style_action_not_one_sentence")
    input_idents = identifiers(text)
    action_idents = identifiers(action)
    if any(i not in input_idents for i in action_idents):
        problems.append("style_identifier_not_in_input")
    if input_idents and not action_idents:
        problems.append("style_identifier_missing")
    tags = label["tags"]
    if len(set(tags)) != len(tags) or any(not re.match(TAG_PATTERN, t) for t in tags):
        problems.append("style_tags")
    return sorted(problems)
