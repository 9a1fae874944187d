"""STYLE.md's word-level rules, which a schema-valid label can still break: the scorer
applies them to training labels and eval to parsed answers. What an identifier is and
what the input shows are defined here; the rule labeler writes its labels by them."""
from __future__ import annotations

import re

from tuneforge.prefilter import compile_re
from tuneforge.tasks.changelog_actions.schema import TAG_PATTERN

# Code spans as the entries write them, tried left to right at each backtick:
#   :func:`name` (a reST role: code roles name an identifier, :ref:/:issue:/... do not),
#   ``literal`` (reST), `text <url>`_ / `name`_ (reST links: never identifiers),
#   `code` (Markdown), `--limit-rate' (GNU quotes: a backtick closed by an apostrophe);
#   ``text'' is a TeX-style quotation, not code.
# A backslash-escaped backtick (Markdown's \`) is a literal one and opens no span: read as an
# opener it made a garbled sentence of python3-jwt's entry the "identifier" every label had to
# quote (session 32's annotators met it twice).
IDENT_RE = compile_re(
    r"(?<!\\)(?:"
    r":(?P<role>(?:[\w-]+:)?[\w-]+):`(?P<role_body>[^`\n]{1,120})`"
    r"|``(?P<quotation>[^`'\n]{1,120})''"
    r"|``(?P<literal>[^`\n]{1,120}?)``"
    r"|`(?P<link>[^`\n]{0,120})`__?(?!\w)"
    r"|`(?P<code>[^`'\n]{1,120})`"
    r"|`(?P<gnu>[^`'\n]{1,120})'(?=[\s,;:)!?]|\.(?:\s|$)|$)"
    r"|`(?P<code_apos>[^`\n]{1,120})`"
    r")"
)
CODE_ROLES = {"func", "meth", "class", "mod", "attr", "data", "const", "exc", "obj", "envvar",
              "option", "program", "command", "file", "samp", "kbd", "code", "macro", "member",
              "type", "var", "struct", "enum", "enumerator", "function", "confval", "setting"}
ROLE_TARGET_RE = compile_re(r"<([^<>]+)>\s*$")


def identifiers(text: str) -> list[str]:
    """Backticked code spans in input order, without duplicates (see IDENT_RE for the
    quoting styles read; reST links and non-code roles are not identifiers)."""
    seen: dict[str, None] = {}
    for m in IDENT_RE.finditer(text):
        if m.group("link") is not None or m.group("quotation") is not None:
            continue
        if m.group("role") is not None:
            if m.group("role").rsplit(":", 1)[-1].lower() not in CODE_ROLES:
                continue  # :ref:`x`, :issue:`123`, :doc:`...` are cross-references
            target = ROLE_TARGET_RE.search(m.group("role_body"))  # :func:`title <target>`
            value = (target.group(1) if target else m.group("role_body")).lstrip("~!")
        else:
            value = m.group("literal") or m.group("code") or m.group("gnu") or m.group("code_apos")
        if value.strip() and not value.strip("#:").isdigit():  # `751956` is a bug number, not code
            seen.setdefault(value, None)
    return list(seen)


IDENTIFIER_WORD_RE = compile_re(r"[_/.()=\d]|[a-z][A-Z]|^-")


def is_identifier(word: str) -> bool:
    return bool(IDENTIFIER_WORD_RE.search(word)) or word.isupper() and len(word) > 1


def in_input(value: str, text: str, hint: str | None) -> bool:
    return value in text or value in (hint or "")


VERSION_RE = compile_re(r"(?<![\w.-])v?\d+(?:\.\d+)+(?![\w-]|\.\d)")

IMPERATIVE_VERBS = {
    "add", "adjust", "adopt", "apply", "audit", "avoid", "check", "configure", "consider",
    "disable", "enable", "expect", "ignore", "install", "migrate", "move", "note", "plan",
    "read", "rebuild", "recompile", "remove", "rename", "replace", "retest", "review", "rotate",
    "run", "set", "stop", "switch", "test", "try", "update", "upgrade", "use", "verify", "watch",
}

# Words no sentence says twice in a row. Content words may ("long long portability", "seq 1 1"),
# so only these are checked. The rule labeler wrote "Review the the latest <product> release
# notes" into every unknown label of an entry without a version until session 31.
FUNCTION_WORDS = {"a", "an", "the", "and", "or", "of", "to", "for", "from", "in", "on", "at", "by",
                  "with", "into", "using", "is", "are", "be"}


DOUBLED_RE = re.compile(r"(?<!\S)(" + "|".join(sorted(FUNCTION_WORDS)) + r")(?:\s+\1(?![\w-]))+", re.I)


def doubled_word(text: str) -> str | None:
    """The first function word said twice in a row outside code spans ("the the"), or None."""
    m = DOUBLED_RE.search(IDENT_RE.sub(" ` ", text))
    return m.group(1).lower() if m else None


def undouble(sentence: str) -> str:
    """`sentence` with each function word said twice in a row outside its `code` spans said
    once (the rule labeler joins templates to topics: "Consider using" + "using libksba ...")."""
    parts = re.split(r"(`[^`]*`)", sentence)
    return "".join(part if i % 2 else DOUBLED_RE.sub(r"\1", part) for i, part in enumerate(parts))


# Every reason code style_problems gives, in STYLE.md's order (a test holds the three together).
STYLE_CODES = ("style_subject_length", "style_subject_case", "style_action_not_imperative",
               "style_action_too_long", "style_action_not_one_sentence", "style_identifier_missing",
               "style_identifier_not_in_input", "style_version_not_in_input", "style_repeated_word",
               "style_tags")


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
    if doubled_word(label["subject"]) or doubled_word(action):
        problems.append("style_repeated_word")
    tags = label["tags"]
    if len(set(tags)) != len(tags) or any(not re.match(TAG_PATTERN, t) for t in tags):
        problems.append("style_tags")
    return sorted(problems)
