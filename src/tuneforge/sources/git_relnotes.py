"""git's Documentation/RelNotes/<version>.txt files."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.sources import ParsedEntry, SourceFormat, register
from tuneforge.sources.common import (
    _bare_name,
    _BulletBody,
    _clean_hint,
    _head,
    _indent,
    _lines,
    _norm,
    _setext_underline,
    _version_in,
)


@register
class GitRelNotes(SourceFormat):
    """git's Documentation/RelNotes: a ``====``-underlined title, ``----`` sections, `` * `` bullets."""

    name = "git_relnotes"
    _TITLE = re.compile(r"^\s*git\b.*\brelease notes\s*$", re.IGNORECASE)
    # "(merge 0e6fd2b3c1 jk/topic later to maint)." is integration bookkeeping, not content.
    _MERGE = re.compile(r"[ \t]*\(merge [0-9a-f]{6,40} [^()\s]{1,100}(?: [^()]{0,100})?\)\.?[ \t]*$")

    def sniff(self, path: str, text: str) -> int:
        head = _head(text, 6)
        for i, line in enumerate(head[:3]):
            if self._TITLE.match(line) and i + 1 < len(head) and head[i + 1].strip().startswith("==="):
                return 95
        if "relnotes/" in path.replace("\\", "/").lower() and re.search(
                r"release notes", text[:2000], re.IGNORECASE):
            return 60
        return 0

    def _version(self, path: str, title: str) -> str | None:
        v = _version_in(title)
        stem = _bare_name(path).removesuffix(".txt")
        # Titles say "v2.39" while the file is 2.39.0.txt; older titles name a path.
        if re.fullmatch(r"\d+(?:\.\d+)+(?:\.?rc\d+)?", stem) and (v is None or stem.startswith(v)):
            return stem
        return v

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry]:
        lines = _lines(text)
        version: str | None = None
        hint: str | None = None
        body = _BulletBody(clean=lambda t: self._MERGE.sub("", t))
        skip = False
        for i, line in enumerate(lines):
            if skip:
                skip = False
                continue
            if (body.cur is None or body.blank) and _setext_underline(lines, i) \
                    and _indent(line) == 0:
                entry = body.close()
                if entry:
                    yield entry
                skip = True
                if lines[i + 1].strip().startswith("=") and version is None:
                    version = self._version(path, line)
                    if version is None:
                        version = _norm(line)  # keep the entries even with an odd title
                else:
                    hint = _clean_hint(line)
                continue
            if version is None and self._TITLE.match(line):
                version = self._version(path, line) or _norm(line)
                continue
            entry = body.feed(i + 1, line, hint, version)
            if entry:
                yield entry
        entry = body.close()
        if entry:
            yield entry
