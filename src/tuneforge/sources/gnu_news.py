"""GNU-style NEWS files, outline (``* ``/``** ``) and plain layouts."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.sources import ParsedEntry, SourceFormat, register
from tuneforge.sources.common import (
    _BULLET,
    _LABEL,
    _Acc,
    _clean_hint,
    _emit,
    _head,
    _indent,
    _kept,
    _lines,
    _setext_underline,
    _version_in,
)


@register
class GnuNews(SourceFormat):
    """GNU NEWS: ``* Noteworthy changes in release X`` outlines with ``** Section`` headings.

    Also the plainer GNU layout (glibc, binutils, tar, patch): unstarred ``Version X`` /
    ``Changes in X:`` release lines, ``Label:`` sections and ``*`` bullets.  Entries are
    bullets or indented paragraphs.
    """

    name = "gnu_news"
    _STAR_RELEASE = re.compile(r"^\*[ \t]+(?:GNU[ \t]+\S+[ \t]+)?(?:noteworthy|major|changes|"
                               r"release|version|what'?s new)\b", re.IGNORECASE)
    _PLAIN_RELEASE = re.compile(r"^(?:GNU[ \t]+\S+[ \t]+)?(?:(?:noteworthy|major|user-visible)"
                                r"[ \t]+)?(?:changes[ \t]+(?:in|until|for|from)\b|version\b|"
                                r"release\b)", re.IGNORECASE)
    _SUB = re.compile(r"^(\*{2,})[ \t]+(.*)$")
    _RULE = re.compile(r"^[ \t]*[=\-]{10,}[ \t]*$")
    _NAMED_RELEASE = re.compile(r"^[A-Z][\w.+-]*[ \t]+v?\d+(?:\.\d+)+[a-z]?[ \t]*:?[ \t]*$")  # "Sed 4.2"
    _MARKER = re.compile(r"^[ \t]*\[([\w.\-]+)\][ \t]*$")  # coreutils' "[4.5.2]" sub-releases

    def _release(self, lines: list[str], i: int) -> str | None:
        line = lines[i]
        if len(line) > 100 or not (self._STAR_RELEASE.match(line)
                                   or self._PLAIN_RELEASE.match(line)
                                   or self._NAMED_RELEASE.match(line)):
            return None
        if _setext_underline(lines, i):
            return None  # underlined titles are the reST/setext layout, not GNU's
        return _version_in(line.lstrip("* \t"))

    def sniff(self, path: str, text: str) -> int:
        head = _head(text, 200)
        if head and "-*- outline -*-" in head[0]:
            return 90
        starred = sum(1 for i, ln in enumerate(head[:60])
                      if ln.startswith("*") and self._release(head, i))
        subs = sum(1 for ln in head[:60] if self._SUB.match(ln))
        if starred and subs:
            return 85
        if starred and any(ln.startswith("* Noteworthy") for ln in head):
            return 80
        plain = sum(1 for i, ln in enumerate(head)
                    if ln[:1].isalpha() and self._release(head, i))
        bullets = sum(1 for ln in head if ln.startswith("* "))
        if plain and bullets >= 2:
            return 55
        return 0

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry]:
        lines = [ln.expandtabs() for ln in _lines(text)]
        version: str | None = None
        hint: str | None = None
        cur: _Acc | None = None
        blank = False

        def emit(acc: _Acc | None) -> ParsedEntry | None:
            entry = _emit(acc)
            return entry if _kept(entry) else None

        def next_nonblank(j: int) -> str | None:
            for k in range(j, min(len(lines), j + 50)):
                if lines[k].strip():
                    return lines[k]
            return None

        for i, line in enumerate(lines):
            lineno = i + 1
            if not line.strip():
                blank = True
                continue
            rel = self._release(lines, i) if line[:1] not in (" ", "\t", "") else None
            sub = self._SUB.match(line)
            bullet = _BULLET.match(line)
            marker = self._MARKER.match(line)
            label = _LABEL.match(line) if line[:1].isalpha() else None
            if rel or self._RULE.match(line) or marker:
                entry = emit(cur)
                if entry:
                    yield entry
                cur = None
                if rel:
                    version, hint = rel, None
                elif marker:
                    version = _version_in(marker.group(1)) or version
                else:
                    version, hint = None, None  # footer: copying conditions, pointers
            elif sub:
                entry = emit(cur)
                if entry:
                    yield entry
                cur = None
                title = sub.group(2)
                alone = i + 1 >= len(lines) or not lines[i + 1].strip()
                after = next_nonblank(i + 1)
                # "** Bug fixes" heads paragraphs; wget-style "** Fix X" lines are the entries.
                if alone and not title.rstrip().endswith(".") and after is not None \
                        and not after.lstrip().startswith("*"):
                    hint = _clean_hint(title)
                else:
                    cur = _Acc(lineno, 0, hint, version, title)
            elif label and (cur is None or blank) and len(label.group(1).split()) <= 12:
                entry = emit(cur)
                if entry:
                    yield entry
                cur = None
                hint = _clean_hint(label.group(1))
            elif bullet:
                entry = emit(cur)
                if entry:
                    yield entry
                cur = _Acc(lineno, len(bullet.group(1)), hint, version, bullet.group(3))
            elif cur is not None and (not blank or _indent(line) > cur.indent
                                      or line.lstrip().startswith("[")):
                cur.parts.append(line)
            else:
                entry = emit(cur)
                if entry:
                    yield entry
                cur = _Acc(lineno, _indent(line), hint, version, line)
            blank = False
        entry = emit(cur)
        if entry:
            yield entry
