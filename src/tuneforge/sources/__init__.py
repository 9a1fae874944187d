"""Release-note source formats: one small parser class per format, in a registry.

Each format says how sure it is that a file is its kind (``sniff``) and turns the
file's text into ``ParsedEntry`` records (``parse``).  ``detect_format`` asks every
registered format and keeps the most confident one.

Conventions shared by every parser:

* ``parse`` receives decoded text (the caller decompresses and decodes) and never
  raises on odd input: the snapshot is built from whatever distributions ship.
* An entry is one bullet (nested bullets are entries of their own) or, in formats
  whose entries are paragraphs (GNU NEWS, Debian NEWS), one paragraph.  Wrapped
  continuation lines are joined; text is whitespace-normalised, markup is kept.
* Entries outside any release section (preambles, tables of contents, footers)
  are dropped: every emitted entry has a version.
* Line numbers are 1-based and count ``\\n``, ``\\r\\n`` and lone ``\\r`` endings.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = [
    "FORMATS",
    "ParsedEntry",
    "SourceFormat",
    "UnknownFormatError",
    "detect_format",
    "get_format",
    "product_from_path",
    "register",
]


@dataclass(frozen=True)
class ParsedEntry:
    text: str  # whitespace-normalised entry, markup kept
    hint: str | None  # nearest section heading, e.g. "Bug fixes"
    version: str | None  # release the entry belongs to, e.g. "2.39.0"
    line: int  # 1-based line where the entry starts


class UnknownFormatError(ValueError):
    """No registered parser accepted a file."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: no release-note parser accepted this file (known: "
                         f"{', '.join(sorted(FORMATS))})")
        self.path = path


class SourceFormat(abc.ABC):
    """Base of every format; subclasses set ``name`` and implement both methods."""

    name: str = ""

    @abc.abstractmethod
    def sniff(self, path: str, text: str) -> int:
        """Confidence 0..100 that ``text`` (read from ``path``) is this format."""

    @abc.abstractmethod
    def parse(self, path: str, text: str) -> Iterator[ParsedEntry]:
        """Yield the entries of ``text`` in file order."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


FORMATS: dict[str, type[SourceFormat]] = {}


def register(cls: type[SourceFormat]) -> type[SourceFormat]:
    """Class decorator: add a format to ``FORMATS`` under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in FORMATS and FORMATS[cls.name] is not cls:
        raise ValueError(f"format {cls.name!r} registered twice "
                         f"({FORMATS[cls.name].__name__}, {cls.__name__})")
    FORMATS[cls.name] = cls
    return cls


def get_format(name: str) -> SourceFormat:
    try:
        return FORMATS[name]()
    except KeyError:
        raise ValueError(f"unknown source format {name!r}; known: "
                         f"{', '.join(sorted(FORMATS))}") from None


def detect_format(path: str, text: str) -> SourceFormat:
    """The format with the highest sniff score; ties go to the first name in sorted order."""
    best: tuple[int, str] | None = None
    for name in sorted(FORMATS):
        score = FORMATS[name]().sniff(path, text)
        if score > 0 and (best is None or score > best[0]):
            best = (score, name)
    if best is None:
        raise UnknownFormatError(path)
    return FORMATS[best[1]]()


def product_from_path(path: str) -> str:
    """First component of a snapshot-relative path, lowercased ("git/RelNotes/x.txt" -> "git")."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("/", ".")]
    if not parts:
        raise ValueError(f"cannot derive a product from empty path {path!r}")
    return parts[0].lower()


# --------------------------------------------------------------------------- helpers

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
    title = lines[i]
    if not title.strip() or _indent(title) > 3 or _BULLET.match(title):
        return False
    if _UNDERLINE.match(title.strip()):
        return False
    return bool(_UNDERLINE.match(lines[i + 1].strip())) and _indent(lines[i + 1]) <= 3


def _atx(line: str) -> tuple[int, str] | None:
    """(level, title) of an ATX heading ("## 1.2 ##" -> (2, "1.2")), else None."""
    m = _ATX.match(line)
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
    return not prev or bool(_UNDERLINE.match(prev)) or prev.startswith("#")


_URL = re.compile(r"<https?://[^>\s]*>|https?://\S+")
_ALNUM = re.compile(r"[^\W_]")


def _is_link_only(text: str) -> bool:
    """Bullets that are nothing but links (tables of contents, "Other versions" lists)."""
    if "](" in text:  # a Markdown link needs "](": most entries skip the substitution
        text = _MD_LINK.sub("", text)
    if "http" in text:
        text = _URL.sub("", text)
    return _ALNUM.search(text) is None


_HTML_BLOCK = re.compile(r"^<(table|details|pre)\b", re.IGNORECASE)
_HTML_TAG_LINE = re.compile(r"^</?[a-zA-Z][^>]*>$")
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


def _emit(acc: _Acc | None, clean=None) -> ParsedEntry | None:
    """Finish an accumulated entry; None when it has no text or no release."""
    if acc is None or acc.version is None:
        return None
    text = acc.text()
    if clean is not None:
        cleaned = clean(text)
        if cleaned != text:  # _norm(text) is text: normalise only what clean changed
            text = _norm(cleaned)
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


# --------------------------------------------------------------------------- formats


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
                if entry:
                    yield entry
                continue
            if fenced:
                continue
            heading = _atx(line)
            if heading:
                entry = body.close()
                if entry:
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
            if entry and not _is_link_only(entry.text):
                yield entry
        entry = body.close()
        if entry and not _is_link_only(entry.text):
            yield entry


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

        def keep(e: ParsedEntry | None) -> bool:
            return e is not None and not _is_link_only(e.text)

        for i, line in enumerate(lines):
            lineno = i + 1
            if skip_underline:
                skip_underline = False
                continue
            if _FENCE.match(line):
                fenced = not fenced
                entry = body.close()
                if keep(entry):
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
            if html and _HTML_TAG_LINE.match(stripped) or _REFDEF.match(line):
                continue  # anchors like <a id="21.1.0"></a>, link reference definitions
            atx = _atx(line)
            # A would-be title right after an entry line is a wrapped line of that entry.
            setext = (atx is None and (body.cur is None or body.blank)
                      and _setext_underline(lines, i))
            if atx or setext:
                entry = body.close()
                if keep(entry):
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
                    if keep(entry):
                        yield entry
                    sections.hint = _clean_hint(label.group(1))
                    continue
            entry = body.feed(lineno, line, sections.hint, sections.version)
            if keep(entry):
                yield entry
        entry = body.close()
        if keep(entry):
            yield entry


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
            return None if entry is None or _is_link_only(entry.text) else entry

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


@register
class RstChanges(SourceFormat):
    """reST-style CHANGES/NEWS/history: underlined release titles, underlined sections, bullets."""

    name = "rst_changes"

    def sniff(self, path: str, text: str) -> int:
        name = _bare_name(path)
        # Long release sections (Python's NEWS) push the second release title far down.
        head = _head(text, 3000, 300_000)
        titles = [head[i] for i in range(len(head) - 1) if _setext_underline(head, i)]
        versioned = sum(1 for t in titles if _version_in(t))
        bullets = any(_BULLET.match(ln) for ln in head)
        if name.endswith((".rst", ".rst.txt")):
            return 80 if titles else 40
        if name.endswith(".md") or any(re.match(r"#{2,6} \S", ln) for ln in head[:200]):
            return 0  # setext titles with ATX sections: markdown_bullets' job
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
