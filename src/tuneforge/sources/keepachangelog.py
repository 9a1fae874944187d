"""Keep a Changelog files (keepachangelog.com): ``## [1.2.3] - date`` releases, ``### Added`` sections."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.sources import ParsedEntry, SourceFormat, register
from tuneforge.sources.common import (
    _FENCE,
    _REFDEF,
    _atx,
    _BulletBody,
    _clean_hint,
    _kept,
    _lines,
    _md_clean,
    _norm,
    _version_in,
)


@register
class KeepAChangelog(SourceFormat):
    """Keep a Changelog: ``## [1.2.3] - date`` releases, ``### Added`` sections, bullets."""

    name = "keepachangelog"
    _BRACKET = re.compile(r"^\[([^\]]+)\]")
    _KINDS = re.compile(r"^###[ \t]+(Added|Changed|Deprecated|Removed|Fixed|Security)\b",
                        re.MULTILINE | re.IGNORECASE)

    def sniff(self, path: str, text: str) -> int:
        head = text[:20000]
        if re.search(r"keepachangelog\.com|keep a changelog", head, re.IGNORECASE):
            return 98
        releases = sum(1 for m in re.finditer(r"^##[ \t]+\[([^\]\n]{1,80})\]", head, re.MULTILINE)
                       if any(ch.isdigit() for ch in m.group(1)))
        if releases and self._KINDS.search(head):
            return 90
        return 70 if releases else 0

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry]:
        version: str | None = None
        hint: str | None = None
        body = _BulletBody(clean=_md_clean, numbered=True)
        fenced = False
        for lineno, line in enumerate(_lines(text), 1):
            if _FENCE.match(line):
                fenced = not fenced
                entry = body.close()
                if _kept(entry):
                    yield entry
                continue
            if fenced:
                continue
            heading = _atx(line)
            if heading:
                entry = body.close()
                if _kept(entry):
                    yield entry
                level, title = heading
                if level == 2:
                    br = self._BRACKET.match(title)
                    # "[0.11.1]", "[Jansi 2.4.0][2_4_0]", "[Unreleased]"
                    inner = br.group(1) if br else title
                    version = _version_in(inner) or _norm(inner) or None
                    hint = None
                elif level > 2:
                    hint = _clean_hint(title)
                continue
            if _REFDEF.match(line):
                continue
            entry = body.feed(lineno, line, hint, version)
            if _kept(entry):
                yield entry
        entry = body.close()
        if _kept(entry):
            yield entry
