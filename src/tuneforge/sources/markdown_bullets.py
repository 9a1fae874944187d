"""Markdown changelogs that are not Keep a Changelog: ATX or setext release headings over bullets."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.sources import ParsedEntry, SourceFormat, register
from tuneforge.sources.common import (
    _BULLET_OR_NUMBER,
    _FENCE,
    _LABEL,
    _REFDEF,
    _atx,
    _bare_name,
    _BulletBody,
    _clean_hint,
    _head,
    _kept,
    _lines,
    _md_clean,
    _Sections,
    _setext_underline,
    _starts_block,
    _version_in,
)

_HTML_BLOCK = re.compile(r"^<(table|details|pre)\b", re.IGNORECASE)
_HTML_TAG_LINE = re.compile(r"^</?[a-zA-Z][^>]*>$")


@register
class MarkdownBullets(SourceFormat):
    """Markdown changelogs: ATX/setext release headings over (possibly commit-style) bullets."""

    name = "markdown_bullets"

    def sniff(self, path: str, text: str) -> int:
        name = _bare_name(path)
        head = _head(text)
        atx = [h[1] for ln in head if (h := _atx(ln))]
        setext = [head[i] for i in range(len(head)) if _setext_underline(head, i)]
        versions = sum(1 for t in atx + setext if _version_in(t))
        bullets = sum(1 for ln in head if _BULLET_OR_NUMBER.match(ln))
        if name.endswith(".md"):
            if bullets and (versions or setext):
                return 75
            return 0
        # Without the extension, ATX headings are what tell markdown from reST/plain NEWS.
        if versions and bullets and atx:
            return 60
        return 0

    def parse(self, path: str, text: str) -> Iterator[ParsedEntry]:
        lines = _lines(text)
        sections = _Sections()
        body = _BulletBody(clean=_md_clean, numbered=True)
        fenced = False
        in_html: str | None = None  # closing marker while inside <table>/<!-- --> blocks
        skip_underline = False

        for i, line in enumerate(lines):
            lineno = i + 1
            if skip_underline:
                skip_underline = False
                continue
            if ("`" in line[:6] or "~" in line[:6]) and _FENCE.match(line):  # fences open within 6 chars
                fenced = not fenced
                entry = body.close()
                if _kept(entry):
                    yield entry
                continue
            if fenced:
                continue
            stripped = line.strip()
            if in_html is not None:
                if in_html in stripped.lower():
                    in_html = None
                continue
            if stripped.startswith("<!--"):
                if "-->" not in stripped:
                    in_html = "-->"
                continue
            html = stripped.startswith("<")
            if html and _HTML_BLOCK.match(stripped):
                tag = stripped[1:].split(">")[0].split()[0].lower()
                if f"</{tag}>" not in stripped.lower():
                    in_html = f"</{tag}>"
                continue
            if html and _HTML_TAG_LINE.match(stripped) or "[" in line[:4] and _REFDEF.match(line):
                continue  # anchors like <a id="21.1.0"></a>, link reference definitions
            atx = _atx(line)
            # A would-be title right after an entry line is a wrapped line of that entry.
            setext = (atx is None and (body.cur is None or body.blank)
                      and _setext_underline(lines, i))
            if atx or setext:
                entry = body.close()
                if _kept(entry):
                    yield entry
                skip_underline = bool(setext)
                if atx:
                    sections.heading(*atx)
                else:
                    sections.heading(1 if lines[i + 1].strip().startswith("=") else 2, stripped)
                continue
            if _starts_block(lines, i):
                label = _LABEL.match(line)
                if label and len(label.group(1).split()) <= 12:
                    entry = body.close()
                    if _kept(entry):
                        yield entry
                    sections.hint = _clean_hint(label.group(1))
                    continue
            entry = body.feed(lineno, line, sections.hint, sections.version)
            if _kept(entry):
                yield entry
        entry = body.close()
        if _kept(entry):
            yield entry
