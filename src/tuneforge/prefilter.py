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

Where the needles say nothing (INTERNAL_RE's "d/" and "ci" occur in most entries) a pattern is
asked once more in RE2 before `re` runs: the pattern itself, relaxed to what RE2 can run, its
lookarounds and `$` dropped, so that it matches wherever the real one does and maybe more
(`relaxed_re2`). No relaxed match: the pattern cannot match. A relaxed match at i: no real match
starts before i, so `re` scans from i on (`search(text, i)` sees the text before i for `\b` and
lookbehinds, and never lets a non-multiline `^` match there). The big alternations cost `re`
~20-80 us an entry and RE2 ~2.5 us (measured on the snapshot, ASCII entries).
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


# What `re`'s \s matches in ASCII text; RE2's \s lacks \v and \x1c-\x1f.
_RE_SPACE = "\\t\\n\\x0b\\f\\r\\x1c-\\x1f "
_CATEGORY = {C.CATEGORY_DIGIT: "\\d", C.CATEGORY_NOT_DIGIT: "\\D", C.CATEGORY_WORD: "\\w",
             C.CATEGORY_NOT_WORD: "\\W"}
_AT = {C.AT_BEGINNING: "^", C.AT_BEGINNING_STRING: "\\A", C.AT_END_STRING: "\\z",
       C.AT_BOUNDARY: "\\b", C.AT_NON_BOUNDARY: "\\B",
       C.AT_END: ""}  # dropped: re's `$` also matches before a final newline, RE2's does not
_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))


class NotRelaxable(ValueError):
    """The pattern holds something RE2 cannot stand in for (a backreference, a conditional,
    a non-ASCII literal that re.I may fold onto ASCII, a bounded repeat over RE2's limit)."""


def _char(c: int, flags: int) -> str:
    ch = chr(c)
    if not ch.isascii() and flags & re.IGNORECASE:
        raise NotRelaxable(f"non-ASCII {ch!r} under re.I")
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{c:x}}}"


def _class(items, flags: int) -> str:
    negate = bool(items) and items[0][0] is C.NEGATE
    out = []
    for op, av in items[negate:]:
        if op is C.LITERAL:
            out.append(_char(av, flags))
        elif op is C.RANGE:
            out.append(f"{_char(av[0], flags)}-{_char(av[1], flags)}")
        elif op is C.CATEGORY and av in _CATEGORY:
            out.append(_CATEGORY[av])
        elif op is C.CATEGORY and av is C.CATEGORY_SPACE:
            out.append(_RE_SPACE)
        elif op is C.CATEGORY and av is C.CATEGORY_NOT_SPACE and not negate:
            out.append("\\S")  # RE2's \S holds re's (and \v, \x1c-\x1f): still a superset
        else:
            raise NotRelaxable(f"class member {op} {av}")
    return ("[^" if negate else "[") + "".join(out) + "]"


def relaxed_re2(items, flags: int) -> str:
    """RE2 syntax for the parsed pattern `items` (flags: the compiled pattern's), matching on
    ASCII text at every position the pattern matches at, and possibly more: lookarounds and
    `$` are dropped, possessive and atomic parts become plain ones. Raises NotRelaxable."""
    out = []
    for op, av in items:
        if op is C.LITERAL:
            out.append(_char(av, flags))
        elif op is C.NOT_LITERAL:
            out.append(f"[^{_char(av, flags)}]")
        elif op is C.ANY:
            out.append(".")  # neither engine's `.` matches \n without DOTALL ((?s) below)
        elif op is C.IN:
            out.append(_class(av, flags))
        elif op is C.CATEGORY:
            if av is C.CATEGORY_SPACE:
                out.append(f"[{_RE_SPACE}]")
            elif av is C.CATEGORY_NOT_SPACE:
                out.append(f"[^{_RE_SPACE}]")
            elif av in _CATEGORY:
                out.append(_CATEGORY[av])
            else:
                raise NotRelaxable(f"category {av}")
        elif op is C.AT:
            if av not in _AT:
                raise NotRelaxable(f"anchor {av}")
            out.append(_AT[av])
        elif op in (C.ASSERT, C.ASSERT_NOT):
            continue  # dropped: whatever it asked, the rest still has to match
        elif op is C.BRANCH:
            out.append("(?:" + "|".join(relaxed_re2(alt, flags) for alt in av[1]) + ")")
        elif op is C.SUBPATTERN:
            _, add, drop, body = av
            on = "".join(f for bit, f in _FLAGS if add & bit)
            off = "".join(f for bit, f in _FLAGS if drop & bit)
            scoped = (flags | add) & ~drop
            out.append(f"(?{on}{'-' + off if off else ''}:{relaxed_re2(body, scoped)})")
        elif op is C.ATOMIC_GROUP:
            out.append(f"(?:{relaxed_re2(av, flags)})")
        elif op in _REPEATS:
            low, high, body = av
            if low > 1000:
                raise NotRelaxable(f"repeat of {low}")
            # no upper bound: a superset still, and RE2 would build `high` copies of the body
            # (IDENT_RE's [^`\n]{1,120} made its scan 3x slower than re's)
            out.append(f"(?:{relaxed_re2(body, flags)}){{{low},}}")
        else:
            raise NotRelaxable(f"opcode {op}")
    return "".join(out)


def relaxed_scanner(pattern: re.Pattern) -> re2._Regexp | None:
    """The RE2 stand-in for `pattern` (relaxed_re2), or None when there is none or it would not
    pay: `re` fails a pattern anchored at the start in well under RE2's ~1 us a call, and one
    that can match the empty string always matches."""
    parsed = _parser.parse(pattern.pattern, pattern.flags)
    if parsed.getwidth()[0] == 0 or _anchored(parsed, pattern.flags):
        return None
    try:
        body = relaxed_re2(parsed, pattern.flags)
    except NotRelaxable:
        return None
    prefix = "".join(f for bit, f in _FLAGS if pattern.flags & bit)
    options = re2.Options()
    options.max_mem = 64 << 20
    return re2.compile(f"(?{prefix}){body}" if prefix else body, options)  # raises re2.error


def _anchored(items, flags: int) -> bool:
    """Every match starts at the start of the text (`^` without MULTILINE, or `\\A`)."""
    if not items:
        return False
    op, av = items[0]
    if op is C.AT:
        return av is C.AT_BEGINNING_STRING or (av is C.AT_BEGINNING and not flags & re.MULTILINE)
    if op is C.BRANCH:
        return all(_anchored(alt, flags) for alt in av[1])
    if op is C.SUBPATTERN:
        return _anchored(av[3], (flags | av[1]) & ~av[2])
    if op is C.ATOMIC_GROUP:
        return _anchored(av, flags)
    return False


# google-re2's `search` wraps the compiled RE2 in a Python generator that re-encodes the text
# and maps byte offsets back to characters (~5.6 us a call, ~2x the scan itself): the stand-ins
# call the compiled regexp under it (`_regexp.Match`, the binding's own inner call) with the text
# encoded once for all the patterns asked about it. ASCII text only, where offsets agree.
_UNANCHORED = re2._Anchor.UNANCHORED
_last_encoded: tuple[str, bytes] = ("", b"")


def _ascii_bytes(text: str) -> bytes:
    global _last_encoded
    last = _last_encoded
    if last[0] == text:
        return last[1]
    encoded = text.encode("ascii")
    _last_encoded = (text, encoded)
    return encoded


USE_RELAXED = True  # False: no RE2 stand-in is asked (the reference the tests compare)


class Prefiltered:
    """A compiled pattern that first looks for its needles in the lower-cased text, then (where
    it has one) asks its RE2 stand-in where a match can start at the earliest."""

    __slots__ = ("index", "needle_re", "pattern", "scanner")

    def __init__(self, pattern: re.Pattern, found: frozenset[str] | None,
                 scanner: re2._Regexp | None = None) -> None:
        self.pattern = pattern
        self.scanner = scanner
        # one alternation of plain literals: sre scans it with a first-character set
        self.needle_re = re.compile("|".join(map(re.escape, sorted(found)))) if found else None
        self.index = NEEDLES.add(found) if found else None

    def _absent(self, text: str) -> bool:
        """None of the needles is in the text (always False without needles or for non-ASCII)."""
        if self.index is None or not text.isascii():
            return False
        if USE_SET:
            return self.index not in NEEDLES.present(text)
        return self.needle_re.search(text.lower()) is None

    def _start(self, text: str) -> int | None:
        """Where `re` has to start scanning: None when no match can exist.

        _absent and _ascii_bytes written out, their caches read here: the labeler asks ~34
        patterns about each entry, and the calls were a tenth of its time."""
        if not text.isascii():
            return 0
        index = self.index
        if index is not None:
            if not USE_SET:
                if self.needle_re.search(text.lower()) is None:
                    return None
            else:
                last = NEEDLES.last
                if index not in (last[1] if last[0] == text else NEEDLES.present(text)):
                    return None
        scanner = self.scanner
        if scanner is None or not USE_RELAXED:
            return 0
        last_encoded = _last_encoded
        encoded = last_encoded[1] if last_encoded[0] == text else _ascii_bytes(text)
        start = scanner._regexp.Match(_UNANCHORED, encoded, 0, len(encoded))[0][0]
        return None if start < 0 else start  # ASCII: a byte offset is a character offset

    def search(self, text: str):
        start = self._start(text)
        return None if start is None else self.pattern.search(text, start)

    def match(self, text: str):
        return None if self._absent(text) else self.pattern.match(text)

    def findall(self, text: str) -> list:
        start = self._start(text)
        return [] if start is None else self.pattern.findall(text, start)

    def finditer(self, text: str):
        start = self._start(text)
        return iter(()) if start is None else self.pattern.finditer(text, start)

    def fullmatch(self, text: str):
        return None if self._absent(text) else self.pattern.fullmatch(text)

    def sub(self, repl, text: str, count: int = 0) -> str:
        return text if self._start(text) is None else self.pattern.sub(repl, text, count=count)

    def split(self, text: str, maxsplit: int = 0) -> list:
        return [text] if self._start(text) is None else self.pattern.split(text, maxsplit=maxsplit)

    def __getattr__(self, name: str):  # .flags, .groups, ... of the pattern itself
        return getattr(self.pattern, name)

    def __repr__(self) -> str:
        return f"Prefiltered({self.pattern!r})"


def compile_re(pattern: str, flags: int = 0, min_needle: int = 2) -> re.Pattern | Prefiltered:
    """re.compile, prefiltered when every match must contain a needle of `min_needle`+ chars
    (shorter needles occur in most texts and would only add a scan), and/or when an RE2
    stand-in can rule texts out (relaxed_scanner)."""
    compiled = re.compile(pattern, flags)
    found = needles(_parser.parse(pattern, flags))
    if not found or min(map(len, found)) < min_needle:
        found = None
    scanner = relaxed_scanner(compiled)
    if found is None and scanner is None:
        return compiled
    return Prefiltered(compiled, found, scanner)
