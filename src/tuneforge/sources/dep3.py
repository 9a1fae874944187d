"""DEP-3 patches (https://dep-team.pages.debian.net/deps/dep3/) and every other unified diff.

A DEP-3 patch opens with one or two sets of RFC 822-like fields (``Description:`` or ``Subject:``
whose first line is the summary and whose continuation lines, a lone " ." standing for a blank
line, are the long description; ``Author:``, ``Origin:``, ``Bug*:``, ``Forwarded:``,
``Last-Update:`` ...), then free text (more long description), then the diff; a ``---`` line ends
the meta-information.  Other shapes Debian's patches take: dpatch's ``## DP:`` and gcc's ``# DP:``
comment lines, DEP-3 fields in ``# `` comments, ``hg export`` headers, a pasted ``git show`` header,
GNU bash's patch reports (``Bug-Description:``), shadow's ``Goal:``, and plain prose over the diff
(its first paragraph, or first sentence, is the summary).  The file is one entry: its text is
the diff, verbatim; its hint is summary + blank line + long description, without people (see
``format_patch.scrub_message``).

This format also claims any file holding a unified diff that no better format does, so a bare
patch (a diff with no message) is quarantined as ``patch_without_message`` rather than left as
an unknown file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from textwrap import dedent

from tuneforge.sources import ParsedEntry, Rejected, SourceFormat, register
from tuneforge.sources.format_patch import (
    field,
    find_diff_start,
    has_unified_diff,
    patch_unit,
    people_in,
    read_fields,
    scrub_message,
    split_lines,
)

_SUMMARY_KEY = re.compile(r"^(?:Description|Subject):", re.MULTILINE | re.IGNORECASE)
_SUMMARY_FIELDS = ("Description", "Subject", "Bug-Description", "Goal")  # bash upstream's; shadow's
# Field names a DEP-3 header holds (and neighbours seen in Debian's patches); any other "word:" line
# starts prose ("distutils: add an option ...").
_FIELD_NAMES = re.compile(
    r"(?i:Description|Subject|Goal|Author|From|Origin|Bug(?:-[\w-]+)?|Forwarded|Applied-Upstream|"
    r"[\w-]+-by|Last-Update|Date|Upstream-Status|Status|Patch-Name|Bash-Release|Patch-ID|Fixes|Closes|"
    r"Gbp-[\w-]+|X-[\w-]+|Change-Id|Cc|Comment|Note)")
# Boilerplate some tools write under the fields; not the author's words.
_BOILERPLATE = re.compile(r"^\s*(?:This patch header follows DEP-3|@DPATCH@\s*$)", re.IGNORECASE)
_DPATCH_DP = re.compile(r"^##?\s?DP:\s?(.*)$")  # dpatch's "## DP:", gcc/binutils' "# DP:"
_BULLET = re.compile(r"^\s*[-*+]\s")
_COMMENT = re.compile(r"^#+(?: |$)")
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]'\"])\.\s+(?=[A-Z])")


def _meta_lines(lines: list[str], end: int) -> list[str]:
    """The lines before the diff, with dpatch and comment-style DEP-3 prefixes taken off."""
    meta = [line.rstrip("\r") for line in lines[:end]]
    if any(_DPATCH_DP.match(line) for line in meta):  # dpatch: only the "DP:" lines describe
        return [m.group(1) for m in map(_DPATCH_DP.match, meta) if m]
    if meta and meta[0].startswith("#!"):
        meta = meta[1:]
    if meta and meta[0].strip() == "# HG changeset patch":  # hg export: "# User", "# Date", ... then text
        top = next((i for i, line in enumerate(meta) if not line.startswith("#")), len(meta))
        users = [line[len("# User "):] for line in meta[:top] if line.startswith("# User ")]
        meta = [f"From: {user}" for user in users] + [""] + meta[top:]
    meta = [_COMMENT.sub("", line) for line in meta]  # "# Description: x" (DEP-3 in comments)
    return [line for line in meta if not _BOILERPLATE.match(line)]


def _split_summary(paragraph: list[str]) -> tuple[str, list[str]]:
    """A free-text paragraph as (summary, rest): its first sentence when the whole is too long
    for a subject line (free text wraps; its first line is often half a sentence)."""
    bullet = next((i for i, line in enumerate(paragraph) if i and _BULLET.match(line)), len(paragraph))
    joined = " ".join(" ".join(paragraph[:bullet]).split())
    rest = paragraph[bullet:]  # "Add an option, which\n- installs ...\n- keeps ...": the list is body
    m = _SENTENCE_END.search(joined, 0, 200)
    if len(joined) > 72 and m:
        return joined[:m.start() + 1], [joined[m.end():], *rest]
    return joined, rest


def _paragraphs(meta: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for line in meta:
        if line.strip():
            out[-1].append(line)
        elif out[-1]:
            out.append([])
    return [p for p in out if p]


def _long_description(value: list[str]) -> tuple[str, list[str]]:
    """(summary, long description lines) of a Description/Subject field value."""
    rest = []
    for line in value[1:]:
        line = line[1:] if line[:1] in (" ", "\t") else line
        rest.append("" if line.strip() == "." else line)  # " ." is DEP-3's blank line
    rest = dedent("\n".join(rest)).split("\n") if rest else []
    summary = value[0].strip()
    m = _SENTENCE_END.search(summary)
    if m and rest and rest[0][:1].islower():  # "Fix x. While y\n are z": the summary runs on
        rest = [summary[m.end():] + " " + rest[0].strip(), *rest[1:]]
        summary = summary[:m.start() + 1]
    if not summary:  # "Description:" alone, the text on the lines below
        while rest and not rest[0].strip():
            rest.pop(0)
        summary = rest.pop(0).strip() if rest else ""
    return summary, rest


@register
class Dep3(SourceFormat):
    """DEP-3 headed patches, dpatch patches and bare diffs (the last are rejected)."""

    name = "dep3"
    verbatim = True

    def sniff(self, path: str, text: str) -> int:
        if has_unified_diff(text):
            return 90
        head = text.lstrip()[:4000]
        # a DEP-3 header with no diff: claimed so that it is quarantined as patch_without_diff
        # (gcc's "# DP:" headers over a diff the build generates; "Description:" over one cut out)
        return 50 if _SUMMARY_KEY.match(head) or _DPATCH_DP.match(head.split("\n", 1)[0]) else 0

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry | Rejected]:
        lines = split_lines(text)
        n = len(lines)
        first = next((i for i, line in enumerate(lines) if line.strip()), 0)
        lineno = first + 1
        diff_at = find_diff_start(lines, 0, n)
        meta_end = diff_at if diff_at is not None else n
        meta_end = next((i for i in range(meta_end) if lines[i].rstrip() == "---"), meta_end)
        fields: list[tuple[str, list[str]]] = []
        free: list[tuple[int, list[str]]] = []  # (paragraph index, lines that are not fields)
        desc_at = -1
        paras = _paragraphs(_meta_lines(lines, meta_end))
        for k, para in enumerate(paras):
            found, after = read_fields(para, 0, len(para), _FIELD_NAMES)
            fields += found
            if desc_at < 0 and field(found, *_SUMMARY_FIELDS) is not None:
                desc_at = k
            if after < len(para):
                free.append((k, para[after:]))
        names = people_in(fields, [line for para in paras for line in para])
        value = field(fields, *_SUMMARY_FIELDS)
        summary, long = _long_description(value) if value else ("", [])
        if value is not None and not summary:  # "Bug-Description:" alone: the text below it
            free = [(k, para) for k, para in free if k > desc_at]
        # people out before a paragraph becomes the summary ("commit <sha>\nAuthor: ..." pasted)
        texts = [kept for kept in (scrub_message(dedent("\n".join(p)).split("\n"), names) for _, p in free)
                 if kept]
        if not summary and texts:  # no field: the free text is the description
            summary, rest = _split_summary(texts[0])
            texts = [rest, *texts[1:]] if rest else texts[1:]
        body = list(long)
        for para in texts:
            body += [""] + para
        what = "only " + ", ".join(sorted({k for k, _ in fields})) if fields else "no header"
        yield from patch_unit(lines, lineno, summary, body, names, diff_at, n, f"patch has {what}")
