"""The regex prefilter changes how fast the labeler's patterns answer, never what they answer."""
from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tuneforge import prefilter
from tuneforge.prefilter import Prefiltered, needles
from tuneforge.tasks.changelog_actions import kinds, labeler, style

LABELER = (kinds, labeler, style)  # the changelog task's modules that hold patterns


def parsed(pattern: str, flags: int = 0):
    return needles(re._parser.parse(pattern, flags))


@pytest.mark.parametrize("pattern, expected", [
    (r"\bfix(?:e[sd])?\b|\bcrash", {"fix", "crash"}),
    (r"(?:heap|stack)[- ]buffer", {"buffer"}),          # the longer required literal wins
    (r"\bCVE-\d{4}|(?-i:\bDoS\b)", {"cve-", "dos"}),      # needles are lower-cased
    (r"a(?:bc)+d", {"bc"}),                               # a repeat of 1+ must hold its body
    (r"ab\bcd", {"abcd"}),                                # zero-width ops keep literals adjacent
    (r"(?:foo)?bar|baz", {"bar", "baz"}),
])
def test_needles_read_off_the_pattern(pattern, expected):
    assert parsed(pattern, re.I) == expected


@pytest.mark.parametrize("pattern", [r"\w+", r"fix|\d", r"(?:foo)?", r"x*", r"caf\u00e9|tea"])
def test_no_needles_when_a_match_need_not_hold_one(pattern):
    """An optional part, a class-only branch or a non-ASCII literal gives no prefilter."""
    assert parsed(pattern, re.I) is None
    compiled = prefilter.compile_re(pattern, re.I)
    assert not isinstance(compiled, Prefiltered) or compiled.index is None  # an RE2 stand-in at most


def changelog_patterns() -> list[Prefiltered]:
    found = [v for m in LABELER for v in vars(m).values() if isinstance(v, Prefiltered)]
    for group in (kinds.LEADING_VERB_KIND, kinds.HINT_KIND, labeler.AREA_TAGS,
                  [(p,) for p in kinds.MARKUP_RES]):
        found += [p for row in group for p in row if isinstance(p, Prefiltered)]
    return found


def test_the_labelers_big_alternations_are_prefiltered():
    names = {n for n, v in vars(kinds).items() if isinstance(v, Prefiltered)}
    assert {"SECURITY_RE", "INTERNAL_RE", "DOCS_RE", "BREAKING_RE", "FIX_RE"} <= names


@pytest.mark.parametrize("text", ["the parser cra\u017fhed on empty input",  # LONG S
                                  "fixed a memory lea\u212a in the cache"])       # KELVIN SIGN
def test_non_ascii_text_that_re_ignorecase_folds_still_matches(text):
    """str.lower() does not fold LONG S to "s", but re.I matches it: such text skips the
    prefilter."""
    assert kinds.FIX_RE.pattern.search(text)
    assert kinds.FIX_RE.search(text)


# words the patterns look for, and the characters around them that decide \b, case and
# lookarounds; non-ASCII ones (KELVIN SIGN matches "k" under re.I) take the unfiltered path
FRAGMENTS = ["fix", "crash", "CVE-2024-1234", "DoS", "dos", "security", "deprecated", "removed",
             "debian/", "d/", "CI", "ci", "test", "docs", "README", "by default", "now",
             "support", "new", "add", "no longer", "bump", "SONAME", "token", "leak", "data",
             "\u212a", "\u017f", "\u00e9", "cra\u017fh", "lea\u212a",
             "-", "`", "'", "(", ")", ".", ":", "/", "_", "1.2"]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,-_/:`'\"()#0123456789\n",
    max_size=6)), max_size=14).map(lambda parts: " ".join(parts) if len(parts) % 2 else "".join(parts))


@settings(max_examples=400, deadline=None)
@given(texts)
def test_prefiltered_patterns_answer_like_plain_re(text):
    for p in changelog_patterns():
        raw = p.pattern
        plain, fast = raw.search(text), p.search(text)
        assert (plain and plain.span()) == (fast and fast.span()), raw.pattern
        assert raw.findall(text) == p.findall(text)
        assert raw.sub("#", text) == p.sub("#", text)
        assert bool(raw.match(text)) == bool(p.match(text))


def test_rule_labels_are_unchanged_on_the_fixture_corpus(monkeypatch):
    """The whole labeler with and without the prefilter, on every entry the sample
    release notes hold."""
    from pathlib import Path

    from tuneforge.sources import UnknownFormatError, detect_format

    rows = []
    for path in sorted(Path(__file__).parent.joinpath("fixtures").rglob("*")):
        if not path.is_file() or "patches" in path.parts:  # the commit task's patch fixtures
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        try:
            rows += [(e.text, e.hint, "pkg", e.version)
                     for e in detect_format(path.name, text).parse(path.name, text)]
        except UnknownFormatError:
            continue
    assert len(rows) > 50
    fast = [labeler.rule_label(*r) for r in rows]

    def plain(p):
        return p.pattern if isinstance(p, Prefiltered) else p

    for module in LABELER:
        for name, value in list(vars(module).items()):
            if isinstance(value, Prefiltered):
                monkeypatch.setattr(module, name, value.pattern)
    for name in ("LEADING_VERB_KIND", "HINT_KIND"):
        monkeypatch.setattr(kinds, name, [(plain(p), *rest) for p, *rest in getattr(kinds, name)])
    monkeypatch.setattr(labeler, "AREA_TAGS", [(t, plain(p)) for t, p in labeler.AREA_TAGS])
    monkeypatch.setattr(kinds, "MARKUP_RES", [plain(p) for p in kinds.MARKUP_RES])
    kinds._hint_cues.cache_clear()
    assert not changelog_patterns()
    assert [labeler.rule_label(*r) for r in rows] == fast
    kinds._hint_cues.cache_clear()


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_the_needle_set_answers_like_each_patterns_own_scan(batch):
    """One RE2 set scan per text (issue 23 item 2) finds the same needles as every pattern's
    own `re` scan: asked in any order, texts repeated, the cached answer never stale."""
    patterns = changelog_patterns()
    try:
        for text in batch + batch[::-1]:
            prefilter.USE_SET = False
            own = [p._absent(text) for p in patterns]
            prefilter.USE_SET = True
            assert [p._absent(text) for p in patterns] == own, text
    finally:
        prefilter.USE_SET = True


def snapshot_entries() -> list[tuple]:
    """(text, hint, product, version) of every entry the committed release-note snapshot holds,
    read as the data bench reads it (tools.bench.pipeline.real_entries)."""
    from pathlib import Path

    from tools.bench.pipeline import real_entries
    from tuneforge import config

    snapshot = Path(__file__).resolve().parents[1] / config.load().tasks["changelog-actions"].snapshot
    return [(text, hint, product, version) for text, hint, version, product in real_entries(snapshot)]


def labels_moved_by(monkeypatch, switch: str, rows: list[tuple]) -> list[tuple]:
    """(text, label on, label off) of every row the labeler labels differently with
    prefilter.<switch> on than off (hint cues recomputed for each side)."""
    monkeypatch.setattr(prefilter, switch, True)
    kinds._hint_cues.cache_clear()
    on = [labeler.rule_label(*r) for r in rows]
    monkeypatch.setattr(prefilter, switch, False)
    kinds._hint_cues.cache_clear()
    changed = [(r[0], a, b) for r, a, b in zip(rows, on, (labeler.rule_label(*r) for r in rows), strict=True)
               if a != b]
    kinds._hint_cues.cache_clear()
    return changed


def test_rule_labels_are_unchanged_by_the_needle_set_on_the_whole_snapshot(monkeypatch):
    """Issue 23 item 2: the labeler with one set scan per text gives every entry of the
    snapshot the label and rule it gives with each pattern scanning for its own needles."""
    rows = snapshot_entries()
    assert len(rows) > 40_000
    changed = labels_moved_by(monkeypatch, "USE_SET", rows)
    assert not changed, f"{len(changed)} of {len(rows)} entries labeled differently, first: {changed[0]}"


# ---- the RE2 stand-in (prefilter.relaxed_re2): a superset of every match, never a miss

@pytest.mark.parametrize("pattern, flags, expected", [
    (r"\bfix(?!es)|crash$", re.I, r"(?i)(?:\bfix|crash)"),       # lookaround and `$` dropped
    (r"a\sb|[^\s-]c", 0, r"(?:a[\t\n\x0b\f\r\x1c-\x1f ]b|[^\t\n\x0b\f\r\x1c-\x1f \x{2d}]c)"),
    (r"(?-i:DoS)|x{2,5000}", re.I, r"(?i)(?:(?-i:DoS)|(?:x){2,})"),
    (r"^(?m:a)|\Az\Z|q", 0, r"(?:^(?m:a)|\Az\z|q)"),
    (r"`[^`]{1,120}`", 0, r"\x{60}(?:[^\x{60}]){1,}\x{60}"),       # no upper bound: a superset
])
def test_relaxed_re2_reads_the_parsed_pattern(pattern, flags, expected):
    assert prefilter.relaxed_re2(re._parser.parse(pattern, flags), re.compile(pattern, flags).flags
                                 ) == expected.removeprefix("(?i)")
    scanner = prefilter.relaxed_scanner(re.compile(pattern, flags))
    assert scanner is not None and scanner.pattern == expected


@pytest.mark.parametrize("pattern, flags", [
    (r"(a)x\1|y", 0),          # a backreference
    (r"caf\u00e9|tea", re.I),  # a non-ASCII literal re.I may fold
    (r"x{1001}|y", 0),         # over RE2's repeat limit
    (r"(?:a|b)?", 0),          # matches the empty string: always "found"
    (r"^(?:add|new)\b|\Afix", 0),  # anchored: re fails it faster than RE2 is called
])
def test_no_stand_in_where_re2_cannot_answer_for_re(pattern, flags):
    assert prefilter.relaxed_scanner(re.compile(pattern, flags)) is None


def test_a_multiline_caret_is_no_anchor():
    """Under MULTILINE `^` matches after every newline: the scan is worth an RE2 stand-in."""
    assert prefilter.relaxed_scanner(re.compile(r"(?m:^add)|^new", 0)) is not None
    assert prefilter.relaxed_scanner(re.compile(r"^add|^new", re.M)) is not None


# constructs where RE2 and re disagree unless translated: \s (RE2's lacks \v and \x1c-\x1f),
# `$` before a final newline, lookarounds, scoped flags, \b next to punctuation
TRICKY = [r"a\sb|\bc\s*$", r"[^\s]x|y\S+z", r"\bfix(?:e[sd])?\b(?!-)|(?<=\()crash", r"(?-i:DoS)|dos\b",
          r"(?:^|\s)d/[a-z]|\bCI\b", r"^(?:add|new)\b(?! (?:\S+ ){0,3}?docs)|\bsupport for\b",
          r"x$|y\Z|^z", r"(?m:^a|b$)|q"]
EDGE_TEXT = st.lists(st.sampled_from(
    ["a", "b", "c", "x", "y", "z", "q", "fix", "fixes", "crash", "(", "-", "DoS", "dos", "d/x", "CI",
     "add", "new", "docs", "support for", " ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\u00e9"]),
    max_size=10).map("".join)


@settings(max_examples=400, deadline=None)
@given(EDGE_TEXT)
@example("a\x0bb")   # re's \s holds \v
@example("x\n")      # re's `$` matches before a final newline
@example("(crash")   # a lookbehind looks before the position the scan starts at
def test_the_stand_in_never_misses_a_match_of_the_pattern(text):
    """On ASCII text, wherever re matches, the relaxed RE2 pattern matches at or before it, so
    search, findall, finditer, sub and split through Prefiltered answer as plain re does."""
    for pattern in TRICKY:
        for flags in (0, re.I):
            plain = re.compile(pattern, flags)
            fast = Prefiltered(plain, None, prefilter.relaxed_scanner(plain))
            assert fast.scanner is not None, pattern
            found = plain.search(text)
            scanned = fast.scanner.search(text)
            if found:
                assert scanned is not None and scanned.start() <= found.start(), (pattern, text)
            assert (found and found.span()) == ((m := fast.search(text)) and m.span()), (pattern, text)
            assert plain.findall(text) == fast.findall(text)
            assert [m.span() for m in plain.finditer(text)] == [m.span() for m in fast.finditer(text)]
            assert plain.sub("#", text) == fast.sub("#", text)
            assert plain.split(text) == fast.split(text)


def test_rule_labels_are_unchanged_by_the_re2_stand_ins_on_the_whole_snapshot(monkeypatch):
    """Every entry of the snapshot gets the label and rule with the RE2 stand-ins that it gets
    from re alone (needle set on in both: the test above compares that half)."""
    rows = snapshot_entries()
    assert sum(p.scanner is not None for p in changelog_patterns()) >= 20
    changed = labels_moved_by(monkeypatch, "USE_RELAXED", rows)
    assert not changed, f"{len(changed)} of {len(rows)} entries labeled differently, first: {changed[0]}"
