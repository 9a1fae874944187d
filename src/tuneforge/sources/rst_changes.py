"""reStructuredText-style CHANGES/NEWS/history files."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.sources import ParsedEntry, SourceFormat, register
from tuneforge.sources.common import (
    _BULLET,
    _LABEL,
    _UNDERLINE,
    _bare_name,
    _BulletBody,
    _clean_hint,
    _head,
    _indent,
    _lines,
    _Sections,
    _setext_underline,
    _starts_block,
    _version_in,
)


@register
class RstChanges(SourceFormat):
    """reST-style CHANGES/NEWS/history: underlined release titles, underlined sections, bullets."""

    name = "rst_changes"

    def sniff(self, path: str, text: str) -> int:
        name = _bare_name(path)
        rst = name.endswith((".rst", ".rst.txt"))
        if name.endswith(".md"):
            return 0  # markdown_bullets' job (decided before the title scan below, the costly part)
        # Long release sections (Python's NEWS) push the second release title far down.
        head = _head(text, 3000, 300_000)
        if not rst and any(re.match(r"#{2,6} \S", ln) for ln in head[:200]):
            return 0  # setext titles with ATX sections: markdown_bullets' job
        titles = [head[i] for i in range(len(head) - 1) if _setext_underline(head, i)]
        if rst:
            return 80 if titles else 40
        versioned = sum(1 for t in titles if _version_in(t))
        bullets = any(_BULLET.match(ln) for ln in head)
        if versioned >= 2 and bullets:
            return 65
        return 0

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry]:
        lines = _lines(text)
        sections = _Sections()
        styles: dict[tuple[str, bool], int] = {}
        body = _BulletBody(numbered=True)
        skip = 0
        directive_indent: int | None = None
        for i, line in enumerate(lines):
            if skip:
                skip -= 1
                continue
            stripped = line.strip()
            if directive_indent is not None:
                if not stripped or _indent(line) > directive_indent:
                    continue
                directive_indent = None
            if stripped.startswith(".. ") or stripped == "..":
                entry = body.close()
                if entry:
                    yield entry
                directive_indent = _indent(line)  # comment/directive and its indented body
                continue
            if re.match(r"^:[\w-]+:", stripped) and body.cur is None:
                continue  # field list (":tocdepth: 2")
            # Overlined title: ===== / Title / =====
            over = (_UNDERLINE.match(stripped) and i + 2 < len(lines) and lines[i + 1].strip()
                    and _UNDERLINE.match(lines[i + 2].strip()))
            under = (body.cur is None or body.blank) and _setext_underline(lines, i)
            if over or under:
                entry = body.close()
                if entry:
                    yield entry
                title = lines[i + 1] if over else line
                skip = 2 if over else 1
                # reST levels follow the order in which underline styles first appear
                style = (lines[i + 2 if over else i + 1].strip()[0], bool(over))
                sections.heading(styles.setdefault(style, len(styles) + 1), title)
                continue
            if _UNDERLINE.match(stripped):
                entry = body.close()  # transition line
                if entry:
                    yield entry
                continue
            if _starts_block(lines, i):
                label = _LABEL.match(line)
                if label and len(label.group(1).split()) <= 12:
                    entry = body.close()
                    if entry:
                        yield entry
                    sections.hint = _clean_hint(label.group(1))
                    continue
            entry = body.feed(i + 1, line, sections.hint, sections.version)
            if entry:
                yield entry
        entry = body.close()
        if entry:
            yield entry
