"""Regexes with a literal prefilter: same answers, most texts rejected without running them.

Python's `re` tries every alternative of a pattern at every position of the text, so a
case-insensitive alternation of forty cue phrases costs ~40 us on a 100-character entry
even when none of its words occur. Every match of such a pattern contains one of a few
literal strings, read off the parsed pattern (for "\\bfix(?:e[sd])?\\b|\\bcrash" that is
{"fix", "crash"}); when the lower-cased text holds none of them, the pattern cannot match
and is not run. The check is only a necessary condition, so results never change.

It is applied to ASCII text only: under re.IGNORECASE a few non-ASCII characters match
ASCII letters, and str.lower() does not always agree (LONG S matches "s" but stays "\u017f").

One scan per text (issue 23 item 2): every prefiltered pattern's needles go into one RE2 set
(google-re2's `Set`, a single automaton), so a text is scanned once for all of them and each
pattern then only looks its own index up. The labeler asks ~30 patterns about the same entry;
checked one by one in `re` their needles cost ~75 us an entry, the set scan ~1.5 us. The set
holds needles, not the patterns themselves: RE2 has no lookarounds (a fifth of the labeler's
patterns use them), differs from `re` on non-ASCII `\\b` and `\\s`, and a set of the whole
patterns scanned at ~50 us. What the set answers is the same necessary condition as before,
so `re` still decides every match and the labels cannot change (tests/test_prefilter.py
compares them on every entry of the snapshot).
"""
from __future__ import annotations

import re
from re import _constants as C  # noqa: N812 - sre opcodes
from re import _parser

import re2

_CONSUMING_BREAKS = {C.IN, C.ANY, C.NOT_LITERAL, C.CATEGORY, C.GROUPREF, C.GROUPREF_EXISTS}
_ZERO_WIDTH = {C.AT, C.ASSERT, C.ASSERT_NOT}
_REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT}


def _better(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """The more selective needle set: longest shortest needle, then fewest needles."""
    if not a:
        return b
    if not b:
        return a
    key_a, key_b = (min(map(len, a)), -len(a)), (min(map(len, b)), -len(b))
    return b if key_b > key_a else a


def needles(items) -> frozenset[str] | None:
    """Lower-cased strings one of which every match of the parsed sequence `items` contains,
    or None when no such set can be read off it."""
    best: frozenset[str] | None = None
    run: list[str] = []

    def close_run() -> None:
        nonlocal best, run
        if run:
            best = _better(best, frozenset(["".join(run).lower()]))
        run = []

    for op, av in items:
        if op is C.LITERAL:
            run.append(chr(av))
            continue
        if op in _ZERO_WIDTH:  # consumes nothing: the literals either side are adjacent
            continue
        close_run()
        if op is C.SUBPATTERN:
            best = _better(best, needles(av[3]))
        elif op is C.ATOMIC_GROUP:
            best = _better(best, needles(av))
        elif op is C.BRANCH:
            alternatives = [needles(alt) for alt in av[1]]
            if all(alternatives):
                best = _better(best, frozenset().union(*alternatives))
        elif op in _REPEATS:
            low, _, body = av
            if low >= 1:
                best = _better(best, needles(body))
        elif op not in _CONSUMING_BREAKS:
            raise ValueError(f"prefilter: unknown regex opcode {op}")
    close_run()
    if best is not None and any(not n or not n.isascii() for n in best):
        return None  # "" says nothing; a non-ASCII needle may match ASCII text under re.I
    return best


class NeedleSet:
    """Every registered pattern's needles in one RE2 set: `present(text)` is the set of
    patterns (by index) at least one of whose needles the lower-cased text contains.

    Compiled on first use and again after a pattern joins (patterns are made at import). The
    last answer is kept: the labeler asks many patterns about one text in a row."""

    def __init__(self) -> None:
        self.alternations: list[str] = []
        self.set: re2.Set | None = None
        self.last: tuple[str | None, frozenset[int]] = (None, frozenset())

    def add(self, found: frozenset[str]) -> int:
        self.alternations.append("|".join(map(re2.escape, sorted(found))))
        self.set, self.last = None, (None, frozenset())
        return len(self.alternations) - 1

    def compile(self) -> re2.Set:
        # The DFA of ~100 literal alternations needs about a megabyte. A set whose DFA ran out
        # of memory would answer "nothing found" through the Python binding, so the budget is
        # generous and tests/test_prefilter.py checks the labels on the whole snapshot.
        options = re2.Options()
        options.max_mem = 64 << 20
        built = re2.Set.SearchSet(options)
        for i, alternation in enumerate(self.alternations):
            if built.Add(alternation) != i:  # Add raises on a pattern it cannot parse
                raise ValueError(f"prefilter: needle set out of order at {alternation!r}")
        built.Compile()  # raises re2.error
        self.set = built
        return built

    def present(self, text: str) -> frozenset[int]:
        last = self.last  # one read: the tuple is replaced whole, never changed in place
        if last[0] == text:
            return last[1]
        found = frozenset((self.set or self.compile()).Match(text.lower()) or ())
        self.last = (text, found)
        return found


NEEDLES = NeedleSet()
USE_SET = True  # False: each pattern scans for its own needles (the reference the tests compare)


class Prefiltered:
    """A compiled pattern that first looks for its needles in the lower-cased text."""

    __slots__ = ("index", "needle_re", "pattern")

    def __init__(self, pattern: re.Pattern, found: frozenset[str]) -> None:
        self.pattern = pattern
        # one alternation of plain literals: sre scans it with a first-character set
        self.needle_re = re.compile("|".join(map(re.escape, sorted(found))))
        self.index = NEEDLES.add(found)

    def _absent(self, text: str) -> bool:
        if not text.isascii():
            return False
        if USE_SET:
            return self.index not in NEEDLES.present(text)
        return self.needle_re.search(text.lower()) is None

    def search(self, text: str):
        return None if self._absent(text) else self.pattern.search(text)

    def match(self, text: str):
        return None if self._absent(text) else self.pattern.match(text)

    def findall(self, text: str) -> list:
        return [] if self._absent(text) else self.pattern.findall(text)

    def finditer(self, text: str):
        return iter(()) if self._absent(text) else self.pattern.finditer(text)

    def fullmatch(self, text: str):
        return None if self._absent(text) else self.pattern.fullmatch(text)

    def sub(self, repl, text: str, count: int = 0) -> str:
        return text if self._absent(text) else self.pattern.sub(repl, text, count=count)

    def split(self, text: str, maxsplit: int = 0) -> list:
        return [text] if self._absent(text) else self.pattern.split(text, maxsplit=maxsplit)

    def __getattr__(self, name: str):  # .flags, .groups, ... of the pattern itself
        return getattr(self.pattern, name)

    def __repr__(self) -> str:
        return f"Prefiltered({self.pattern!r})"


def compile_re(pattern: str, flags: int = 0, min_needle: int = 2) -> re.Pattern | Prefiltered:
    """re.compile, prefiltered when every match must contain a needle of `min_needle`+ chars
    (shorter needles occur in most texts and would only add a scan)."""
    compiled = re.compile(pattern, flags)
    found = needles(_parser.parse(pattern, flags))
    if found and min(map(len, found)) >= min_needle:
        return Prefiltered(compiled, found)
    return compiled
