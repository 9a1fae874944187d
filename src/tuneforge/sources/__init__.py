"""Release-note source formats: one module per format, each a small parser class in a registry.

Each format says how sure it is that a file is its kind (``sniff``) and turns the
file's text into ``ParsedEntry`` records (``parse``).  ``detect_format`` asks every
registered format and keeps the most confident one.  This module holds the registry
and the API the rest of tuneforge imports; ``common`` holds the helpers formats share.
A new format is a module here whose class is decorated with ``@register``, plus its
line in the import list at the end of this file.

Conventions shared by every parser:

* ``parse`` receives decoded text (the caller decompresses and decodes) and never
  raises on odd input: the snapshot is built from whatever distributions ship.
* An entry is one bullet (nested bullets are entries of their own) or, in formats
  whose entries are paragraphs (GNU NEWS, Debian NEWS), one paragraph.  Wrapped
  continuation lines are joined; text is whitespace-normalised, markup is kept.
* Entries outside any release section (preambles, tables of contents, footers)
  are dropped: every emitted entry has a version.
* Line numbers are 1-based and count ``\\n``, ``\\r\\n`` and lone ``\\r`` endings.

Verbatim formats (``verbatim = True``: the patch formats ``format_patch`` and ``dep3``) differ:
an entry's text is a diff kept byte for byte, its hint is the author's message (people removed),
its version is None, and ``parse`` yields a ``Rejected`` for each patch it cannot use.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = [
    "FORMATS",
    "ParsedEntry",
    "Rejected",
    "SourceFormat",
    "UnknownFormatError",
    "detect_format",
    "get_format",
    "product_from_path",
    "register",
]


@dataclass(frozen=True)
class ParsedEntry:
    text: str  # whitespace-normalised entry, markup kept (a verbatim format: the diff, as is)
    hint: str | None  # nearest section heading, e.g. "Bug fixes" (a patch format: the author's message)
    version: str | None  # release the entry belongs to, e.g. "2.39.0"
    line: int  # 1-based line where the entry starts


@dataclass(frozen=True)
class Rejected:
    """A unit of a file a format recognises but cannot use (a patch with no message): backfill
    quarantines it under `reason` (a tuneforge.records.QuarantineReason value) instead of an entry."""
    reason: str
    detail: str
    line: int


class UnknownFormatError(ValueError):
    """No registered parser accepted a file."""

    def __init__(self, path: str, known: tuple[str, ...] = ()) -> None:
        # known: the formats that were asked (detect_format's `among`), so a task's quarantine
        # details name its own formats only, whatever else is registered; () = every format
        super().__init__(f"{path}: no release-note parser accepted this file (known: "
                         f"{', '.join(sorted(known or FORMATS))})")
        self.path = path


class SourceFormat(abc.ABC):
    """Base of every format; subclasses set ``name`` and implement both methods."""

    name: str = ""
    # entries are kept byte for byte (a diff), not whitespace-normalised (release-note prose)
    verbatim: bool = False

    @abc.abstractmethod
    def sniff(self, path: str, text: str) -> int:
        """Confidence 0..100 that ``text`` (read from ``path``) is this format."""

    @abc.abstractmethod
    def parse(self, path: str, text: str) -> Iterator[ParsedEntry | Rejected]:
        """Yield the entries of ``text`` in file order (and a ``Rejected`` per unusable unit)."""

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


def detect_format(path: str, text: str, among: tuple[str, ...] = ()) -> SourceFormat:
    """The format with the highest sniff score; ties go to the first name in sorted order.
    `among`: only these formats (a task's source_formats); () = every registered one."""
    unknown = sorted(set(among) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown source formats {unknown}; known: {', '.join(sorted(FORMATS))}")
    best: tuple[int, str] | None = None
    for name in sorted(among or FORMATS):
        score = FORMATS[name]().sniff(path, text)
        if score > 0 and (best is None or score > best[0]):
            best = (score, name)
    if best is None:
        raise UnknownFormatError(path, among)
    return FORMATS[best[1]]()


def product_from_path(path: str) -> str:
    """First component of a snapshot-relative path, lowercased ("git/RelNotes/x.txt" -> "git")."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("/", ".")]
    if not parts:
        raise ValueError(f"cannot derive a product from empty path {path!r}")
    return parts[0].lower()


# Importing the format modules registers them (@register); they import ParsedEntry, SourceFormat
# and register from this module, so the imports come after those definitions.
from tuneforge.sources import (  # noqa: E402, F401
    debian_changelog,
    dep3,
    format_patch,
    git_relnotes,
    gnu_news,
    keepachangelog,
    markdown_bullets,
    rst_changes,
)
