"""STYLE.md's rules, which a schema-valid label can still break: the scorer applies them to
training labels and eval to parsed answers. What a label may name is what the diff shows;
`identifiers` (what counts as a code identifier, path, version or issue number) is the one
definition the labeler, these checks and eval's invented-identifier figure share.

The checks read the label and the diff only: the model never sees the author's message, so
an answer is never judged by it. The one exception, style_message_not_normalised, flags a
label whose subject is what the labeler had to make up for a message the normaliser could not
bring to the rules (empty, or over 72 characters and cut), so that record goes to review
rather than training; an answer can only get it by writing exactly that subject.
"""
from __future__ import annotations

import json
import re

from tuneforge.tasks.commit_messages.normalise import (
    BODY_WORDS,
    TYPE_PREFIX_RE,
    cut_subject,
    fallback_subject,
    is_imperative,
    normalise,
)
from tuneforge.tasks.commit_messages.prompt import is_junk, parse_diff
from tuneforge.tasks.commit_messages.schema import SCOPE_CHAR, SUBJECT_MAX

# Tried left to right; each alternative is one kind of thing a message can name.
IDENT_RE = re.compile(
    r"(?<![\w#-])(?:CVE-\d{4}-\d{4,}"           # a CVE
    r"|#\d+"                                     # an issue number
    r"|v?\d+(?:\.\d+)+[a-z]?"                    # a version
    r"|--?[A-Za-z][\w-]*"                        # a command-line option
    r"|[\w.-]*/[\w./-]*\w"                       # a path
    r"|\w+\(\)"                                  # a call: name()
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+"          # dotted.name, file.ext
    r"|[A-Za-z]\w*_\w+|_\w+"                     # snake_case, _private, SOME_CONST
    r"|[a-z]+[A-Z]\w*|[A-Z][a-z0-9]+[A-Z][a-z]\w*"  # camelCase, PascalCase (not OpenSSL, NetBSD: names)
    r")(?![\w-])")
NOT_IDENTIFIERS = {"e.g", "i.e", "etc", "a.k.a"}
EXT_RE = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def _is_path(value: str) -> bool:
    """A slash makes a path only with more to it: a leading `/` or `./`, a second slash, or a
    file extension. `GNU/Hurd`, `and/or`, `create/resize` are words."""
    return value.startswith(("/", "./", "../")) or value.count("/") >= 2 or bool(EXT_RE.search(value))


def identifiers(text: str) -> list[str]:
    """Code identifiers, paths, versions, options and issue numbers `text` names, in order,
    without duplicates (a trailing `()` or sentence period is not part of the name)."""
    found: dict[str, None] = {}
    for m in IDENT_RE.finditer(text):
        value = m.group(0).rstrip(".")
        if value in NOT_IDENTIFIERS or len(value) < 2 or ("/" in value and not _is_path(value)):
            continue
        found.setdefault(value, None)
    return list(found)


def not_in_diff(text: str, diff: str) -> list[str]:
    """The identifiers `text` names that the diff does not contain (a call `f()` counts as
    shown when `f` is; a version may be written with or without its `v`)."""
    return [i for i in identifiers(text)
            if i.removesuffix("()").removeprefix("v") not in diff and i.removesuffix("()") not in diff]


# Every reason code style_problems gives, in STYLE.md's order (a test holds the three together).
STYLE_CODES = ("style_subject_too_long", "style_subject_trailing_period", "style_subject_not_imperative",
               "style_subject_has_type_prefix", "style_scope_not_in_diff", "style_body_too_long",
               "style_identifier_not_in_diff", "style_junk_not_ignored", "style_ignore_not_in_diff",
               "style_message_not_normalised")


def style_problems(label: dict, text: str, hint: str | None = None) -> list[str]:
    """STYLE.md rules a schema-valid label breaks, as reason codes, for diff `text` (and the
    author's message `hint`, read only for style_message_not_normalised)."""
    problems = []
    subject, body, scope = label["subject"], label.get("body"), label.get("scope")
    if len(subject) > SUBJECT_MAX:
        problems.append("style_subject_too_long")
    if subject.rstrip().endswith("."):
        problems.append("style_subject_trailing_period")
    if not is_imperative(TYPE_PREFIX_RE.sub("", subject)):  # a prefix is its own problem
        problems.append("style_subject_not_imperative")
    if TYPE_PREFIX_RE.match(subject):
        problems.append("style_subject_has_type_prefix")
    if scope and scope.lower() not in text.lower():
        problems.append("style_scope_not_in_diff")
    if body and len(body.split()) > BODY_WORDS:
        problems.append("style_body_too_long")
    if not_in_diff(f"{subject}\n{body or ''}", text):
        problems.append("style_identifier_not_in_diff")
    paths = [c.path for c in parse_diff(text)]
    ignore = set(label.get("ignore") or [])
    if any(is_junk(p) and p not in ignore for p in paths):
        problems.append("style_junk_not_ignored")
    if ignore - set(paths):
        problems.append("style_ignore_not_in_diff")
    if hint is not None:
        norm = normalise(hint, text)
        made_up = {fallback_subject([p for p in paths if not is_junk(p)] or paths)} if not norm.subject else set()
        if "subject_too_long" in norm.reasons:
            made_up.add(cut_subject(norm.subject))
        if subject in made_up:
            problems.append("style_message_not_normalised")
    return sorted(problems)


# ---------------------------------------------------------------- decoding: names copied, not made up

# A message's prose values, open or closed, in the answer's raw JSON text as it is decoded
_PROSE_RE = re.compile(r'"(subject|body)"\s*:\s*"((?:[^"\\]|\\.)*)')
_SCOPE_RE = re.compile(r'"scope"\s*:\s*"((?:[^"\\]|\\.)*)')
# The word being written: everything since the last space, without what opens or closes around
# a name (a bracket, a quote, a backtick) or ends a clause.
_TAIL_RE = re.compile(r"\S*$")
_OPENERS, _CLOSERS = "([{<`'\"", ".,:;!?)]}>`'\""
_NAME_MARK_RE = re.compile(r"[_/#]|\.|::|^-")


def _name_being_written(value: str) -> str | None:
    """The name `value` ends in, as far as it is written: the word since the last space without
    an opening bracket or quote, a closing one, a clause's punctuation or a call's `()`, once it
    holds what only a name holds (an underscore, a slash, an inner dot, `::`, `#`, a leading
    dash). None for a plain word. Checked as it is written, the model is turned away at the first
    character that leaves every name the diff shows, not after it has written itself into one
    no diff shows (`ldash.` then digits), and a word is one name however it is glued together
    (`jwt_<key>_jws`, where each piece alone could be part of a shown name)."""
    word = _TAIL_RE.search(value).group(0).lstrip(_OPENERS).rstrip(_CLOSERS)
    word = word.removesuffix("()").removesuffix("(")
    if not word or not _NAME_MARK_RE.search(word):
        return None
    if any(w.startswith(word) for w in NOT_IDENTIFIERS):  # e.g, i.e (a word, not a name)
        return None
    return word


def _json_prefix(raw: str) -> str:
    """A JSON string's content as far as it is decoded: an escape still being written (a lone
    backslash, `\\u00`) is left out until it is whole."""
    for cut in range(min(len(raw), 6) + 1):
        try:
            return json.loads(f'"{raw[:len(raw) - cut]}"')
        except ValueError:
            continue
    return ""


def copy_check(text: str):
    """Task.answer_check: for diff `text`, a test of an answer's raw JSON as it is decoded,
    token by token: False once its subject or body names an identifier the diff does not show
    (not_in_diff, the definition eval's invented-identifier figure counts), or is writing a name
    that is no longer part of one the diff shows (_name_being_written), or once its scope, as
    far as it is written, is no longer part of the diff's text (case aside, as STYLE's
    style_scope_not_in_diff reads it: the contract's scope is "only a name the diff's paths or
    text show. Never invented"). The diff's names are
    substrings of it, so a name still in the diff can become a shown one; one that has left
    it never can. The decoder turns the model to its next most likely token the grammar allows
    that passes (tuneforge.llama_private), so its answers name only what the diff shows,
    copied with the diff's spelling and case."""
    lowered = text.lower()

    def ok(answer: str) -> bool:
        for m in _SCOPE_RE.finditer(answer):
            scope = _json_prefix(m.group(1)).lower()
            # a `-` must be one the diff follows with a name character (schema.SCOPE_CHAR): a
            # scope written up to a `-` the diff follows with none (`postgresql-doc-*`) could only
            # be finished into a name it does not show, so the `-` itself is refused rather than
            # leave the decoder with no way on
            if scope not in lowered or (scope.endswith("-") and
                                        not re.search(re.escape(scope) + SCOPE_CHAR, lowered)):
                return False
        for m in _PROSE_RE.finditer(answer):
            value = _json_prefix(m.group(2))
            if not_in_diff(value, text):
                return False
            if m.end() == len(answer):  # the value being written
                name = _name_being_written(value)
                if name is not None and name not in text:
                    return False
        return True
    return ok
