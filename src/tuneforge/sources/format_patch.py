"""`git format-patch` files and `git log -p --format=email` output: (diff, author's message) pairs.

A file is an mbox of one or more patches, each opened by ``From <40-hex sha> Mon Sep 17 00:00:00
2001`` (a lone patch may start at its ``From:`` header instead).  A patch is a header block
(From, Date, Subject: RFC 2047 encoded words, folded lines), a body, a ``---`` line, a diffstat,
the diff and a ``-- `` signature.  The entry's text is the diff, byte for byte; its hint is the
author's message: Subject, a blank line, the body.  Author names and e-mail addresses are dropped
from the message (trailer lines, any line holding an address, the header's display names).

The diff helpers here are shared with the DEP-3 format (``dep3``): both read the same diffs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import getaddresses

from tuneforge.sources import ParsedEntry, Rejected, SourceFormat, register

_SEPARATOR = re.compile(r"^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001\s*$")
_SEPARATOR_ANY = re.compile(r"^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001", re.MULTILINE)
# Bounded so a pathological line cannot make the sniff slow.
_UNIFIED = re.compile(r"^diff --git |^--- [^\n]{0,4000}\n\+\+\+ [^\n]{0,4000}\n@@ ", re.MULTILINE)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,60}):(?:[ \t]+(.*)|)$")
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# Lines of a message that name people or carry patch-tracking metadata, not prose: person
# trailers (Signed-off-by, Reviewed-by, Co-authored-by, ...), DEP-3 and gbp pseudo-headers, review
# and cherry-pick references.  "Fixes:", "Closes:" and "This reverts commit" stay: they say what
# kind of change it is.
_DROP_LINE = re.compile(
    r"^\s*(?:commit [0-9a-f]{7,40}\b|\(cherry picked from commit |--\s*$"
    r"|(?:[A-Za-z -]*[ -]by|From|Author|AuthorDate|Date|Commit|CommitDate|Cc|Origin|Bug(?:-[A-Za-z]+)*|"
    r"Forwarded|Reviewed-on|Differential Revision|PR-URL|Patch-Category|OpenBSD-Commit-ID|Applied-Upstream|"
    r"Last-Update|Gbp-[A-Za-z-]+|Change-Id|Patch-Name|Upstream-Status|X-[A-Za-z-]+|Status[\w ]{0,20}|"
    r"Upstream[ -]status|Related bugs)\s*:)", re.IGNORECASE)


# People named in prose by a cue ("Thanks to Jane Roe", "Reported by Jane Roe", "[Jane Roe: backport]",
# "Jane Roe wrote:"): two to four capitalised words.  Crude but safe: a line it hits is dropped.
_NAME = r"(?:[A-Z][\w'\u2019.-]*)(?:\s+(?:[a-z]{1,3}\s+)?[A-Z][\w'\u2019.-]*){1,3}"
_CUED_NAME = re.compile(
    rf"(?:\b(?i:by|thanks(?:\s+to)?|thank\s+you|credits?\s+to|courtesy\s+of|from|and|cc)\s+{_NAME}\b"
    rf"|^\s*\[{_NAME}:|^\s*{_NAME}\s+wrote:|\bwrote:\s*$|(?:--|\u2014)\s*{_NAME}\b"  # a quote's "--Jane Roe"
    rf"|\b(?i:co-?)?(?i:author(?:s|ed)?)\b)")
_CUED_NAME_CLAUSE = re.compile(rf",?\s*\b(?i:by|thanks(?:\s+to)?|from)\s+{_NAME}\b")


def split_lines(text: str) -> list[str]:
    """Lines on "\n" only (a "\r" inside a diff is content); no phantom line after a final newline."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def has_unified_diff(text: str) -> bool:
    """A `diff --git` line, or a `--- `/`+++ ` pair followed by a hunk header."""
    return _UNIFIED.search(text) is not None


def is_diff_start(lines: list[str], i: int) -> bool:
    line = lines[i]
    if line.startswith(("diff --git ", "diff -", "Index: ")):
        return True
    return line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def find_diff_start(lines: list[str], start: int, end: int) -> int | None:
    for i in range(start, end):
        if is_diff_start(lines, i):
            return i
    return None


def read_diff(lines: list[str], start: int, end: int, first_line: int) -> tuple[str, int, str | None]:
    """(diff text, hunk count, error) for lines[start:end]: hunks are read by their counts, so a
    removed line "- " (shown as "-- ") inside a hunk is not taken for the signature line that
    ends the diff.  first_line: the 1-based file line of lines[0], for error messages."""
    old = new = hunks = 0
    last = start
    hunk_at = 0
    for i in range(start, end):
        line = lines[i].rstrip("\r")
        if old > 0 or new > 0:
            tag = line[:1]
            if tag == "\\":
                pass
            elif tag == " " or line == "":  # an editor may strip a blank context line's space
                old, new = old - 1, new - 1
            elif tag == "-":
                old -= 1
            elif tag == "+":
                new -= 1
            else:
                return "", hunks, f"hunk at line {hunk_at} ends early at line {first_line + i}"
            if old < 0 or new < 0:
                return "", hunks, f"hunk at line {hunk_at} holds more lines than its header says"
            last = i + 1
            continue
        if line.startswith("@@"):
            m = _HUNK.match(line)
            if not m:
                return "", hunks, f"malformed hunk header at line {first_line + i}"
            old = int(m.group(2)) if m.group(2) is not None else 1
            new = int(m.group(4)) if m.group(4) is not None else 1
            hunks += 1
            hunk_at = first_line + i
            last = i + 1
        elif line == "-- ":  # git's signature: "-- " then the git version
            break
        elif line.strip():
            last = i + 1
    if (old > 0 or new > 0) and old != new:  # a truncated hunk (missing context alone is tolerated)
        return "", hunks, f"hunk at line {hunk_at} is cut short by the end of the patch"
    return "\n".join(lines[start:last]) + "\n", hunks, None


def person_names(value: str) -> list[str]:
    """Display names in a From/Author/trailer value ("Jane Roe <j@x>", "j@x (Jane Roe)",
    '"Roe, Jane" <j@x>', which also gives "Jane Roe")."""
    if "@" not in value:  # "Author: Jane Roe" or "Jane Roe, Sam Poe": names without addresses
        parts = [value] + value.replace(" and ", ",").split(",")
        return [n for n in (" ".join(p.split()) for p in parts) if len(n.split()) >= 2]
    names = []
    for name, _addr in getaddresses([value]):
        name = " ".join(name.split())
        if "," in name:
            last, _, first = name.partition(",")
            names.append(" ".join(f"{first} {last}".split()))
        names.append(name)
    # a one-word name ("Debian") is too often a common word to cut from a message
    return [n for n in names if len(n.split()) >= 2]


def scrub_message(lines: list[str], names: list[str]) -> list[str]:
    """The message lines without people: trailers, metadata lines, lines with an e-mail address or
    a known author name.  Trailing whitespace goes; runs of blank lines become one."""
    name_re = (re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in names), re.IGNORECASE)
               if names else None)
    out: list[str] = []
    dropped_field = False
    for line in lines:
        line = line.rstrip()
        if dropped_field and line[:1] in (" ", "\t"):  # the dropped field's continuation lines
            continue
        dropped_field = bool(_DROP_LINE.match(line))
        if (dropped_field or _EMAIL.search(line) or _CUED_NAME.search(line)
                or (name_re and name_re.search(line))):
            continue
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def scrub_subject(subject: str, names: list[str]) -> str:
    """The summary line with e-mail addresses and known author names cut out (not dropped: a
    subject is the one line a message cannot lose)."""
    subject = _CUED_NAME_CLAUSE.sub("", _EMAIL.sub("", subject))
    for name in names:
        subject = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", "", subject, flags=re.IGNORECASE)
    return " ".join(subject.replace("<>", "").split())


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded; raises ValueError when they cannot be."""
    try:
        return " ".join(str(make_header(decode_header(value))).split())
    except (HeaderParseError, LookupError, UnicodeError) as e:
        raise ValueError(f"cannot decode {value[:80]!r}: {e}") from None


def read_fields(lines: list[str], start: int, end: int, names: re.Pattern | None = None,
                ) -> tuple[list[tuple[str, list[str]]], int]:
    """RFC 822-like fields from lines[start:]: [(name, [value, continuation lines...])] and the
    index of the first line after them (a blank line, or the first line that is not a field;
    with `names`, a field whose name it does not match is prose: "distutils: add an option")."""
    fields: list[tuple[str, list[str]]] = []
    i = start
    while i < end:
        line = lines[i].rstrip("\r")
        m = _FIELD.match(line)
        if m and (names is None or names.fullmatch(m.group(1))):
            fields.append((m.group(1), [m.group(2) or ""]))
        elif fields and line[:1] in (" ", "\t") and line.strip():
            fields[-1][1].append(line)
        else:
            break
        i += 1
    return fields, i


def field(fields: list[tuple[str, list[str]]], *names: str) -> list[str] | None:
    wanted = {n.lower() for n in names}
    return next((v for k, v in fields if k.lower() in wanted), None)


def patch_unit(lines: list[str], lineno: int, summary: str, body: list[str], names: list[str],
               diff_at: int | None, end: int, no_summary: str) -> Iterator[ParsedEntry | Rejected]:
    """One patch's outcome, for both patch formats: the (diff, message) entry, or why not."""
    summary = scrub_subject(summary, names)
    if not summary:
        yield Rejected("patch_without_message", f"line {lineno}: {no_summary}", lineno)
        return
    message = "\n".join([summary, ""] + scrub_message(body, names)).rstrip("\n")
    if diff_at is None:
        yield Rejected("patch_without_diff", f"line {lineno}: patch {summary[:60]!r} has no diff", lineno)
        return
    diff, hunks, error = read_diff(lines, diff_at, end, 1)
    if error:
        yield Rejected("unparseable_patch", error, lineno)
    elif not hunks:
        yield Rejected("patch_without_diff",
                       f"line {lineno}: the diff has no text hunk (binary, mode or rename only)", lineno)
    else:
        yield ParsedEntry(text=diff, hint=message, version=None, line=lineno)


def people_in(fields: list[tuple[str, list[str]]], lines: list[str]) -> list[str]:
    """Names from From/Author fields and from person trailers anywhere in `lines`."""
    names: list[str] = []
    for key, value in fields:
        if key.lower() in ("from", "author", "cc", "to") or key.lower().endswith("-by"):
            joined = " ".join(v.strip() for v in value)
            try:
                joined = decode_words(joined)
            except ValueError:
                pass
            names += person_names(joined)
    for line in lines:
        m = _DROP_LINE.match(line)
        if m and "@" in line:
            names += person_names(line[m.end():])
    return names


@register
class FormatPatch(SourceFormat):
    """`git format-patch` mboxes: one entry per patch, the diff verbatim, the message as hint."""

    name = "format_patch"
    verbatim = True

    def sniff(self, path: str, text: str) -> int:
        head = text[:4000]
        mailish = bool(_SEPARATOR_ANY.search(head)) or (
            re.search(r"^From: ", head, re.MULTILINE) is not None
            and re.search(r"^Subject: ", head, re.MULTILINE) is not None
            and re.search(r"^Date: ", head, re.MULTILINE) is not None)
        if not mailish:
            return 0
        if has_unified_diff(text):
            return 95
        # an mbox of patches with no hunk at all (merges, binary-only): claimed to be rejected
        return 50 if _SEPARATOR_ANY.search(text) else 0

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry | Rejected]:
        lines = split_lines(text)
        starts = [i for i, line in enumerate(lines) if _SEPARATOR.match(line)]
        if not starts or any(line.strip() for line in lines[:starts[0]]):
            starts.insert(0, 0)  # a lone patch opening at its From: header, or a prelude
        stacked: list[int] = []  # header-only patches right above this one (their diff is below)
        for begin, end in zip(starts, starts[1:] + [len(lines)], strict=True):
            units = list(self._unit(lines, begin, end))
            _, body_at = read_fields(lines, begin + 1, end)
            if _SEPARATOR.match(lines[begin]) and not any(line.strip() for line in lines[body_at:end]):
                stacked.append(begin + 1)  # headers and nothing else
                continue
            if stacked:  # one diff under several commits' headers: no one message describes it
                where = ", ".join(map(str, stacked + [begin + 1]))
                for at in stacked + [begin + 1]:
                    yield Rejected("unparseable_patch", f"line {at}: {len(stacked) + 1} patch headers "
                                   f"(lines {where}) stacked over one diff", at)
                stacked = []
                continue
            yield from units
        for at in stacked:  # header-only patches at the end of the file
            yield Rejected("patch_without_diff", f"line {at}: patch headers with no message body or diff", at)

    def _unit(self, lines: list[str], begin: int, end: int) -> Iterator[ParsedEntry | Rejected]:
        lineno = begin + 1
        head = begin + 1 if _SEPARATOR.match(lines[begin]) else begin
        fields, body_at = read_fields(lines, head, end)
        subject = field(fields, "Subject")
        diff_at = find_diff_start(lines, body_at, end)
        if subject is None:
            if diff_at is None and head == begin:
                return  # prose before the first patch: not a patch
            reason = "patch_without_message" if diff_at is not None else "unparseable_patch"
            yield Rejected(reason, f"line {lineno}: patch has no Subject header", lineno)
            return
        try:
            summary = decode_words("".join([subject[0]] + subject[1:]))
        except ValueError as e:
            yield Rejected("unparseable_patch", f"line {lineno}: Subject: {e}", lineno)
            return
        stop = diff_at if diff_at is not None else end
        body_end = next((i for i in range(body_at, stop) if lines[i].rstrip() == "---"), stop)
        body = lines[body_at:body_end]
        names = people_in(fields, body)
        yield from patch_unit(lines, lineno, summary, body, names, diff_at, end, "the Subject is empty")
