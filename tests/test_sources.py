"""Release-note parsers on real excerpts (tests/fixtures/sources), plus robustness properties."""
from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneforge import sources
from tuneforge.sources import (
    FORMATS,
    ParsedEntry,
    SourceFormat,
    UnknownFormatError,
    common,
    detect_format,
    get_format,
    gnu_news,
    product_from_path,
    register,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sources"

# snapshot-relative fixture path -> the format that must claim it
FIXTURE_FORMATS = {
    "libavif15/changelog": "keepachangelog",
    "nodejs/changelogs/CHANGELOG_V21.md": "markdown_bullets",
    "git/RelNotes/2.39.0.txt": "git_relnotes",
    "coreutils/NEWS": "gnu_news",
    "apt/changelog": "debian_changelog",
    "python3-setuptools/changelog": "rst_changes",
}


def read(rel: str) -> str:
    return (FIXTURES / rel).read_text(encoding="utf-8")


def parse(rel: str, name: str | None = None) -> list[ParsedEntry]:
    return list(get_format(name or FIXTURE_FORMATS[rel]).parse(rel, read(rel)))


def parse_text(name: str, text: str, path: str = "x/NEWS") -> list[ParsedEntry]:
    return list(get_format(name).parse(path, text))


def at(entries: list[ParsedEntry], line: int) -> ParsedEntry:
    return next(e for e in entries if e.line == line)


# ----------------------------------------------------------------------------- registry


def test_registry_holds_the_eight_formats():
    assert sorted(FORMATS) == ["debian_changelog", "dep3", "format_patch", "git_relnotes", "gnu_news",
                               "keepachangelog", "markdown_bullets", "rst_changes"]
    for name, cls in FORMATS.items():
        assert cls.name == name and issubclass(cls, SourceFormat)


def test_get_format_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown source format 'nope'.*gnu_news"):
        get_format("nope")


def test_register_rejects_a_second_class_under_a_taken_name():
    class Impostor(SourceFormat):
        name = "gnu_news"

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
    assert FORMATS["gnu_news"] is gnu_news.GnuNews


def test_every_format_module_is_registered_under_its_own_name():
    """A format is a module of tuneforge.sources named like the format: a module the package
    forgets to import never registers, and detection would skip its files without a word."""
    modules = {m.name for m in pkgutil.iter_modules(sources.__path__)} - {"common"}
    assert modules == set(FORMATS)
    for name, cls in FORMATS.items():
        assert cls.__module__ == f"tuneforge.sources.{name}"


def test_detect_format_breaks_ties_by_name(monkeypatch):
    class Sure(SourceFormat):
        def sniff(self, path: str, text: str) -> int:
            return 100

        def parse(self, path, text):
            return iter(())

    zzz = type("Zzz", (Sure,), {"name": "zzz_always"})
    aaa = type("Aaa", (Sure,), {"name": "aaa_always"})
    monkeypatch.setitem(FORMATS, "zzz_always", zzz)
    monkeypatch.setitem(FORMATS, "aaa_always", aaa)
    assert detect_format("x/NEWS", "anything").name == "aaa_always"


@pytest.mark.parametrize(("path", "product"), [
    ("git/RelNotes/2.39.0.txt", "git"),
    ("coreutils/NEWS", "coreutils"),
    ("libavif15/changelog", "libavif15"),
    ("./Nodejs/changelogs/CHANGELOG_V21.md", "nodejs"),
])
def test_product_from_path(path, product):
    assert product_from_path(path) == product


def test_product_from_empty_path_is_an_error():
    with pytest.raises(ValueError):
        product_from_path("")


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize(("rel", "name"), sorted(FIXTURE_FORMATS.items()))
def test_detect_format_picks_the_right_parser(rel, name):
    assert detect_format(rel, read(rel)).name == name


@pytest.mark.parametrize(("rel", "name"), sorted(FIXTURE_FORMATS.items()))
def test_detection_survives_gz_names_and_absolute_paths(rel, name):
    assert detect_format(f"/usr/share/doc/{rel}.gz", read(rel)).name == name


def test_rst_extension_is_enough_for_rst():
    text = read("python3-setuptools/changelog")
    assert detect_format("python3-setuptools/CHANGES.rst", text).name == "rst_changes"


def test_plain_readme_is_rejected_naming_the_file():
    # zstd's README.md opening paragraph, under a README name
    text = ("Zstandard, or zstd as short version, is a fast lossless compression algorithm,\n"
            "targeting real-time compression scenarios at zlib-level and better compression "
            "ratios.\nIt's backed by a very fast entropy stage, provided by Huff0 and FSE "
            "library.\n")
    with pytest.raises(UnknownFormatError, match=r"zstd/README: no release-note parser") as e:
        detect_format("zstd/README", text)
    assert e.value.path == "zstd/README"


@pytest.mark.parametrize("text", ["", "\n\n", "\x00\x00", ("2022-04-15  Jim Meyering  <x@y>\n\n"
                                  "\t* NEWS: Record release date.\n")])
def test_non_changelogs_are_rejected(text):
    with pytest.raises(UnknownFormatError):
        detect_format("foo/ChangeLog", text)


# ----------------------------------------------------------------------------- keepachangelog


def test_keepachangelog_libavif():
    entries = parse("libavif15/changelog")
    assert len(entries) == 20
    first = entries[0]
    assert first == ParsedEntry("avifincrtest_helpers: Cast 64-bit offset to size_t",
                                "Changed", "0.11.1", 12)
    # the release's prose paragraph is not an entry; the wrapped bullet is joined
    e = at(entries, 35)
    assert e.text == ("Add new avifResult codes AVIF_RESULT_CANNOT_CHANGE_SETTING and "
                      "AVIF_RESULT_INCOMPATIBLE_IMAGE")
    assert (e.hint, e.version) == ("Added", "0.11.0")
    assert at(entries, 49).hint == "Changed"
    assert {e.version for e in entries} == {"0.11.1", "0.11.0"}  # nothing under [Unreleased]


def test_keepachangelog_bracketed_names_and_links():
    # libjansi's changelog: "[Jansi 2.4.0][2_4_0]" headings, reference links, commit links
    text = ("# Changelog\n\n## [Jansi 2.4.0][2_4_0], released 2021-10-14\n"
            "[2_4_0]: https://repo.maven.apache.org/maven2/org/fusesource/jansi/jansi/2.4.0\n\n"
            "* [`2cf4461`](https://github.com/fusesource/jansi/commit/2cf446182c8) Fix support "
            "for GraalVM native-image, fixes #199\n\n## [Unreleased]\n\n### Fixed\n- Something\n")
    entries = parse_text("keepachangelog", text)
    assert [(e.text, e.version, e.line) for e in entries] == [
        ("Fix support for GraalVM native-image, fixes #199", "2.4.0", 6),
        ("Something", "Unreleased", 11),
    ]


# ----------------------------------------------------------------------------- markdown


def test_markdown_nodejs_commit_bullets_are_cleaned():
    entries = parse("nodejs/changelogs/CHANGELOG_V21.md")
    assert len(entries) == 13
    assert {e.version for e in entries} == {"21.1.0"}  # the ToC and "Other Versions" are dropped
    e = at(entries, 82)
    assert e.text == "**(SEMVER-MINOR)** **fs**: add `flush` option to `appendFile()` functions"
    assert e.hint == "Other Notable Changes"
    e = at(entries, 91)
    assert e.text == "**deps**: V8: cherry-pick f7d000a7ae7b"
    assert e.hint == "Commits"


def test_markdown_old_node_commit_style_with_angle_links():
    # CHANGELOG_V010.md, version 0.10.48
    text = ("## 2016-10-18, Version 0.10.48 (Maintenance), @rvagg\n\n### Notable changes\n\n"
            "* c-ares: fix for single-byte buffer overwrite, CVE-2016-5180, more information at "
            "<https://c-ares.haxx.se/adv_20160929.html> (Rod Vagg)\n\n### Commits\n\n"
            "* \\[[`a14a6a3a11`](https://github.com/nodejs/node/commit/a14a6a3a11)] - deps: "
            "c-ares, avoid single-byte buffer overwrite (Rod Vagg) "
            "<https://github.com/nodejs/node/pull/9108>\n")
    entries = parse_text("markdown_bullets", text, "nodejs/changelogs/CHANGELOG_V010.md")
    assert [(e.hint, e.version) for e in entries] == [("Notable changes", "0.10.48"),
                                                      ("Commits", "0.10.48")]
    assert entries[0].text.endswith("(Rod Vagg)")  # not a commit bullet: kept verbatim
    assert entries[1].text == "deps: c-ares, avoid single-byte buffer overwrite"


def test_markdown_setext_headings_and_labels():
    # man-db NEWS.md
    text = ("man-db 2.11.2 (8 January 2023)\n==============================\n\nFixes:\n\n"
            " * Fix compile and test failures when `troff` is not `groff`.\n\nImprovements:\n\n"
            " * Check for stray cats even if no manual pages in a given manpath were\n"
            "   changed.\n\nman-db 2.11.1 (15 November 2022)\n"
            "================================\n\nBuild:\n\n"
            " * Transfer Git repository to https://gitlab.com/man-db/man-db.\n")
    entries = parse_text("markdown_bullets", text, "man-db/NEWS.md")
    assert [(e.text, e.hint, e.version, e.line) for e in entries] == [
        ("Fix compile and test failures when `troff` is not `groff`.", "Fixes", "2.11.2", 6),
        ("Check for stray cats even if no manual pages in a given manpath were changed.",
         "Improvements", "2.11.2", 10),
        ("Transfer Git repository to https://gitlab.com/man-db/man-db.", "Build", "2.11.1", 18),
    ]


def test_markdown_subheadings_with_numbers_do_not_change_the_version():
    text = ("## 2023-04-18, Version 20.0.0 (Current), @RafaelGSS\n\n#### V8 11.3\n\n"
            "* V8 is updated to 11.3\n\n### Major changes between OpenSSL 3.0.18 and "
            "OpenSSL 3.0.19 [27 Jan 2026]\n\n* Fixed a stack buffer overflow.\n")
    entries = parse_text("markdown_bullets", text, "x/CHANGELOG.md")
    assert [(e.hint, e.version) for e in entries] == [("V8 11.3", "20.0.0"), (None, "3.0.19")]


# ----------------------------------------------------------------------------- git


def test_git_relnotes():
    entries = parse("git/RelNotes/2.39.0.txt")
    assert len(entries) == 18
    assert {e.version for e in entries} == {"2.39.0"}  # title says v2.39; the file says 2.39.0
    e = at(entries, 13)
    assert e.hint == "UI, Workflows & Features"
    assert e.text.startswith('After checking out a "branch" that is a symbolic-ref')
    assert e.text.endswith("dereferencing a symbolic-ref only once.")
    e = at(entries, 55)
    assert e.hint == "Performance, Internal Implementation, Development Support etc."
    assert e.text == "More UNUSED annotation to help using -Wunused option with the compiler."
    assert at(entries, 66) == ParsedEntry("Fix messages incorrectly marked for translation.",
                                          "Fixes since v2.38", "2.39.0", 66)


def test_git_title_version_when_the_file_name_is_not_one():
    text = "GIT v1.5.0 Release Notes\n========================\n\nOld news\n--------\n\n * x y\n"
    assert parse_text("git_relnotes", text, "git/RelNotes/old.txt")[0].version == "1.5.0"


# ----------------------------------------------------------------------------- GNU NEWS


def test_gnu_news_coreutils():
    entries = parse("coreutils/NEWS")
    assert len(entries) == 12
    e = entries[0]
    assert e == ParsedEntry("chmod -R no longer exits with error status when encountering "
                            "symlinks. All files would be processed correctly, but the exit "
                            "status was incorrect. [bug introduced in coreutils-9.0]",
                            "Bug fixes", "9.1", 7)
    assert at(entries, 47).hint == "Changes in behavior"
    assert at(entries, 56).text.startswith("cksum no longer allows abbreviated algorithm names")


def test_gnu_news_outline_with_entries_as_subheadings():
    # wget NEWS: "** " lines are the entries themselves
    text = ("GNU Wget NEWS -- history of user-visible changes.\n\n"
            "* Noteworthy changes in release 1.21.2 (2021-09-07)\n\n"
            "** Support for autoconf 2.71\n\n"
            "** --page-requisites will now also download links marked as \"alternate\n"
            "   stylesheet\" or \"icon\"\n\n\n* Changes in Wget 1.21\n\n"
            "** Improve the number of translated strings\n")
    entries = parse_text("gnu_news", text, "wget/NEWS")
    assert [(e.text, e.hint, e.version, e.line) for e in entries] == [
        ("Support for autoconf 2.71", None, "1.21.2", 5),
        (('--page-requisites will now also download links marked as "alternate stylesheet" or '
         '"icon"'), None, "1.21.2", 7),
        ("Improve the number of translated strings", None, "1.21", 13),
    ]


def test_gnu_news_plain_layout():
    # patch NEWS: unstarred "Changes in version X:" lines over "*" bullets
    text = ("Changes in version 2.7.6:\n\n"
            "* Files specififed on the command line are no longer verified to be inside the\n"
            "  current working directory, so commands like \"patch -i foo.diff ../foo\" will\n"
            "  work again.\n* Various fixes.\n\nChanges in version 2.7.5:\n\n"
            "* There are users which expect patch to follow symbolic links in the working\n"
            "  directory.\n")
    assert detect_format("patch/NEWS", text).name == "gnu_news"
    entries = parse_text("gnu_news", text, "patch/NEWS")
    assert [(e.version, e.line) for e in entries] == [("2.7.6", 3), ("2.7.6", 6), ("2.7.5", 10)]
    assert entries[1].text == "Various fixes."


def test_gnu_news_footer_is_not_an_entry():
    text = ("* Noteworthy changes in release 1.0 (2020-01-01) [stable]\n\n** Bug fixes\n\n"
            "  foo no longer crashes.\n\n"
            "========================================================================\n"
            "Copyright (C) 2001-2022 Free Software Foundation, Inc.\n\n"
            "Permission is granted to copy, distribute and/or modify this document\n")
    assert [e.text for e in parse_text("gnu_news", text)] == ["foo no longer crashes."]


# ----------------------------------------------------------------------------- Debian


def test_debian_changelog_apt():
    entries = parse("apt/changelog")
    assert len(entries) == 22
    e = entries[0]
    assert (e.version, e.hint, e.line) == ("2.6.1", None, 3)
    assert e.text.startswith("Restore adduser dependency for bookworm. This caused some")
    assert e.text.endswith("(Closes: #1035654)")
    # "[ Cyril Brulebois ]" group lines are neither entries nor hints
    assert at(entries, 18) == ParsedEntry(
        "Teach apt-cdrom's scoring system about non-free-firmware (Closes: #1029751)",
        None, "2.6.0", 18)
    # sub-bullets are entries of their own; "* other bookworm regressions:" heads its sub-bullets
    assert at(entries, 22).text == "Have values in Section config trees refer to them in all components"
    assert at(entries, 26).hint == "other bookworm regressions"
    assert not any(e.text.startswith("other bookworm regressions") for e in entries)
    assert at(entries, 28).hint is None
    # a note under the sub-bullets is its own entry, not glued to the last sub-bullet
    assert at(entries, 46).text == "We do not believe rsh was supposed to exclude GPL-3"
    assert at(entries, 47).text.startswith("This unfortunately creates a bit of churn")


def test_debian_news_paragraphs_are_entries():
    # adduser NEWS.Debian
    text = ("adduser (3.130) unstable; urgency=low\n\n"
            "  deluser's --no-preserve-root option is deprecated, and it will be\n"
            "  removed after Debian bookworm.\n\n"
            "  The --gecos option is being renamed to --comment to get aligned with\n"
            "  passwd's terminology.\n\n"
            " -- Marc Haber <mh+debian-packages@zugschlus.de>  Sun, 25 Dec 2022 17:11:31 +0100\n")
    assert detect_format("adduser/NEWS.Debian", text).name == "debian_changelog"
    entries = parse_text("debian_changelog", text, "adduser/NEWS.Debian")
    assert [(e.text, e.version, e.line) for e in entries] == [
        (("deluser's --no-preserve-root option is deprecated, and it will be removed after "
         "Debian bookworm."), "3.130", 3),
        (("The --gecos option is being renamed to --comment to get aligned with passwd's "
         "terminology."), "3.130", 6),
    ]


# ----------------------------------------------------------------------------- reST


def test_rst_setuptools():
    entries = parse("python3-setuptools/changelog")
    assert len(entries) == 10
    assert entries[0] == ParsedEntry(
        "#3782: Fixed problem with ``file`` directive in ``tool.setuptools.dynamic`` "
        "(``pyproject.toml``) when value is a simple string instead of list.", "Misc", "66.1.1", 7)
    assert at(entries, 34).hint == "Breaking Changes"
    assert at(entries, 34).version == "66.0.0"
    assert at(entries, 62).version == "65.6.3"
    assert not any("No significant changes" in e.text for e in entries)


def test_rst_bullet_headings_and_overlined_titles():
    # GLib NEWS ("* Bugs fixed:" over "-" bullets) under an overlined document title
    text = ("+++++++++++\nNews\n+++++++++++\n\nOverview of changes in GLib 2.74.6\n"
            "==================================\n\n* Bugs fixed:\n"
            "  - !3239 Backport !3237 Fix safe_wspawnve #define to glib-2-74\n\n"
            "* Translation updates:\n  - Georgian (Ekaterine Papava)\n\n"
            "Overview of changes in GLib 2.74.5\n==================================\n\n"
            "* Bugs fixed:\n  - #2843 gtk_show_uri can't open browser on MSYS2 on Windows\n")
    entries = parse_text("rst_changes", text, "libglib2.0-0/NEWS")
    assert [(e.hint, e.version, e.line) for e in entries] == [
        ("Bugs fixed", "2.74.6", 9), ("Translation updates", "2.74.6", 12),
        ("Bugs fixed", "2.74.5", 18)]


# ----------------------------------------------------------------------------- line endings


@pytest.mark.parametrize(("rel", "name"), sorted(FIXTURE_FORMATS.items()))
def test_crlf_and_cr_line_endings_give_the_same_entries(rel, name):
    text = read(rel)
    want = parse(rel)
    fmt = get_format(name)
    assert list(fmt.parse(rel, text.replace("\n", "\r\n"))) == want
    assert list(fmt.parse(rel, text.replace("\n", "\r"))) == want


def test_version_in_headings():
    v = common._version_in
    assert v("* Noteworthy changes in release 9.1 (2022-04-15) [stable]") == "9.1"
    assert v("## 2023-10-24, Version 21.1.0 (Current), @targos") == "21.1.0"
    assert v("## 2015.01.29, Version 0.11.16 (Unstable)") == "0.11.16"
    assert v("Overview of changes between 1.0.7 and 1.0.8") == "1.0.8"
    assert v("What's New in Python 3.11.2 final?") == "3.11.2"
    assert v("Fixes since v2.38") is None
    assert v("### vm: fix V8 compilation cache support") is None
    assert v("## polkit 122") == "122"
    assert v("[Unreleased]") == "Unreleased"


# ----------------------------------------------------------------------------- properties

LINE_BITS = st.sampled_from([
    "\n", "\r\n", "\r", " ", "  ", "\t", "* ", "- ", "  * ", "    - ", "• ", "1. ", "## ", "### ",
    "# ", "====\n", "----\n", "~~~\n", "```\n", "[", "]", "(", ")", "`", "\\", "<a id=\"x\">",
    "<table>", "</table>", "<!--", "-->", ".. note::", ":tocdepth: 2", "\x00", "\x1b", "\u2028",
    "\x85", "word", "Fixes:", "1.2.3", "v2.39", "* Noteworthy changes in release 1.0\n",
    "** Bug fixes\n", "pkg (1.0-1) unstable; urgency=low\n", " -- A <a@b>  Mon, 1 Jan 2024\n",
    "  [ Name ]\n", "Git v2.39 Release Notes\n", "\\[[`abcdef1`](u)] - ", "(merge 1234567 a/b).",
    "[1.0]: http://x\n", "Version 1.0:\n",
])
TEXTS = st.one_of(st.text(max_size=400), st.lists(LINE_BITS, max_size=120).map("".join))
PATHS = st.sampled_from(["x/NEWS", "x/CHANGES.rst", "x/changelog.Debian", "git/RelNotes/1.2.txt",
                         "x/CHANGELOG.md", "x/NEWS.md.gz", "", "weird/\x00/\u00e9"])


# release-note formats; the verbatim patch formats have their own properties (test_sources_patches)
@pytest.mark.parametrize("name", sorted(n for n, cls in FORMATS.items() if not cls.verbatim))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, path=PATHS)
def test_parse_never_raises_and_entries_are_clean(name, text, path):
    fmt = get_format(name)
    assert 0 <= fmt.sniff(path, text) <= 100
    n_lines = len(common._lines(text))
    for e in fmt.parse(path, text):
        assert isinstance(e, ParsedEntry)
        assert e.text and e.text == " ".join(e.text.split())
        assert "\n" not in e.text and "\r" not in e.text
        assert 1 <= e.line <= n_lines
        assert e.hint is None or (e.hint and "\n" not in e.hint)
        assert e.version


@settings(max_examples=100, deadline=None)
@given(text=TEXTS, path=PATHS)
def test_detect_format_accepts_or_raises_unknown_format(text, path):
    try:
        fmt = detect_format(path, text)
    except UnknownFormatError as e:
        assert path in str(e)
    else:
        assert fmt.sniff(path, text) > 0


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_huge_and_pathological_lines_stay_fast(name):
    import time

    nasty = ("## [" + "[" * 50_000 + "\n" + "# " + " #" * 50_000 + "\n* " + "[a" * 50_000 + "\n"
             "* \\[[`abcdef1`](u)] - x " + "[#1" * 20_000 + "\n * x " + "(merge 1234567 a/b " * 5_000
             + "\n" + "* " + "word " * 200_000 + "\n")
    fmt = get_format(name)
    start = time.perf_counter()
    fmt.sniff("x/NEWS", nasty)
    list(fmt.parse("x/NEWS", nasty))
    assert time.perf_counter() - start < 2.0
