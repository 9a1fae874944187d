"""debian/changelog and NEWS.Debian files."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.sources import ParsedEntry, SourceFormat, register
from tuneforge.sources.common import _BULLET, _Acc, _clean_hint, _emit, _head, _indent, _lines


@register
class DebianChangelog(SourceFormat):
    """debian/changelog (and NEWS.Debian): ``pkg (ver) dist; urgency=`` stanzas."""

    name = "debian_changelog"
    _HEADER = re.compile(r"^(\w[\w.+-]*)[ \t]+\(([^()\s]+)\)[ \t]+([^;]+);[ \t]*[\w-]+=\S*")
    _TRAILER = re.compile(r"^ -- ")
    _GROUP = re.compile(r"^[ \t]+\[[^\]]+\][ \t]*$")  # "[ Name ]" co-maintainer groups

    def sniff(self, path: str, text: str) -> int:
        head = [ln for ln in _head(text, 40) if ln.strip()]
        if head and self._HEADER.match(head[0]):
            return 95
        if any(self._HEADER.match(ln) for ln in head[:5]):
            return 80
        return 0

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry]:
        version: str | None = None
        top_indent: int | None = None  # indent of this stanza's "  * " bullets
        group_hint: str | None = None  # "* debian/control:" heading over its sub-bullets
        cur: _Acc | None = None
        prose = False  # cur is an unbulleted paragraph (NEWS.Debian style)
        blank = False
        for lineno, raw in enumerate(_lines(text), 1):
            line = raw.expandtabs()
            if not line.strip():
                blank = True
                continue
            header = self._HEADER.match(line)
            bullet = _BULLET.match(line)
            if header or self._TRAILER.match(line) or self._GROUP.match(line) \
                    or line[0] not in " \t":
                entry = _emit(cur)
                if entry:
                    yield entry
                cur = None
                if header:
                    version, top_indent, group_hint = header.group(2), None, None
                elif self._TRAILER.match(line):
                    version = None  # between sign-off and next header nothing is an entry
            elif bullet:
                ind = len(bullet.group(1))
                words = cur.text().split() if cur is not None else []
                if (cur is not None and ind > cur.indent and cur.indent == top_indent
                        and words and words[-1].endswith(":") and len(words) <= 12):
                    # "* New upstream release:" followed by sub-bullets is their heading
                    group_hint = _clean_hint(cur.text())
                else:
                    entry = _emit(cur)
                    if entry:
                        yield entry
                if top_indent is None or ind <= top_indent:
                    top_indent, group_hint = ind, None
                cur = _Acc(lineno, ind, group_hint if ind > top_indent else None, version,
                           bullet.group(3))
                prose = False
            elif cur is not None and (_indent(line) > cur.indent or (not blank and prose)):
                cur.parts.append(line)  # wrapped line (bullets never continue lazily here)
            else:
                # Unbulleted text: a NEWS.Debian paragraph, or a note under the bullets.
                entry = _emit(cur)
                if entry:
                    yield entry
                cur = _Acc(lineno, _indent(line), None, version, line)
                prose = True
            blank = False
        entry = _emit(cur)
        if entry:
            yield entry
