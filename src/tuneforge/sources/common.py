"""Helpers shared by the format modules: line splitting, whitespace normalisation, version and
heading recognition, and the bullet-list state machine most formats feed.

The names keep their leading underscore: they are internal to the sources package (the format
modules beside this one and the tests use them), not part of what the rest of tuneforge imports.
"""

from __future__ import annotations

import functools
import re
from pathlib import PurePosixPath

from tuneforge.sources import ParsedEntry

_NEWLINE = re.compile(r"\r\n|\n|\r")
# C0 controls other than whitespace (NUL, escape sequences, form feeds in old NEWS files)
# carry no meaning in an entry and upset downstream tokenisers.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_BULLET = re.compile(r"^([ \t]*)([-*+\u2022\u00b7\u25e6\u2023])[ \t]+(.*)$")
_BULLET_OR_NUMBER = re.compile(r"^([ \t]*)([-*+\u2022\u00b7\u25e6\u2023]|\d{1,3}[.)])[ \t]+(.*)$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_UNDERLINE = re.compile(r"^([=\-~^\"'`+*#:._])\1{2,}[ \t]*$")
# Bounded repeats throughout: parse() sees arbitrary text and must stay linear on it.
_MD_LINK = re.compile(r"!?\[([^\[\]\n]{0,300})\]\([^)\s]{0,2000}\)")
_ATX = re.compile(r"^[ \t]{0,3}(#{1,6})(?:[ \t]+(.*))?$")
_REFDEF = re.compile(r"^[ \t]{0,3}\[[^\]\n]{1,300}\]:[ \t]*\S")  # "[1.0]: https://..." link targets
_LABEL = re.compile(r"^[ \t]{0,3}(?:\*\*|__)?([A-Za-z][^:]{0,100}?)(?:\*\*|__)?:(?:\*\*|__)?[ \t]*$")

# A version token: 9.1, 2.39.0, 0.11.1, 3.12.0a1, 2.0h, 1.0.0-rc1.
_VERSION_TOKEN = (r"\d+(?:\.\d+)+(?:(?:[-~+]?(?:alpha|beta|rc|pre|dev|post|a|b|c)\.?\d*)\b"
                  r"|[a-z]\b)?")
_KEYWORD_VERSION = re.compile(
    r"\b(?:version|release)\s*[:.]?\s*(\d+(?:\.\d+)*(?:[a-z]+\d*)?(?:[-~+][\w.]+)?)"
    r"|\bv(\d+(?:\.\d+)+(?:[a-z]+\d*)?(?:[-~+][\w.]+)?)",  # bare "v" needs a dot: "V8" is an engine
    re.IGNORECASE)
_BETWEEN = re.compile(r"\b(?:between|from)\b.*?\b(?:and|to)\b\D*?(" + _VERSION_TOKEN + ")",
                      re.IGNORECASE)
_DOTTED = re.compile(r"(?<![\w.])v?(" + _VERSION_TOKEN + r")(?![\w])")
_DATE_LIKE = re.compile(r"^(?:\d{4}\.\d{1,2}\.\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4})$")
_NAME_INT = re.compile(r"^(?:[\w.+-]+[ \t]+)?v?(\d+)[ \t]*(?:\(.*\))?[ \t]*:?$")
_UNRELEASED = re.compile(r"^\[?(unreleased|next|upcoming|in development|head)\]?(?:\W.*)?$",
                         re.IGNORECASE)


def _lines(text: str) -> list[str]:
    return _NEWLINE.split(text) if "\r" in text else text.split("\n")


def _norm(text: str) -> str:
    return " ".join(_CONTROL.sub("", text).split())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _strip_md_links(text: str) -> str:
    return _MD_LINK.sub(r"\1", text)


def _version_in(title: str) -> str | None:
    """Best-effort release version named in a heading, or None."""
    t = _norm(_strip_md_links(title[:300]))[:200].strip("*_#[] ")  # headings are short
    if _UNRELEASED.match(t):
        return "Unreleased"
    # "Changes since polkit 121" / "Fixes since v2.38" name the previous release.
    t = re.sub(r"\b(?:since|relative to)\b.*", "", t, flags=re.IGNORECASE)
    m = _BETWEEN.search(t)  # "changes between 1.0.7 and 1.0.8" -> the newer one
    if m:
        return m.group(1)
    m = _KEYWORD_VERSION.search(t)
    if m:
        return (m.group(1) or m.group(2)).rstrip(".-+~")
    for m in _DOTTED.finditer(t):
        if not _DATE_LIKE.match(m.group(1)):
            return m.group(1)
    m = _NAME_INT.match(t)  # "polkit 122", "kmod 30"
    if m:
        return m.group(1)
    return None


def _bare_name(path: str) -> str:
    name = PurePosixPath(path.replace("\\", "/")).name.lower()
    return name.removesuffix(".gz")


def _head(text: str, n: int = 200, chars: int = 20000) -> list[str]:
    """The first ``n`` lines, looking at no more than ``chars`` characters (sniffing stays cheap)."""
    return _NEWLINE.split(text[:chars], n)[:n]


def _setext_underline(lines: list[str], i: int) -> bool:
    """True when lines[i] is a heading underlined by lines[i + 1]."""
    if i + 1 >= len(lines):
        return False
    under = lines[i + 1].strip()
    if not under or under[:3] != under[0] * 3:  # cannot be an underline: skip the checks below
        return False
    title = lines[i]
    if not title.strip() or _indent(title) > 3 or _BULLET.match(title):
        return False
    if _UNDERLINE.match(title.strip()):
        return False
    return bool(_UNDERLINE.match(under)) and _indent(lines[i + 1]) <= 3


def _atx(line: str) -> tuple[int, str] | None:
    """(level, title) of an ATX heading ("## 1.2 ##" -> (2, "1.2")), else None."""
    m = _ATX.match(line) if "#" in line[:4] else None  # a heading's "#" comes within 4 chars
    if m is None:
        return None
    title = (m.group(2) or "").rstrip(" \t")
    bare = title.rstrip("#")
    if bare != title and (not bare or bare[-1] in " \t"):  # optional closing hashes
        title = bare.rstrip(" \t")
    return len(m.group(1)), title


def _starts_block(lines: list[str], i: int) -> bool:
    """True when lines[i] opens a paragraph (after a blank line or a heading)."""
    if i == 0:
        return True
    prev = lines[i - 1].strip()
    # an underline opens with three of the same character: most lines skip the regex
    return not prev or prev.startswith("#") or (prev[:3] == prev[0] * 3 and bool(_UNDERLINE.match(prev)))


_URL = re.compile(r"<https?://[^>\s]*>|https?://\S+")
_ALNUM = re.compile(r"[^\W_]")


@functools.lru_cache(maxsize=1 << 16)  # pure; entries recur (backfill: "Updated translations.")
def _is_link_only(text: str) -> bool:
    """Bullets that are nothing but links (tables of contents, "Other versions" lists)."""
    if "](" in text:  # a Markdown link needs "](": most entries skip the substitution
        text = _MD_LINK.sub("", text)
    if "http" in text:
        text = _URL.sub("", text)
    return _ALNUM.search(text) is None


def _kept(entry: ParsedEntry | None) -> bool:
    """An entry a parser yields: there is one, and it is not links only. Every way an entry
    ends (the next bullet, a heading, a fence, the end of the file) asks this."""
    return entry is not None and not _is_link_only(entry.text)


_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|~])")
# Commit-log bullets open with a hash link: Node's "\[[`abc123`](url)] - ", jansi's "[`abc`](url) ".
_COMMIT_LINK = re.compile(r"^(\\?\[)?\[`?[0-9a-f]{6,40}`?\]\([^)\s]*\)(?:\\?\])?[ \t]*(?:-[ \t]+)?")
_TRAILING_REF = re.compile(r"[ \t,]*(?:\[[^\[\]\n]{0,100}#\d+\]\([^)\s]{0,500}\)|<https?://[^>\s]{0,500}>)"
                           r"[ \t,.]*$")
_TRAILING_AUTHOR = re.compile(r"[ \t]*\([^()]{1,80}\)[ \t]*$")


def _md_clean(text: str) -> str:
    """Readable markdown entry: no commit-hash link prefix, no Node-style author/PR trailer."""
    m = _COMMIT_LINK.match(text) if text[:1] in "[\\" else None
    if m:
        text = text[m.end():]
        if m.group(1):  # Node: "... (Author) [#123](url)" -- bookkeeping, not the change
            for _ in range(4):
                stripped = _TRAILING_REF.sub("", text)
                if stripped == text:
                    break
                text = stripped
            text = _TRAILING_AUTHOR.sub("", text)
    return _MD_ESCAPE.sub(r"\1", text) if "\\" in text else text


class _Acc:
    """One entry being accumulated over several lines."""

    __slots__ = ("hint", "indent", "line", "parts", "version")

    def __init__(self, line: int, indent: int, hint: str | None, version: str | None,
                 first: str) -> None:
        self.line = line
        self.indent = indent
        self.hint = hint
        self.version = version
        self.parts = [first]

    def text(self) -> str:
        return _norm(" ".join(self.parts))


@functools.lru_cache(maxsize=1 << 16)
def _entry_text(joined: str, clean) -> str:
    """An entry's text from its joined lines: normalised, cleaned by the format's `clean`.
    Pure, so memoised: the same entry recurs across changelogs and the work is a third of a
    bullet's parse (an entry's text never depends on where it sits)."""
    text = _norm(joined)
    if clean is not None:
        cleaned = clean(text)
        if cleaned != text:  # _norm(text) is text: normalise only what clean changed
            text = _norm(cleaned)
    return text


def _emit(acc: _Acc | None, clean=None) -> ParsedEntry | None:
    """Finish an accumulated entry; None when it has no text or no release."""
    if acc is None or acc.version is None:
        return None
    text = _entry_text(" ".join(acc.parts), clean)
    if not text:
        return None
    return ParsedEntry(text=text, hint=acc.hint, version=acc.version, line=acc.line)


def _clean_hint(text: str) -> str | None:
    h = _norm(_strip_md_links(text)).strip("*_#: ").rstrip(":").strip()
    return h or None


# Sub-headings may carry version-looking words ("#### V8 11.3", "#### Ada 2.0"); below the
# release level only titles that read like a release heading may change the version.
_RELEASE_TITLE = re.compile(r"^\W*(?:(?:major|notable|significant|user-visible)\s+)?(?:changes|"
                            r"version|release|what'?s new|v?\d+\.\d)", re.IGNORECASE)


class _Sections:
    """Version and hint bookkeeping for formats with levelled headings."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.hint: str | None = None
        self.level: int | None = None  # level of the headings that name releases

    def heading(self, level: int, title: str) -> None:
        v = _version_in(title)
        if v and (self.level is None or level <= self.level):
            self.version, self.hint, self.level = v, None, level
        elif v and _RELEASE_TITLE.match(_norm(title)):
            self.version, self.hint = v, None
        else:
            self.hint = _clean_hint(title)


def _heading_bullet(acc: _Acc) -> bool:
    """A short bullet ending in ':' ("* Bugs fixed:") that heads deeper bullets."""
    words = acc.text().split()
    return bool(words) and words[-1].endswith(":") and len(words) <= 12


class _BulletBody:
    """Shared bullet-list state machine for the heading-plus-bullets formats.

    Bullets start entries; wrapped lines (or a blank line followed by deeper
    indentation) continue them; anything else closes the entry and is ignored.
    A colon-terminated bullet with deeper bullets under it becomes their hint.
    """

    def __init__(self, clean=None, numbered: bool = False) -> None:
        self.cur: _Acc | None = None
        self.bullet = _BULLET_OR_NUMBER if numbered else _BULLET
        self.blank = False
        self.clean = clean
        # (indent, hint, outer hint, version) of a "* Bugs fixed:" parent bullet
        self.parent: tuple[int, str | None, str | None, str | None] | None = None

    def close(self) -> ParsedEntry | None:
        entry = _emit(self.cur, self.clean)
        self.cur = None
        self.blank = False
        return entry

    def feed(self, lineno: int, line: str, hint: str | None,
             version: str | None) -> ParsedEntry | None:
        """Consume one body line; returns an entry when one was completed."""
        if not line.strip():
            self.blank = True
            return None
        done = None
        b = self.bullet.match(line)
        if b:
            ind = len(b.group(1).expandtabs())
            if self.cur is not None and ind > self.cur.indent and _heading_bullet(self.cur):
                self.parent = (self.cur.indent, _clean_hint(self.cur.text()), hint, version)
                self.cur = None
            else:
                done = self.close()
            if self.parent is not None and (ind <= self.parent[0]
                                            or self.parent[2:] != (hint, version)):
                self.parent = None
            self.cur = _Acc(lineno, ind, self.parent[1] if self.parent else hint, version,
                            b.group(3))
        elif self.cur is not None and (not self.blank
                                       or _indent(line.expandtabs()) > self.cur.indent):
            self.cur.parts.append(line)
        else:
            done = self.close()
        self.blank = False
        return done
