"""Patch formats (format_patch, dep3) on hand-written fixtures (tests/fixtures/patches): the diff
kept verbatim, the author's message as the hint, people never in it, unusable patches rejected."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneforge.records import QuarantineReason
from tuneforge.sources import FORMATS, ParsedEntry, Rejected, detect_format, get_format

PATCHES = Path(__file__).resolve().parent / "fixtures" / "patches"
RELEASE_NOTES = Path(__file__).resolve().parent / "fixtures" / "sources"
# every person named anywhere in the fixtures (headers, trailers, prose)
PEOPLE = ["Jürgen Müller", "Juergen", "Ana Lima", "Pat Doe", "Sam Roe", "Kim Park", "Morgan Lee", "Lee, Morgan",
          "Chris Tan", "Dana Fox"]
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def read(name: str) -> str:
    return (PATCHES / name).read_text(encoding="utf-8")


def parse(name: str, path: str | None = None) -> tuple[str, list[ParsedEntry | Rejected]]:
    """(detected format, units) of a fixture, read as the snapshot member <package>/<name>."""
    member = path or f"pkg/{name}"
    fmt = detect_format(member, read(name))
    return fmt.name, list(fmt.parse(member, read(name)))


def test_patch_formats_are_registered_verbatim():
    assert FORMATS["format_patch"].verbatim and FORMATS["dep3"].verbatim


def test_format_patch_decodes_a_folded_mime_subject_and_drops_the_signature():
    name, units = parse("0001-mime-subject.patch")
    assert name == "format_patch"
    [e] = units
    assert e == ParsedEntry(
        text=read("0001-mime-subject.patch").split("\n\n", 3)[3].split("-- \n2.39.2")[0],
        hint="[PATCH] l10n: update the German translation for \u201cr\u00e9sum\u00e9\u201d strings\n\n"
             "The plural forms were swapped, so \"1 Dateien\" was shown.",
        version=None, line=1)
    assert e.text.startswith("diff --git a/po/de.po b/po/de.po\n") and e.text.endswith(' msgid "R\u00e9sum\u00e9"\n')


def test_two_patches_in_one_mbox_with_and_without_a_diffstat():
    name, units = parse("two-patches.mbox")
    assert name == "format_patch"
    assert [(e.line, e.hint) for e in units] == [
        (1, "[PATCH 1/2] udev: skip devices without a serial\n\n"
            "Devices without ID_SERIAL made the rule match every disk."),
        (23, "[PATCH 2/2] docs: drop the empty list item from the README"),
    ]
    first, second = units
    assert first.text.endswith(' SUBSYSTEM!="block", GOTO="disk_end"\n') and "2.40.1" not in first.text
    assert "rules/60-disk.rules | 1 +" not in first.text  # the diffstat is skipped
    # the removed "- " line reads "-- " like a signature; the hunk's counts say it is not one
    assert second.text.endswith(" - --serial: match by serial\n-- \n - --path: match by path\n \n")
    assert "2.40.1" not in second.text


def test_dep3_multi_line_description_and_free_text():
    name, units = parse("dep3-multiline.patch")
    assert name == "dep3"
    [e] = units
    assert e.hint == ("Fix a crash when the config file is empty\n\n"
                      "parse_config() read the first byte of an empty buffer.\n\n"
                      "Check the length first and fall back to the defaults.\n\n"
                      "The empty file is what the installer writes on first boot.")
    assert e.text.startswith("Index: project-1.2/src/config.c\n====")
    assert e.text == read("dep3-multiline.patch").split("http://dep.debian.net/deps/dep3/\n", 1)[1]
    assert (e.version, e.line) == (None, 1)


def test_a_bare_quilt_patch_is_claimed_and_rejected_without_message():
    name, units = parse("bare-quilt.diff")
    assert name == "dep3"  # detected (not unknown_format), so it is quarantined with a reason
    assert [(u.reason, u.line) for u in units] == [("patch_without_message", 1)]
    assert units[0].reason in {r.value for r in QuarantineReason}


def test_headers_only_author_and_origin_are_no_message():
    text = "Author: Kim Park <kim@example.org>\nOrigin: vendor\n\n" + read("bare-quilt.diff")
    [u] = get_format("dep3").parse("pkg/x.patch", text)
    assert isinstance(u, Rejected) and u.reason == "patch_without_message"
    assert "Kim" not in u.detail and "@" not in u.detail


def test_dep3_without_a_diff_is_rejected_without_diff():
    name, units = parse("dep3-no-diff.patch")
    assert name == "dep3"
    assert [(u.reason, u.line) for u in units] == [("patch_without_diff", 1)]


def test_format_patch_mbox_with_no_hunk_is_rejected_without_diff():
    text = ("From 4444444444444444444444444444444444444444 Mon Sep 17 00:00:00 2001\nFrom: A B <a@b.c>\n"
            "Subject: [PATCH] Merge branch 'next'\n\n")
    assert detect_format("pkg/merge.patch", text).name == "format_patch"
    [u] = get_format("format_patch").parse("pkg/merge.patch", text)
    assert (u.reason, u.line) == ("patch_without_diff", 1)


@pytest.mark.parametrize(("name", "head"), [
    ("dep3", "Description: Update the logo\n\n"),
    ("format_patch", "From 7777777777777777777777777777777777777777 Mon Sep 17 00:00:00 2001\n"
                     "Subject: [PATCH] Update the logo\n\n---\n logo.png | Bin\n\n"),
])
def test_binary_only_git_diff_has_no_text_hunk(name, head):
    text = head + ("diff --git a/logo.png b/logo.png\nindex 1..2 100644\n"
                   "GIT binary patch\nliteral 4\nLcmZ?wbXH&p\n\n")
    assert detect_format("pkg/logo.patch", text).name == name
    [u] = get_format(name).parse("pkg/logo.patch", text)
    assert u.reason == "patch_without_diff" and "binary" in u.detail


@pytest.mark.parametrize(("hunks", "why"), [
    ("@@ -1,3 +1,3 @@\n-a\n-b\n+c\n", "cut short"),  # a removal and an addition short, then the end
    ("@@ -x +1 @@\n-a\n+b\n", "malformed hunk header at line 5"),
    ("@@ -1,2 +1,2 @@\n-a\nnot a hunk line\n+b\n c\n", "ends early at line 7"),
])
def test_a_diff_that_cannot_be_read_is_unparseable(hunks, why):
    text = "Description: Fix it\n\n--- a/f\n+++ b/f\n" + hunks
    [u] = get_format("dep3").parse("pkg/f.patch", text)
    assert u.reason == "unparseable_patch" and why in u.detail


def test_an_undecodable_subject_is_unparseable():
    text = ("From 5555555555555555555555555555555555555555 Mon Sep 17 00:00:00 2001\nFrom: A B <a@b.c>\n"
            "Subject: =?x-no-such-charset?q?abc?=\n\n---\ndiff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n")
    [u] = get_format("format_patch").parse("pkg/x.patch", text)
    assert u.reason == "unparseable_patch" and "Subject" in u.detail


def test_dpatch_description_lines():
    text = ("#! /bin/sh /usr/share/dpatch/dpatch-run\n## 01_fix.dpatch by Kim Park <kim@example.org>\n##\n"
            "## All lines beginning with `## DP:' are a description of the patch.\n## DP: Build with -fPIC.\n\n"
            "@DPATCH@\ndiff -urNad x~/Makefile x/Makefile\n--- x~/Makefile\n+++ x/Makefile\n@@ -1 +1 @@\n"
            "-CFLAGS = -O2\n+CFLAGS = -O2 -fPIC\n")
    [e] = get_format(detect_format("pkg/01_fix.dpatch", text).name).parse("pkg/01_fix.dpatch", text)
    assert e.hint == "Build with -fPIC." and e.text.startswith("diff -urNad x~/Makefile")


def test_no_author_name_or_email_reaches_a_hint_or_a_detail():
    units = []
    for path in sorted(PATCHES.iterdir()):
        units += parse(path.name)[1]
    assert len([u for u in units if isinstance(u, ParsedEntry)]) == 5
    people = [p.lower() for p in PEOPLE]
    fixture_emails = {m for p in PATCHES.iterdir() for m in EMAIL.findall(p.read_text(encoding="utf-8"))}
    assert len(fixture_emails) >= 8
    for u in units:
        said = (u.hint or "") if isinstance(u, ParsedEntry) else u.detail
        assert not EMAIL.search(said), said
        assert not [p for p in people if p in said.lower()], said
    # the prose around a dropped name stays when it names nobody
    e = next(u for u in parse("0002-from-email.patch")[1])
    assert e.hint == ("[PATCH] http_chunks: reset the trailer between chunks\n\n"
                      "Curl_httpchunk_read kept the trailer buffer between chunks, so it leaked.")


def test_release_notes_are_never_claimed():
    for path in sorted(p for p in RELEASE_NOTES.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(RELEASE_NOTES))
        assert get_format("format_patch").sniff(rel, text) == 0, rel
        assert get_format("dep3").sniff(rel, text) == 0, rel


def test_each_format_claims_its_own_and_both_claim_any_diff():
    assert get_format("format_patch").sniff("pkg/x", read("dep3-multiline.patch")) == 0
    assert get_format("dep3").sniff("pkg/x", read("dep3-multiline.patch")) == 90
    assert get_format("format_patch").sniff("pkg/x", read("two-patches.mbox")) == 95
    assert get_format("dep3").sniff("pkg/x", "just prose, no patch\n--- not a diff\n") == 0


LINE_BITS = st.sampled_from([
    "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\n", "From: A B <a@b.c>\n",
    "Subject: [PATCH] x\n", " continued\n", "Description: d\n", " .\n", "---\n", "-- \n", "2.1.0\n",
    "diff --git a/f b/f\n", "--- a/f\n", "+++ b/f\n", "@@ -1,2 +1,2 @@\n", "@@ -1 +1 @@\n", " ctx\n",
    "-old\n", "+new\n", "\\ No newline at end of file\n", "\n", "Index: f\n", "=?utf-8?q?=C3=A9?=\n",
    "Signed-off-by: A B <a@b.c>\n", "text\n", "\r\n",
])


@pytest.mark.parametrize("name", ["format_patch", "dep3"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=300), st.lists(LINE_BITS, max_size=80).map("".join)))
def test_parse_never_raises_and_units_are_well_formed(name, text):
    fmt = get_format(name)
    assert 0 <= fmt.sniff("pkg/x.patch", text) <= 100
    n_lines = text.count("\n") + 1
    for u in fmt.parse("pkg/x.patch", text):
        assert 1 <= u.line <= n_lines
        if isinstance(u, Rejected):
            assert u.reason in {r.value for r in QuarantineReason} and u.detail
            continue
        assert u.version is None and u.text.endswith("\n") and u.text[:-1] in text
        assert "@@ " in u.text
        assert u.hint and u.hint.split("\n", 1)[0].strip() and not EMAIL.search(u.hint)


def test_dep3_boilerplate_without_a_dashes_line_is_not_the_message():
    text = ("Description: Fix it\nForwarded: no\n\nThis patch header follows DEP-3: http://dep.debian.net/deps/dep3/\n"
            "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n")
    [e] = get_format("dep3").parse("pkg/f.patch", text)
    assert e.hint == "Fix it"


def test_an_address_or_author_name_in_the_subject_is_cut_out():
    text = ("From 6666666666666666666666666666666666666666 Mon Sep 17 00:00:00 2001\n"
            "From: Kim Park <kim@example.org>\nDate: Mon, 2 Jan 2023 09:00:00 +0000\n"
            "Subject: [PATCH] Thank Kim Park in AUTHORS, mail <kim@example.org>\n\n---\n"
            "diff --git a/AUTHORS b/AUTHORS\n--- a/AUTHORS\n+++ b/AUTHORS\n@@ -1 +1,2 @@\n a\n+b\n")
    [e] = get_format("format_patch").parse("pkg/x.patch", text)
    assert e.hint == "[PATCH] Thank in AUTHORS, mail"


# ----------------------------------------------------------------------------- shapes seen in the Debian snapshot

DIFF = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n-int a;\n+long a;\n int b;\n"


def hint_of(name: str, text: str, path: str = "pkg/x.diff") -> str:
    [e] = get_format(name).parse(path, text)
    assert isinstance(e, ParsedEntry), e
    return e.hint


def test_stacked_format_patch_headers_over_one_diff_are_unparseable():
    # lcms2's CVE patch: three commits' headers, then one diff for all of them
    head = "From {0} Mon Sep 17 00:00:00 2001\nFrom: Kim Park <kim@example.org>\nSubject: [PATCH] {1}\n\n"
    text = head.format("1" * 40, "Fix integer overflow") + head.format("2" * 40, "check for overflow") + DIFF
    units = list(get_format("format_patch").parse("lcms2/CVE.patch", text))
    assert [(u.reason, u.line) for u in units] == [("unparseable_patch", 1), ("unparseable_patch", 5)]
    assert "2 patch headers (lines 1, 5) stacked over one diff" in units[0].detail


def test_gcc_dp_header_over_a_generated_diff_is_a_patch_without_diff():
    text = "# DP: updates from the binutils-2.39 branch\n\n# git diff b51c2fe cce7f76\n\n"
    assert detect_format("binutils/branch-updates.diff", text).name == "dep3"
    [u] = get_format("dep3").parse("binutils/branch-updates.diff", text)
    assert (u.reason, u.detail) == ("patch_without_diff",
                                    "line 1: patch 'updates from the binutils-2.39 branch' has no diff")


def test_dp_lines_a_word_colon_is_prose_and_a_list_is_body():
    text = ("# DP: distutils: Add an option --install-layout=deb, which\n# DP: - installs into dist-packages.\n"
            "# DP: - doesn't encode the python version into the egg name.\n\n" + DIFF)
    assert hint_of("dep3", text) == ("distutils: Add an option --install-layout=deb, which\n\n"
                                     "- installs into dist-packages.\n"
                                     "- doesn't encode the python version into the egg name.")


def test_bash_upstream_patch_report_uses_the_bug_description():
    text = ("\t\t\t     BASH PATCH REPORT\n\t\t\t     =================\n\n"
            "Bash-Release:\t5.2\nPatch-ID:\tbash52-004\n\n"
            "Bug-Reported-by:\tAntoine <bug-bash@example.net>\nBug-Reference-ID:\t<8bd5@example.net>\n\n"
            "Bug-Description:\n\nBash needs to keep better track of nested brace expansions.\n\n" + DIFF)
    assert hint_of("dep3", text) == "Bash needs to keep better track of nested brace expansions."


def test_hg_export_and_pasted_git_show_headers_are_not_the_message():
    hg = ("# HG changeset patch\n# User Jane Roe <jane@example.org>\n# Date 1352129932 0\n# Node ID e9c857dc\n"
          "Allow multiple PKCS11 library initialisation to be a non-critical error.\n\n" + DIFF)
    assert hint_of("dep3", hg) == "Allow multiple PKCS11 library initialisation to be a non-critical error."
    show = ("commit e80c52986e1bb3afa6a92c58b1cb897877923a66\nAuthor: Tom Roe <tom@example.org>\n"
            "Date:   Tue Feb 1 23:13:01 2022 -0800\n\n    [docs] Remove hard-coded version numbers\n\n"
            "    Use the version from CMake.\n\n    Reviewed By: MaskRay\n\n" + DIFF)
    assert hint_of("dep3", show) == "[docs] Remove hard-coded version numbers\n\nUse the version from CMake."


def test_people_named_in_prose_by_a_cue_are_dropped():
    text = ("Description: Fix a leak in the parser\n Thanks to Jane Roe for the report.\n"
            " The buffer was never freed.\n [Sam Poe: backported to 5.10]\n"
            " On Sat, Jan 10, 2009, Brendan O'Dea wrote:\n"
            " \"Quoted advice.\" --Matthias Clasen, 2008\n Original author unknown.\n\n" + DIFF)
    assert hint_of("dep3", text) == "Fix a leak in the parser\n\nThe buffer was never freed."
    mail = ("From " + "9" * 40 + " Mon Sep 17 00:00:00 2001\nSubject: [PATCH] Fix getpeereid fallback, from Pino "
            "Toscano.\n\n---\n" + DIFF)
    assert hint_of("format_patch", mail) == "[PATCH] Fix getpeereid fallback."


def test_a_description_line_that_runs_on_gives_its_first_sentence():
    text = ("Description: Temporarily disable the stray warnings. While the related\n  patterns are wrong, they "
            "break builds.\nGoal: not the summary\n\n" + DIFF)
    assert hint_of("dep3", text) == ("Temporarily disable the stray warnings.\n\n"
                                     "While the related patterns are wrong, they break builds.")


def test_shadow_goal_field_and_a_dropped_status_field_with_its_continuation():
    text = ("Goal: Document the shadowconfig utility\n\nStatus wrt upstream: The utility is debian specific.\n"
            "                     Its man page also\n\n" + DIFF)
    assert hint_of("dep3", text) == "Document the shadowconfig utility"


# ----------------------------------------------------------------------------- what git itself writes

@pytest.fixture(scope="module")
def scratch_repo(tmp_path_factory):
    """A repository with a folded, MIME-encoded subject, a removed "- " line (shown as "-- ", just
    above format-patch's "-- " signature), a trailer naming the author and a binary-only commit."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path_factory.mktemp("repo")
    env = {"GIT_AUTHOR_NAME": "J\u00f6hn Roe", "GIT_AUTHOR_EMAIL": "john@example.org", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_COMMITTER_NAME": "J\u00f6hn Roe", "GIT_COMMITTER_EMAIL": "john@example.org", "HOME": str(repo),
           "GIT_AUTHOR_DATE": "2024-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2024-01-02T03:04:05Z",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                              text=True).stdout

    git("init", "-q", ".")
    (repo / "README").write_text("Options:\n- --a\n- \n- --b\n")
    git("add", "README")
    git("commit", "-qm", "Initial import")
    (repo / "README").write_text("Options:\n- --a\n- --b\n")
    git("commit", "-qam", "docs: drop the empty item from the README list of options, which confused the "
        "r\u00e9sum\u00e9 generator script", "-m", "The list had an empty entry.",
        "-m", "Signed-off-by: J\u00f6hn Roe <john@example.org>")
    (repo / "logo.bin").write_bytes(b"\x00\x01")
    git("add", "logo.bin")
    git("commit", "-qm", "Add the logo")
    return git


DOCS_SUBJECT = ("docs: drop the empty item from the README list of options, which confused the "
                "r\u00e9sum\u00e9 generator script")


def test_git_format_patch_output(scratch_repo):
    text = scratch_repo("format-patch", "--stdout", "HEAD~2")
    assert detect_format("repo/series.mbox", text).name == "format_patch"
    docs, logo = get_format("format_patch").parse("repo/series.mbox", text)
    assert docs.hint == f"[PATCH 1/2] {DOCS_SUBJECT}\n\nThe list had an empty entry."
    assert docs.text == scratch_repo("show", "--format=", "HEAD~1")  # byte for byte what git shows
    assert docs.text.endswith(" - --a\n-- \n - --b\n")  # the removed "- " line, not the signature
    assert logo.reason == "patch_without_diff"  # a binary file only
    separators = [i + 1 for i, line in enumerate(text.split("\n")) if line.endswith(" Mon Sep 17 00:00:00 2001")]
    assert separators == [docs.line, logo.line] and docs.line == 1


def test_git_log_p_format_email_output(scratch_repo):
    text = scratch_repo("log", "-p", "--format=email", "--reverse")
    units = list(get_format(detect_format("repo/log", text).name).parse("repo/log", text))
    assert [u.hint.split("\n")[0] if isinstance(u, ParsedEntry) else u.reason for u in units] == [
        "[PATCH] Initial import", f"[PATCH] {DOCS_SUBJECT}", "patch_without_diff"]
    assert units[1].hint == f"[PATCH] {DOCS_SUBJECT}\n\nThe list had an empty entry."
    assert units[1].text == scratch_repo("show", "--format=", "HEAD~1")
    assert not [u for u in units if isinstance(u, ParsedEntry) and ("Roe" in u.hint or "@" in u.hint)]


def test_review_and_cherry_pick_references_go_what_kind_of_change_stays():
    text = ("From " + "8" * 40 + " Mon Sep 17 00:00:00 2001\nSubject: [PATCH] Revert \"Use mmap for reads\"\n\n"
            "This reverts commit 0a1b2c3d.\nFixes: #123\n--\nDifferential Revision: https://reviews.llvm.org/D1\n"
            "Bug-Debian-Security: https://security-tracker.debian.org/tracker/CVE-2024-1\n"
            "(cherry picked from commit 4e5f6a7b8c9d)\n---\n" + DIFF)
    assert hint_of("format_patch", text) == ("[PATCH] Revert \"Use mmap for reads\"\n\n"
                                             "This reverts commit 0a1b2c3d.\nFixes: #123")
