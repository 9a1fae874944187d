"""Source parsers decide what text enters the dataset, with which version and line. Small hand-made
inputs with every entry spelled out, so a dropped flush, a shifted line or a lost hint fails."""
from __future__ import annotations

import pytest

from tuneforge import sources as s
from tuneforge.sources import ParsedEntry as E


def parse(name: str, text: str, path: str = "pkg/NEWS") -> list[tuple]:
    return [(e.text, e.hint, e.version, e.line) for e in s.get_format(name).parse(path, text)]


# ----------------------------------------------------------------------------- Debian

def test_debian_last_entry_without_sign_off_is_kept():
    """The issue's mutant: dropping the end-of-file flush passed, since every input ended with
    a sign-off. A truncated changelog (or one cut by the snapshot) still has entries."""
    text = ("foo (1.2-1) unstable; urgency=medium\n"
            "\n"
            "  * First change.\n"
            "  * Second change,\n"
            "    wrapped.")
    assert parse("debian_changelog", text, "foo/changelog") == [
        ("First change.", None, "1.2-1", 3), ("Second change, wrapped.", None, "1.2-1", 4)]


def test_debian_stanzas_groups_headings_and_notes():
    text = ("foo (2.0) unstable; urgency=low\n"          # 1
            "\n"                                          # 2
            "  [ Jane Doe ]\n"                            # 3
            "  * New upstream release:\n"                 # 4
            "    - fixes crash\n"                         # 5
            "    - adds\n"                                # 6
            "      feature\n"                             # 7
            "  * debian/control: bump\n"                  # 8
            "    standards.\n"                            # 9
            "\n"                                          # 10
            "  Note under the bullets\n"                  # 11
            "  goes on.\n"                                # 12
            "\n"                                          # 13
            " -- Jane Doe <j@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n"  # 14
            "stray text between stanzas\n"                # 15
            "  indented stray\n"                          # 16
            "foo (1.0) unstable; urgency=low\n"           # 17
            "\tTab-indented paragraph.\n"                 # 18
            " -- Jane Doe <j@example.org>  Sun, 01 Jan 2023 00:00:00 +0000\n")
    assert parse("debian_changelog", text, "foo/changelog") == [
        ("fixes crash", "New upstream release", "2.0", 5),
        ("adds feature", "New upstream release", "2.0", 6),
        ("debian/control: bump standards.", None, "2.0", 8),
        ("Note under the bullets goes on.", None, "2.0", 11),
        ("Tab-indented paragraph.", None, "1.0", 18),
    ]


def test_debian_colon_bullet_is_an_entry_without_sub_bullets_or_when_long():
    long_head = " ".join(["word"] * 12) + " end:"
    text = ("foo (3.0) unstable; urgency=low\n"
            "  * Fixes:\n"
            "  * Next one.\n"
            f"  * {long_head}\n"
            "    - child\n"
            " -- X <x@y>  Mon, 01 Jan 2024 00:00:00 +0000\n")
    assert parse("debian_changelog", text) == [
        ("Fixes:", None, "3.0", 2), ("Next one.", None, "3.0", 3),
        (long_head, None, "3.0", 4), ("child", None, "3.0", 5)]


def test_debian_sub_bullet_hint_resets_at_the_next_top_bullet():
    text = ("foo (3.1) unstable; urgency=low\n"
            "  * Group:\n"
            "    - a\n"
            "  * top\n"
            "    - b\n"
            "  * Other group:\n"
            "    + c\n"
            "      - deeper\n")
    assert parse("debian_changelog", text) == [
        ("a", "Group", "3.1", 3), ("top", None, "3.1", 4), ("b", None, "3.1", 5),
        ("c", "Other group", "3.1", 7), ("deeper", "Other group", "3.1", 8)]


def test_debian_prose_paragraphs_split_at_blank_lines():
    text = ("foo (1.1) unstable; urgency=low\n"
            "  Para one\n"
            "  continues.\n"
            "\n"
            "  Para two.\n"
            "  * bullet\n"
            "  after bullet is its own note\n")
    assert parse("debian_changelog", text) == [
        ("Para one continues.", None, "1.1", 2), ("Para two.", None, "1.1", 5),
        ("bullet", None, "1.1", 6), ("after bullet is its own note", None, "1.1", 7)]


def test_debian_nothing_before_the_first_header_or_after_a_sign_off():
    text = ("  * orphan before any header\n"
            "foo (1.0) unstable; urgency=low\n"
            "  * kept\n"
            " -- X <x@y>  Mon, 01 Jan 2024 00:00:00 +0000\n"
            "  * orphan after sign-off\n")
    assert parse("debian_changelog", text) == [("kept", None, "1.0", 3)]


@pytest.mark.parametrize("text,score", [
    ("foo (1.0-1) unstable; urgency=medium\n\n  * x\n", 95),
    ("\n\nfoo (1.0-1) unstable; urgency=medium\n", 95),   # blank lines before the header
    ("Some preamble\nfoo (1.0) unstable; urgency=low\n", 80),
    ("a\nb\nc\nd\nfoo (1.0) unstable; urgency=low\n", 80),  # fifth non-blank line
    ("a\nb\nc\nd\ne\nfoo (1.0) unstable; urgency=low\n", 0),
    ("foo (1.0) unstable urgency=low\n", 0),             # no ';'
    ("foo 1.0 unstable; urgency=low\n", 0),
    ("", 0),
])
def test_debian_sniff(text, score):
    assert s.DebianChangelog().sniff("x/changelog", text) == score


# ----------------------------------------------------------------------------- helpers

@pytest.mark.parametrize("path,product", [
    ("git/RelNotes/x.txt", "git"), ("/Git/x", "git"), ("./Vim/NEWS", "vim"), ("a\\b\\c", "a"),
])
def test_product_from_path(path, product):
    assert s.product_from_path(path) == product


def test_product_from_path_empty():
    for bad in ("", "/", "."):
        with pytest.raises(ValueError, match=f"cannot derive a product from empty path {bad!r}"):
            s.product_from_path(bad)


def test_lines_norm_indent():
    assert s._lines("a\r\nb\rc\nd") == ["a", "b", "c", "d"]
    assert s._lines("a\nb\n") == ["a", "b", ""]
    assert s._norm(" a\x00b \x1b[1m c\t\n d \x7f") == "ab [1m c d"
    assert s._norm("keep\x0b\x0cspaces") == "keep spaces"  # \v \f are whitespace, not removed
    assert s._indent(" \t x ") == 3
    assert s._indent("") == 0


def test_strip_md_links_and_bare_name():
    assert s._strip_md_links("see [the docs](https://x.y/z) and ![img](a.png)") == "see the docs and img"
    assert s._bare_name("A\\B\\NEWS.GZ") == "news"
    assert s._bare_name("x/CHANGES.rst.gz") == "changes.rst"
    assert s._bare_name("x/gz") == "gz"


def test_head_limits_lines_and_chars():
    text = "\n".join(str(i) for i in range(500))
    assert s._head(text) == [str(i) for i in range(200)]
    assert s._head(text, 3) == ["0", "1", "2"]
    assert s._head("a\r\nb\rc", 5) == ["a", "b", "c"]
    assert s._head("x" * 30000, 5) == ["x" * 20000]
    assert s._head("abcdef\nz", 5, chars=3) == ["abc"]


@pytest.mark.parametrize("title,version", [
    ("## [1.2.3] - 2024-01-01", "1.2.3"),
    ("Unreleased", "Unreleased"),
    ("[Unreleased]", "Unreleased"),
    ("Changes since polkit 121", None),
    ("Changes between 1.0.7 and 1.0.8", "1.0.8"),
    ("from 2.0 to 2.1b1", "2.1b1"),
    ("Version 9.1:", "9.1"),
    ("release: 2.0h", "2.0h"),
    ("v2.39.0-rc1", "2.39.0-rc1"),
    ("V8 engine", None),
    ("2024.01.05 and 3.4", "3.4"),
    ("2024.01.05", None),
    ("polkit 122", "122"),
    ("kmod v30:", "30"),
    ("Bug fixes", None),
    ("**[1.0](http://x/y)**", "1.0"),
])
def test_version_in(title, version):
    assert s._version_in(title) == version


def test_setext_underline():
    lines = ["Title", "=====", "  * bullet", "-----", "", "----", "====", "x", "    indented", "----",
             "last"]
    assert s._setext_underline(lines, 0) is True
    assert s._setext_underline(lines, 2) is False   # a bullet is no title
    assert s._setext_underline(lines, 4) is False   # blank
    assert s._setext_underline(lines, 5) is False   # an underline is no title
    assert s._setext_underline(lines, 7) is False   # next line is no underline
    assert s._setext_underline(lines, 8) is False   # indented 4
    assert s._setext_underline(lines, 10) is False  # last line
    assert s._setext_underline(["   Ttl", "   ---"], 0) is True
    assert s._setext_underline(["Ttl", "    ---"], 0) is False


@pytest.mark.parametrize("line,want", [
    ("## 1.2 ##", (2, "1.2")),
    ("# Title", (1, "Title")),
    ("###### six", (6, "six")),
    ("####### seven", None),
    ("   ## indented", (2, "indented")),
    ("    ## code", None),
    ("##", (2, "")),
    ("## C# ##", (2, "C#")),
    ("## C#", (2, "C#")),
    ("## a ## ", (2, "a")),
    ("#hashtag", None),
])
def test_atx(line, want):
    assert s._atx(line) == want


def test_starts_block():
    lines = ["first", "second", "", "after blank", "----", "after rule", "# h", "after heading"]
    assert [s._starts_block(lines, i) for i in range(len(lines))] == \
        [True, False, False, True, False, True, False, True]


@pytest.mark.parametrize("text,want", [
    ("[v1.0](https://x/y)", True),
    ("<https://example.com/a>", True),
    ("https://example.com/a, https://b.c", True),
    ("- [x](y) -", True),
    ("see [x](y)", False),
    ("fix https://example.com/a now", False),
    ("http", False),
    ("_", True),
])
def test_is_link_only(text, want):
    assert s._is_link_only(text) is want


def test_md_clean():
    node = "\\[[`abc1234`](https://g/c)] - **net**: fix it (Jane Doe) [#123](https://g/p)"
    assert s._md_clean(node) == "**net**: fix it"
    assert s._md_clean("[`abcdef1`](https://g/c) fix thing") == "fix thing"
    assert s._md_clean("[`abcdef1`](https://g/c) fix (kept author)") == "fix (kept author)"
    assert s._md_clean("no \\*escape\\* here \\[x\\]") == "no *escape* here [x]"
    assert s._md_clean("plain (Author)") == "plain (Author)"
    many = "\\[[`abc1234`](u)] - x <https://a> <https://b> <https://c> <https://d> <https://e>"
    assert s._md_clean(many) == "x <https://a>"  # at most four trailing refs are dropped


def test_clean_hint_and_heading_bullet():
    assert s._clean_hint("**[Bug fixes](x)**:") == "Bug fixes"
    assert s._clean_hint(" ## :: ") is None
    assert s._clean_hint("Notes::") == "Notes"
    acc = s._Acc(1, 0, None, "1", "Bugs fixed:")
    assert s._heading_bullet(acc) is True
    assert s._heading_bullet(s._Acc(1, 0, None, "1", "Fixed a bug.")) is False
    assert s._heading_bullet(s._Acc(1, 0, None, "1", " ".join(["w"] * 13) + ":")) is False
    assert s._heading_bullet(s._Acc(1, 0, None, "1", " ".join(["w"] * 12) + ":")) is True
    assert s._heading_bullet(s._Acc(1, 0, None, "1", "")) is False


def test_emit():
    assert s._emit(None) is None
    assert s._emit(s._Acc(3, 0, "h", None, "text")) is None  # no release: dropped
    assert s._emit(s._Acc(3, 0, "h", "1.0", " \x00 ")) is None
    acc = s._Acc(3, 2, "h", "1.0", "a  b")
    acc.parts.append("  c")
    assert s._emit(acc) == E("a b c", "h", "1.0", 3)
    assert s._emit(acc, clean=lambda t: t.upper() + "  !") == E("A B C !", "h", "1.0", 3)
    assert s._emit(acc, clean=lambda t: "  ") is None


def test_sections_levels():
    sec = s._Sections()
    sec.heading(2, "Bug fixes")           # before any release: a hint
    assert (sec.version, sec.hint, sec.level) == (None, "Bug fixes", None)
    sec.heading(2, "Version 1.0")
    assert (sec.version, sec.hint, sec.level) == ("1.0", None, 2)
    sec.heading(3, "Fixes")
    assert (sec.version, sec.hint) == ("1.0", "Fixes")
    sec.heading(4, "V8 11.3")             # a sub-heading that is no release title
    assert (sec.version, sec.hint) == ("1.0", "V8 11.3")
    sec.heading(3, "Changes in 1.0.1")    # reads like a release: changes the version
    assert (sec.version, sec.hint, sec.level) == ("1.0.1", None, 2)
    sec.heading(1, "2.0")                 # a higher level than before
    assert (sec.version, sec.level) == ("2.0", 1)


def test_unknown_format_error_and_repr():
    e = s.UnknownFormatError("a/README")
    assert e.path == "a/README"
    assert str(e) == ("a/README: no release-note parser accepted this file (known: debian_changelog, "
                      "git_relnotes, gnu_news, keepachangelog, markdown_bullets, rst_changes)")
    assert repr(s.get_format("gnu_news")) == "<GnuNews 'gnu_news'>"


def test_register_needs_a_name_and_is_idempotent():
    class Nameless(s.SourceFormat):
        def sniff(self, path, text):
            return 0

        def parse(self, path, text):
            return iter(())
    with pytest.raises(ValueError, match="Nameless has no name"):
        s.register(Nameless)
    assert s.register(s.GnuNews) is s.GnuNews
    assert s.FORMATS["gnu_news"] is s.GnuNews


def test_detect_format_highest_score_wins():
    deb = "foo (1.0) unstable; urgency=low\n  * x\n -- X <x@y>  Mon, 01 Jan 2024 00:00:00 +0000\n"
    assert s.detect_format("foo/changelog", deb).name == "debian_changelog"
    with pytest.raises(s.UnknownFormatError):
        s.detect_format("foo/README", "just prose\n")
