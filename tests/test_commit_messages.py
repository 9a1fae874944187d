"""The commit-messages task package: diff reader, prompt view, normaliser, rule labeler,
STYLE checks, junk injection (and its planted secret), eval figures and git format."""
import json
import re
from pathlib import Path

import pytest

from tuneforge.records import LabelSource, Provenance, ScoreCategory, ScoredRecord
from tuneforge.redact import redact
from tuneforge.tasks import get_task
from tuneforge.tasks.commit_messages import junk, labeler, metrics, normalise, prompt, schema, style
from tuneforge.tasks.commit_messages import prompt as diff  # the diff reader lives in prompt.py

PACKAGE = Path(schema.__file__).parent


def git_diff(path: str, minus: list[str], plus: list[str], context: tuple[str, ...] = ("  int x;",),
             start: int = 10, func: str = "") -> str:
    body = [f" {c}" for c in context] + [f"-{m}" for m in minus] + [f"+{p}" for p in plus]
    old, new = len(context) + len(minus), len(context) + len(plus)
    return (f"diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -{start},{old} +{start},{new} @@{func}\n" + "\n".join(body) + "\n")


SRC = git_diff("lib/http_chunks.c", ["  ch->trailer = keep;"], ["  ch->trailer = NULL;"],
               func=" CHUNKcode Curl_httpchunk_read(")

# ---------------------------------------------------------------- diff reader


def test_diff_reads_git_add_delete_rename_binary():
    text = (
        "diff --git a/new.c b/new.c\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/new.c\n"
        "@@ -0,0 +1,2 @@\n+int a;\n+int b;\n"
        "diff --git a/gone.c b/gone.c\ndeleted file mode 100644\n--- a/gone.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
        "diff --git a/old name.txt b/new name.txt\nsimilarity index 100%\nrename from old name.txt\n"
        "rename to new name.txt\n"
        "diff --git a/logo.png b/logo.png\nindex 1..2 100644\nBinary files a/logo.png and b/logo.png differ\n"
        "diff --git a/icon.ico b/icon.ico\nnew file mode 100644\nGIT binary patch\nliteral 5\nMcmZ?wbhEHbU\n\n"
    )
    got = [(c.path, c.old_path, c.status, c.added, c.removed) for c in diff.parse_diff(text)]
    assert got == [("new.c", None, "added", 2, 0), ("gone.c", None, "deleted", 0, 1),
                   ("new name.txt", "old name.txt", "renamed", 0, 0), ("logo.png", None, "binary", 0, 0),
                   ("icon.ico", None, "binary", 0, 0)]


def test_diff_reads_quilt_patches_and_counts_by_hunk_header():
    """A DEP-3 patch: headers, `Index:` line, `.orig` directories, timestamps; a removed SQL
    comment reads `--- ...` inside the hunk and must not start a file; the no-newline marker
    is not a changed line; a format-patch message and diffstat before it are skipped."""
    text = (
        "Description: Fix the schema\nAuthor: A Person <a@example.org>\n---\n src/a.sql | 2 +-\n\n"
        "Index: foo-1.0/src/a.sql\n===================================================================\n"
        "--- foo-1.0.orig/src/a.sql\t2020-01-01 00:00:00.000000000 +0000\n"
        "+++ foo-1.0/src/a.sql\t2020-01-02 00:00:00.000000000 +0000\n"
        "@@ -1,3 +1,3 @@\n select 1;\n--- old comment\n+++ new comment\n\n\\ No newline at end of file\n"
        "--- foo-1.0.orig/README\n+++ foo-1.0/README\n@@ -1 +1 @@\n-a\n+b\n"
    )
    got = [(c.path, c.status, c.added, c.removed, len(c.hunks)) for c in diff.parse_diff(text)]
    assert got == [("src/a.sql", "modified", 1, 1, 1), ("README", "modified", 1, 1, 1)]
    assert diff.parse_diff(text)[0].hunks[0].lines[-1].startswith("\\ No newline")


def test_diff_splits_lines_on_newlines_only():
    """A form feed (GNU sources' page break) or a CR inside a line is content, not a line end."""
    text = git_diff("src/a.c", ["old\x0c", "x\ry"], ["new\x0c", "x\ry"], context=("\x0c",))
    text += git_diff("src/b.c", ["a"], ["b"])
    got = [(c.path, c.added, c.removed, len(c.hunks[0].lines)) for c in diff.parse_diff(text)]
    assert got == [("src/a.c", 2, 2, 5), ("src/b.c", 1, 1, 3)]


# ---------------------------------------------------------------- prompt view


def many_hunks(n: int) -> str:
    """n hunks, ten to a file."""
    out = []
    for i in range(n):
        if i % 10 == 0:
            name = f"src/f{i // 10}.c"
            out.append(f"diff --git a/{name} b/{name}\n--- a/{name}\n+++ b/{name}\n")
        out.append(f"@@ -{10 * i + 1},2 +{10 * i + 1},2 @@\n  int x;\n-  old_value_{i} = compute(a, b, c);\n"
                   f"+  new_value_{i} = compute(a, b, c, d);\n")
    return "".join(out)


def test_prompt_view_is_bounded_cut_at_hunks_and_says_what_it_left_out():
    text = many_hunks(30)
    view = prompt.render_user(text, None, "demo")
    assert prompt.estimate_tokens(view) <= prompt.PROMPT_BUDGET
    wide = prompt.render_user("".join(git_diff(f"src/f{i:03d}.c", ["a"], ["b"]) for i in range(200)), None, None)
    assert prompt.estimate_tokens(wide) <= prompt.PROMPT_BUDGET and "\n... and " in wide
    shown = view.count("\n@@ ")
    assert 0 < shown < 30 and view.endswith(f"Hunks left out: {30 - shown} of 30")
    for i in range(shown):  # every shown hunk whole, in file order
        assert f"+  new_value_{i} = compute(a, b, c, d);" in view and f"-  old_value_{i} = compute(a, b, c);" in view
    assert f"value_{shown} " not in view and view.count("--- src/f") == 1 + (shown - 1) // 10
    assert view.splitlines()[:3] == ["Product: demo", "Files (3):", "modified src/f0.c +10 -10"]
    assert "modified src/f2.c +10 -10" in view  # every path is listed, even when its hunks are not shown


def test_prompt_view_tags_each_path_with_its_rule_class():
    """The view names the class rules 2-5 and the junk list give a path; a program file has none."""
    text = "".join(git_diff(p, ["a"], ["b"]) for p in (
        "main.c", "t/a.c", "doc/a.md", ".travis.yml", "configure.ac", ".a.c.swp", "node_modules/x.js"))
    listed = prompt.render_user(text, None, None).split("\nHunks:")[0].splitlines()[1:]
    assert listed == ["modified main.c +1 -1", "modified t/a.c +1 -1 [test]", "modified doc/a.md +1 -1 [docs]",
                      "modified .travis.yml +1 -1 [ci]", "modified configure.ac +1 -1 [build]",
                      "modified .a.c.swp +1 -1 [junk]", "modified node_modules/x.js +1 -1 [junk]"]
    # the tag is the labeler's own reading: rule 5 when every non-junk path is tagged build
    assert labeler.path_rule(["configure.ac", "Makefile.am"], "") == 5
    assert {prompt.path_class(p) for p in ("configure.ac", "Makefile.am")} == {"build"}


def test_prompt_view_never_shows_the_message_and_is_deterministic():
    message = "udev: Fixed a crash.\n\nSigned-off-by: Some Body <sb@example.org>"
    view = prompt.render_user(SRC, message, "curl")
    assert view == prompt.render_user(SRC, None, "curl") == prompt.render_user(SRC, message, "curl")
    assert "crash" not in view.lower() and "example.org" not in view
    assert "Curl_httpchunk_read" in view and view.endswith("Hunks left out: 0 of 1")
    task = get_task("commit-messages")
    assert message not in json.dumps(task.messages(SRC, message, "curl"))


def test_prompt_view_cuts_long_lines_and_shows_part_of_a_hunk_too_big_to_fit():
    big = git_diff("src/big.c", [], [f"  call_{i}(alpha, beta, gamma, delta);" for i in range(200)]
                   + ["x" * 500])
    view = prompt.render_user(big, None, None)
    assert "[hunk cut]" in view and view.endswith("Hunks left out: 1 of 1")
    assert prompt.estimate_tokens(view) <= prompt.PROMPT_BUDGET
    long_line = git_diff("src/a.c", [], ["y" * 500])
    assert "\n+" + "y" * (prompt.LINE_CHARS - 1) + " [line cut]\n" in prompt.render_user(long_line, None, None)


# ---------------------------------------------------------------- normaliser

UDEV = git_diff("src/udev/udev-event.c", ["  free(x);"], ["  x = NULL;"])


@pytest.mark.parametrize("message,diff_text,scope,subject", [
    ("[PATCH 2/3] udev: Fixed a crash.", UDEV, "udev", "Fix a crash"),
    ("frobnicator: Fixes a crash", UDEV, None, "Fix a crash"),  # a component the diff does not show
    ("fix(udev): adds support for the new rules", UDEV, "udev", "Add support for the new rules"),
    ("[PATCH] src/udev/udev-event.c: removed a leak", UDEV, "udev-event", "Remove a leak"),
    ("Updating the event code (thanks to A Person <ap@example.org>)", UDEV, None, "Update the event code"),
    ("  skip   the\n  flaky test...", UDEV, None, "Skip the flaky test"),
    ("net: udev: Fixed a crash", UDEV, "udev", "Fix a crash"),  # nested components: the last one shown
    ("[clang] [udev] re-enables the event", UDEV, "udev", "Re-enable the event"),  # LLVM-style tags
    ("* always use bash", UDEV, None, "Always use bash"),  # a bullet goes; an adverb keeps the verb first
    ("Math::Trig: fixed bug in undefer_input() (thanks to A B <a@b.org>)", UDEV, None,
     "Fix bug in undefer_input()"),  # a call keeps its "()"
], ids=lambda v: v[:30] if isinstance(v, str) and not v.startswith("diff") else "")
def test_normalise_subject_and_scope(message, diff_text, scope, subject):
    got = normalise.normalise(message, diff_text)
    assert (got.scope, got.subject, got.reasons) == (scope, subject, [])


def test_normalise_body_drops_trailers_people_and_addresses_and_cuts_at_a_sentence():
    first = "The trailer buffer was kept between chunks. " * 5  # 35 words
    message = (f"Fix the leak\n\n{first}\nReported by Jane Roe.\n-- Jane Roe\nIt leaked on every call, see Jane Roe "
               "<jr@example.org>. A third sentence pushes it well past sixty words, which is the limit "
               "the contract sets for a body of a commit message here.\n\nBug-Debian: https://bugs.debian.org/1\n"
               "Signed-off-by: Joe <joe@example.org>\nForwarded: not-needed\n")
    got = normalise.normalise(message, SRC)
    assert got.body == first + "It leaked on every call."  # "see Jane Roe <...>" goes
    assert len(got.body.split()) <= 60 and "@" not in got.body and "Jane" not in got.body
    assert normalise.normalise("Fix it\n\nSigned-off-by: J <j@x.org>", SRC).body is None
    linked = normalise.normalise("Fix it\n\nSee https://bugs.debian.org/1 and <https://x.org/a>. Ship the .pc file.",
                                 SRC)
    assert linked.body == "See and. Ship the .pc file."  # links go (never in a diff); ".pc" stays
    wordy = "Fix it\n\n" + "Internationalisation considerations notwithstanding. " * 12  # 24 words, 600 chars
    body = normalise.normalise(wordy, SRC).body
    assert len(body) <= schema.BODY_MAX and body.endswith("notwithstanding.") and len(body) > 300


@pytest.mark.parametrize("message,reasons", [
    ("", ["message_empty"]), ("[PATCH 1/2]", ["message_empty"]),
    ("Crash on startup", ["subject_not_imperative"]),
    ("Fix " + "the very long subject " * 4, ["subject_too_long"]),
])
def test_normalise_says_why_a_message_cannot_meet_the_rules(message, reasons):
    assert normalise.normalise(message, SRC).reasons == reasons


# ---------------------------------------------------------------- rule labeler

TESTS = git_diff("tests/test_parse.py", ["    assert x == 1"], ["    assert x == 2"])
DOCS = git_diff("doc/frob.1", [".B old"], [".B new"]) + git_diff("README.md", ["old"], ["new"])
COMMENT = git_diff("src/a.c", ["/* teh value */"], ["/* the value */"])
CI = git_diff(".github/workflows/ci.yml", ["  runs-on: ubuntu-20.04"], ["  runs-on: ubuntu-24.04"])
BUILD = git_diff("configure.ac", ["AC_INIT(x)"], ["AC_INIT(y)"]) + git_diff("Makefile.am", ["a"], ["b"])
WHITESPACE = git_diff("src/a.c", ["if (x)  {", "\treturn 1;"], ["if (x) {", "    return 1;"])
GITIGNORE = git_diff(".gitignore", [], ["build/"])
DS_STORE = "diff --git a/.DS_Store b/.DS_Store\nnew file mode 100644\nBinary files /dev/null and b/.DS_Store differ\n"

RULE_CASES = [
    # (diff, message, type, rule)
    (SRC, 'Revert "Add the chunk cache"\n\nThis reverts commit abc.', "revert", 1),
    (TESTS, 'Revert "Fix the flaky test"', "revert", 1),  # 1 before the path rules
    (TESTS, "Fix the flaky parser test", "test", 2),  # path rule before fix
    (TESTS + BUILD, "Skip the network tests on armhf", "test", 2),  # tests + build, message about tests
    (TESTS + DS_STORE, "Adjust the expected value", "test", 2),  # junk does not count
    (DOCS, "Fix a typo in the manual page", "docs", 3),
    (COMMENT, "Correct a misspelt word", "docs", 3),  # only a comment changes
    (CI, "Build on a newer runner", "ci", 4),
    (BUILD, "Fix the build with autoconf 2.72", "build", 5),
    (BUILD + git_diff("doc/frob.1", ["a"], ["b"]), "Tidy things", "build", 5),  # a mix: most paths
    (SRC, "Reset the trailer\n\nIt leaked memory on every chunk.", "fix", 6),  # the body, as the subject is silent
    (SRC, "Add a check that fixes a crash", "fix", 6),  # fix > feat
    (SRC, "Add support for chunked trailers", "feat", 7),
    (SRC, "Speed up chunk parsing", "perf", 8),
    (SRC, "Simplify the chunk state machine", "refactor", 9),
    (SRC, "Reformat the chunk reader", "style", 10),
    (WHITESPACE, "Tidy the reader", "style", 10),  # whitespace-only diff
    (SRC, "Bump the version to 1.2", "chore", 11),
    # a trailer is no cue; program code changed with no cue at all: a fix (rule 6, the sources' prior)
    (SRC, "Use a shorter name\n\nBug-Debian: https://bugs.debian.org/1", "fix", 6),
    (GITIGNORE, "Ignore the build directory", "chore", 11),  # a maintenance file, no cue
]


@pytest.mark.parametrize("text,message,type_,rule", RULE_CASES, ids=[f"{c[3]}-{c[1][:24]}" for c in RULE_CASES])
def test_locked_type_rules(text, message, type_, rule):
    label, got = labeler.rule_label(text, message, "demo", None)
    assert (label["type"], got) == (type_, rule)
    schema.CommitMessage.model_validate(label)


def test_mixed_path_rules_go_to_the_rule_most_paths_match():
    assert labeler.path_rule(["configure.ac", "Makefile.am", "doc/x.1"], "") == 5
    assert labeler.path_rule(["doc/x.1", "doc/y.1", "Makefile.am"], "") == 3
    assert labeler.path_rule(["tests/a.py", "doc/y.1"], "") == 2  # a tie goes to the lower rule
    assert labeler.path_rule(["tests/a.py", "src/a.c"], "") is None


@pytest.mark.parametrize("message,breaking", [
    ("Remove the --foo option", True), ("Drop the deprecated frob() function", True),
    ("Rename the `colour` setting to `color`", True), ("Enable strict mode by default", True),
    ("BREAKING CHANGE: the file format changes", True), ("Fix a crash", False),
    ("Remove a memory leak", False), ("Rename internal variables", False),
    ("Put the sockets into /run by default", True), ("Use sockets\n\nThe path defaults to /tmp.", False),
    ("Tidy the reader\n\n(hkp_housekeeping): Remove function, no longer needed.", False),
])
def test_breaking_only_on_explicit_cues(message, breaking):
    assert labeler.rule_label(SRC, message, "demo", None)[0]["breaking"] is breaking


def test_a_docs_or_test_change_breaks_nothing():
    assert labeler.rule_label(DOCS, "Document why modelines are disabled by default", "demo", None)[0] == {
        "type": "docs", "scope": None, "subject": "Document why modelines are disabled by default", "body": None,
        "breaking": False, "ignore": []}
    assert not labeler.rule_label(TESTS, "Remove the --slow option from the test runner", "demo", None)[0]["breaking"]


def test_label_fields_from_the_message_and_the_diff():
    text, _ = junk.inject(SRC, "k1")
    label, rule = labeler.rule_label(
        text, "[PATCH] http_chunks: Fixed a memory leak.\n\nCurl_httpchunk_read kept the trailer.\n\n"
        "Signed-off-by: A <a@b.org>", "curl", "8.0")
    assert label == {"type": "fix", "scope": "http_chunks", "subject": "Fix a memory leak",
                     "body": "Curl_httpchunk_read kept the trailer.", "breaking": False,
                     "ignore": [p for p in (c.path for c in diff.parse_diff(text)) if diff.is_junk(p)]}
    assert label["ignore"] and rule == 6
    fallback, _ = labeler.rule_label(SRC, None, "curl", None)
    assert fallback["subject"] == "Update http_chunks.c" and fallback["body"] is None
    schema.CommitMessage.model_validate(fallback)


# ---------------------------------------------------------------- STYLE


def good_label(**kw) -> dict:
    return {"type": "fix", "scope": "http_chunks", "subject": "Reset the trailer to avoid a leak",
            "body": "Curl_httpchunk_read kept the trailer.", "breaking": False, "ignore": [], **kw}


@pytest.mark.parametrize("change,code", [
    ({"subject": "Reset the trailer" + " x" * 30}, "style_subject_too_long"),
    ({"subject": "Reset the trailer."}, "style_subject_trailing_period"),
    ({"subject": "Trailer reset"}, "style_subject_not_imperative"),
    ({"subject": "fix: Reset the trailer"}, "style_subject_has_type_prefix"),
    ({"scope": "parser"}, "style_scope_not_in_diff"),
    ({"body": "It leaked. " * 31}, "style_body_too_long"),
    ({"body": "Curl_httpchunk_free kept it."}, "style_identifier_not_in_diff"),
    ({"subject": "Reset the trailer (#1234)"}, "style_identifier_not_in_diff"),
    ({"body": "Fixed in lib/other.c for v2.1.3."}, "style_identifier_not_in_diff"),
    ({"ignore": ["lib/x.c"]}, "style_ignore_not_in_diff"),
])
def test_style_codes(change, code):
    assert style.style_problems(good_label(), SRC) == []
    assert style.style_problems(good_label(**change), SRC) == [code]


def test_style_junk_not_ignored_and_message_not_normalised():
    text = SRC + DS_STORE
    assert style.style_problems(good_label(ignore=[".DS_Store"]), text) == []
    assert style.style_problems(good_label(), text) == ["style_junk_not_ignored"]
    long = "Reset the trailer " + "so that nothing leaks " * 4
    cut = labeler.rule_label(SRC, long, "demo", None)[0]
    assert len(cut["subject"]) <= 72 and style.style_problems(cut, SRC, long) == ["style_message_not_normalised"]
    assert style.style_problems(cut, SRC) == []  # without the message: nothing in the label shows it
    empty = labeler.rule_label(SRC, "[PATCH]", "demo", None)[0]
    assert style.style_problems(empty, SRC, "[PATCH]") == ["style_message_not_normalised"]
    assert style.style_problems(good_label(), SRC, "[PATCH]") == []  # an answer is not judged by the message


def test_style_codes_match_what_the_checks_give_and_style_md():
    import inspect

    given = re.findall(r'problems\.append\("(style_\w+)"\)', inspect.getsource(style.style_problems))
    documented = re.findall(r"`(style_\w+)`", (PACKAGE / "STYLE.md").read_text())
    assert sorted(set(given)) == sorted(style.STYLE_CODES)
    assert list(dict.fromkeys(documented)) == list(style.STYLE_CODES)


def test_identifiers():
    text = ("Fix Curl_httpchunk_read() in lib/http_chunks.c for v1.2.3 (#12, CVE-2021-1234), "
            "--no-foo, myFunc, os.path.join, FooBar, e.g. plain words.")
    assert style.identifiers(text) == ["Curl_httpchunk_read()", "lib/http_chunks.c", "v1.2.3", "#12",
                                       "CVE-2021-1234", "--no-foo", "myFunc", "os.path.join", "FooBar"]
    assert style.not_in_diff("Reset Curl_httpchunk_read() and ch->trailer in 1.2", SRC) == ["1.2"]
    assert style.identifiers("Port to GNU/Hurd with OpenSSL and/or NetBSD via ./configure") == ["./configure"]


# ---------------------------------------------------------------- junk


@pytest.mark.parametrize("path,is_junk", [
    (".DS_Store", True), ("src/.main.c.swp", True), ("src/main.c~", True), ("a/__pycache__/m.cpython-311.pyc", True),
    ("node_modules/x/index.js", True), ("build/main.o", True), ("dist/pkg.tar", True), (".env", True),
    (".env.local", True), ("keys/id_rsa", True), ("certs/server.pem", True),
    (".env.example", False), ("tools/build/gen.py", False), ("src/main.c", False), ("build.sh", False),
    ("src/environment.c", False), ("id_rsa.pub", False),
])
def test_is_junk(path, is_junk):
    assert diff.is_junk(path) is is_junk


def test_planted_secret_is_one_redact_catches_anywhere():
    secret = junk.PLANTED_SECRET
    assert "tuneforgeplantedfake" in secret
    for text in (secret, "API_KEY=" + secret, f"x {secret} y", f"token: '{secret}'"):
        redacted, counts = redact(text)
        assert secret not in redacted and sum(counts.values()) == 1, text


def test_inject_is_deterministic_and_its_ground_truth_right():
    kinds = set()
    for key in (f"k{i}" for i in range(40)):
        new, paths = junk.inject(SRC + TESTS, key)
        assert (new, paths) == junk.inject(SRC + TESTS, key)
        changes = diff.parse_diff(new)
        assert 1 <= len(paths) <= 3 and [c.path for c in changes if diff.is_junk(c.path)] == paths
        assert [(c.path, c.added, c.removed) for c in changes if not diff.is_junk(c.path)] == [
            ("lib/http_chunks.c", 1, 1), ("tests/test_parse.py", 1, 1)]
        assert [c.path for c in changes] == sorted(c.path for c in changes)  # as git orders them
        assert junk.PLANTED_SECRET not in new
        kinds |= {p.rsplit("/", 1)[-1].split(".")[-1] for p in paths}
    assert {"env", "DS_Store", "swp", "pyc", "o", "js"} <= kinds  # every kind is drawn


def scored_record(i: int, text: str = SRC) -> ScoredRecord:
    label = labeler.rule_label(text, "Fix a leak", "demo", None)[0]
    return ScoredRecord(id=f"r{i}", task="commit-messages", text=text, hint="Fix a leak", product="demo",
                        version=None, format="format_patch",
                        provenance=Provenance(source_file="f", line=1, sig_hash="s"),
                        category=ScoreCategory.accepted, reasons=[], label=label,
                        label_source=LabelSource.rules, rule=6, alternatives=[], scorer_version="t")


def test_augment_changes_a_seeded_share_and_never_carries_the_secret():
    import hashlib

    records = [scored_record(i) for i in range(60)]
    out = junk.augment(records, 0.5, 7)
    assert out == junk.augment(records, 0.5, 7) and len(out) == len(records)
    changed = [(a, b) for a, b in zip(records, out, strict=True) if a.id != b.id]
    assert 15 < len(changed) < 45 and junk.augment(records, 0.0, 7) == records
    assert all(a.id == b.id for a, b in zip(records, junk.augment(records, 0.0, 7), strict=True))
    assert len([1 for a, b in zip(records, junk.augment(records, 1.0, 7), strict=True) if a.id != b.id]) == 60
    assert {b.id for _, b in changed} != {b.id for a, b in zip(records, junk.augment(records, 0.5, 8),
                                                               strict=True) if a.id != b.id}
    for before, after in changed:
        assert after.id == hashlib.sha256(f"junk:{before.id}".encode()).hexdigest()
        assert after.label["ignore"] == [c.path for c in diff.parse_diff(after.text) if diff.is_junk(c.path)]
        assert style.style_problems(after.label, after.text) == style.style_problems(before.label, before.text)
        schema.CommitMessage.model_validate(after.label)
    dumped = "\n".join(r.model_dump_json() for r in junk.augment(records, 1.0, 7))
    assert ".env" in dumped and "[REDACTED:github_token]" in dumped and junk.PLANTED_SECRET not in dumped


def test_augment_leaves_a_row_whose_view_would_hide_its_junk():
    """40 paths under aa/: the view lists about 20, so junk sorted after them (node_modules/,
    build/) would be in the label but not in the prompt; such rows stay as they were."""
    wide = "".join(git_diff(f"aa/f{i:02d}.c", ["a"], ["b"]) for i in range(40))
    records = [scored_record(i, wide) for i in range(40)]
    out = junk.augment(records, 1.0, 3)
    kept = [b for a, b in zip(records, out, strict=True) if a.id == b.id]
    changed = [b for a, b in zip(records, out, strict=True) if a.id != b.id]
    assert kept and changed
    for rec in changed:
        listed = prompt.render_user(rec.text, None, rec.product).split("\nHunks:")[0].splitlines()
        assert all(any(ln.split(" ")[1] == p for ln in listed[1:]) for p in rec.label["ignore"])
    for rec in kept:
        _, paths = junk.inject(rec.text, f"3:{rec.id}")
        assert any(p.startswith(("node_modules/", "build/")) for p in paths)


# ---------------------------------------------------------------- eval figures


def test_eval_figures_on_a_hand_made_set():
    gold = good_label()
    rows = [{"text": SRC, "label": gold},
            {"text": SRC + DS_STORE, "label": good_label(scope=None, ignore=[".DS_Store"])},
            {"text": SRC, "label": good_label()},
            {"text": SRC + DS_STORE, "label": good_label(ignore=[".DS_Store"])}]
    outputs = [
        schema.render_label(gold),  # perfect
        schema.render_label(good_label(scope="parser", subject="Resets the trailer to avoid a leak.",
                                       ignore=[".DS_Store", "lib/http_chunks.c"])),  # schema-valid, flawed
        '{"type": "fix"',  # does not parse
        schema.render_label(good_label(body="Curl_httpchunk_free leaked.", ignore=["lib/http_chunks.c"])),
        # ^ junk left out (a real path ignored instead), an invented identifier
    ]
    got = metrics.eval_figures(rows, outputs)
    from sacrebleu.metrics import CHRF
    hyps = [gold["subject"], "Resets the trailer to avoid a leak.", "", gold["subject"]]
    chrf = CHRF().corpus_score(hyps, [[gold["subject"]] * 4]).score
    assert got == {
        "rows": 4, "scope_rows": 3, "scope_agreement": round(2 / 3, 6),
        "scope_not_in_diff_share": 0.5,  # "parser" and the unparsable answer
        "subject_chrf": round(chrf, 6),
        "subject_exact": 0.75,  # "Resets ... leak." normalises to the gold subject; unparsable misses
        "invented_identifier_share": 0.5,
        "junk_rows": 2, "ignore_precision": round(1 / 3, 6), "ignore_recall": 0.5, "junk_left_out_share": 0.5,
        "style_clean_share": 0.25,
    }
    with pytest.raises(ValueError, match="4 gold rows but 3 answers"):
        metrics.eval_figures(rows, outputs[:3])


def test_eval_by_hand_reports_the_tasks_own_figures(tmp_path, monkeypatch, capsys):
    """python -m tuneforge.evaluate scores as the stage does, the task's own figures included
    (chrF, scope, ignore, ...): the same metrics.eval_figures over the same rows and answers.
    Decoding is stubbed with each row's gold label, so every figure is the perfect one."""
    from tuneforge import decode, evaluate
    from tuneforge.io import write_jsonl

    rows = [{"text": SRC, "hint": None, "product": "curl", "label": good_label()},
            {"text": SRC + DS_STORE, "hint": None, "product": "curl",
             "label": good_label(ignore=[".DS_Store"])}]
    write_jsonl(tmp_path / "gold.jsonl", rows)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")  # never loaded: decode is stubbed
    monkeypatch.setattr(evaluate, "decode", lambda model, task, rs, settings, with_hint: [
        decode.Answer(schema.render_label(r["label"])) for r in rs])
    root = Path(__file__).resolve().parents[1]
    assert evaluate.main(["--task", "commit-messages", "--gold", str(tmp_path / "gold.jsonl"), "--model",
                          str(tmp_path / "model.gguf"), "--allow-unpinned",
                          "--params", str(root / "params.yaml")]) == 0
    got = json.loads(capsys.readouterr().out)["model"]
    assert got["type_agreement"] == 1.0 and got["n"] == 2
    assert {k: got[k] for k in ("rows", "scope_agreement", "subject_exact", "junk_rows", "ignore_recall",
                                "junk_left_out_share")} == {
        "rows": 2, "scope_agreement": 1.0, "subject_exact": 1.0, "junk_rows": 1, "ignore_recall": 1.0,
        "junk_left_out_share": 0.0}


# ---------------------------------------------------------------- schema, format, registration


def test_schema_is_strict_and_rendering_canonical():
    label = good_label()
    text = schema.render_label(dict(reversed(list(label.items()))))
    assert list(json.loads(text)) == ["type", "scope", "subject", "body", "breaking", "ignore"]
    assert schema.parse_label(text).model_dump(mode="json") == label
    for bad in ({"extra": 1}, {"scope": "HTTP"}, {"subject": "x" * 73}, {"subject": ""}, {"type": "feature"},
                {"body": "x" * 401}, {"ignore": ["p"] * 17}):
        with pytest.raises(ValueError):
            schema.parse_label(json.dumps({**label, **bad}))
    with pytest.raises(ValueError):
        schema.parse_label(text + " trailing")


def test_grammar_compiles_and_bounds_every_string():
    from tuneforge.grammar import compile_gbnf, json_gbnf

    gbnf = json_gbnf(schema.CommitMessage.model_json_schema())  # raises on an unbounded string
    assert compile_gbnf(gbnf) is not None


def test_the_decoding_schema_makes_ignore_the_diffs_junk_paths():
    """Task.narrow_schema: each diff's answer is decoded under a schema whose `ignore` is
    exactly that diff's junk paths by the contract's list (in diff order, once each, up to the
    cap): the model can neither leave junk in nor unstage a real file."""
    import jsonschema

    task = get_task("commit-messages")
    swap, env, mods = "src/.app.c.swp", ".env", "node_modules/x/index.js"
    text = SRC + git_diff(swap, [], ["x"]) + git_diff("src/app.c", ["a"], ["b"]) + git_diff(env, [], ["K=1"]) + SRC
    narrowed = task.output_schema(text)
    assert narrowed["properties"]["ignore"]["const"] == [swap, env]  # a path changed twice is listed once
    assert task.output_schema()["properties"]["ignore"] == schema.CommitMessage.model_json_schema()[
        "properties"]["ignore"]  # no input: the whole schema
    jsonschema.validate(good_label(ignore=[swap, env]), narrowed)
    for wrong in ([], [swap], [env, swap], [swap, env, "src/app.c"], [swap, "src/.app.c.sw"]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(good_label(ignore=wrong), narrowed)
    # a diff without junk: `ignore` must be empty; no diff at all: the same
    assert task.output_schema(SRC)["properties"]["ignore"]["const"] == []
    assert task.output_schema("no diff here")["properties"]["ignore"]["const"] == []
    # at most IGNORE_MAX_ITEMS junk paths, the first in diff order
    many = "".join(git_diff(f"m{i}.pyc", [], ["x"]) for i in range(schema.IGNORE_MAX_ITEMS + 2))
    assert task.output_schema(many)["properties"]["ignore"]["const"] == [
        f"m{i}.pyc" for i in range(schema.IGNORE_MAX_ITEMS)]
    # a junk path JSON must escape keeps the whole schema (see for_diff); any other path, nothing
    odd = git_diff('docs/say "hi".txt', [], ["x"])
    assert task.output_schema(odd + git_diff(mods, [], ["x"]))["properties"]["ignore"]["const"] == [mods]
    odd_junk = git_diff('node_modules/say "hi".js', [], ["x"])
    assert task.output_schema(SRC + odd_junk + git_diff(mods, [], ["x"])) == task.output_schema()


def test_the_narrowed_grammar_compiles_and_forces_the_junk_paths():
    from tuneforge.decode import task_gbnf
    from tuneforge.grammar import compile_gbnf

    text = SRC + git_diff("node_modules/x/index.js", [], ["x"])
    gbnf = task_gbnf(get_task("commit-messages"), text)
    (rule,) = [line for line in gbnf.splitlines() if line.startswith("ignore ::=")]
    assert rule == 'ignore ::= "[\\"node_modules/x/index.js\\"]"'
    assert compile_gbnf(gbnf) is not None


def test_junk_note_names_the_paths_to_unstage():
    task = get_task("commit-messages")
    assert task.advice(good_label(ignore=[])) is None
    assert task.advice(good_label(ignore=[".env", "a.pyc"])) == (
        "staged junk to leave out of this commit: .env, a.pyc (unstage with: git restore --staged -- PATH)")


@pytest.mark.parametrize("label,text", [
    (good_label(), "fix(http_chunks): Reset the trailer to avoid a leak\n\nCurl_httpchunk_read kept the trailer.\n"),
    (good_label(scope=None, body=None, breaking=True, type="feat"), "feat!: Reset the trailer to avoid a leak\n"),
])
def test_format_git(label, text):
    assert get_task("commit-messages").formats["git"](label) == text


def test_registration_and_the_model_side_loads_no_labeler():
    import os
    import subprocess
    import sys

    task = get_task("commit-messages")
    assert task.classes == tuple(t.value for t in schema.CommitType) and task.class_field == "type"
    assert task.label_class(task.with_class(good_label(), "docs")) == "docs"
    code = ("import json, sys\nfrom tuneforge.tasks import get_task\nt = get_task('commit-messages')\n"
            f"t.messages({SRC!r}, 'Fix it', 'curl'); t.parse_label(t.render_label({good_label()!r}))\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tuneforge'))))\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    loaded = set(json.loads(proc.stdout))
    lazy = {f"tuneforge.tasks.commit_messages.{m}" for m in ("labeler", "style", "junk", "normalise", "metrics")}
    assert "tuneforge.tasks.commit_messages.prompt" in loaded and not lazy & loaded, sorted(lazy & loaded)


def test_label_view_counts_labels_naming_what_the_prompt_view_does_not_show():
    """tools.label_view: a label is counted when its subject or body names an identifier the
    row's user turn (the view the model read) lacks, even if the whole diff has it."""
    from tools.label_view import outside_view

    view = prompt.render_user(SRC, None, "curl")

    def row(**kw):
        return {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": view},
                             {"role": "assistant", "content": schema.render_label(good_label(**kw))}]}

    got = outside_view([row(), row(body="Curl_httpchunk_free kept it."),
                        row(subject="Reset ch->trailer in Curl_httpchunk_read")])
    assert {k: got[k] for k in ("rows", "subject", "body", "either")} == {
        "rows": 3, "subject": 0, "body": 1, "either": 1}
    assert got["examples"] == [{"line": 2, "subject": good_label()["subject"],
                                "not_in_view": ["Curl_httpchunk_free"]}]
    with pytest.raises(ValueError, match="row 1: no parsable label"):
        outside_view([{"messages": [{"role": "user", "content": view}, {"role": "assistant", "content": "{"}]}])


def test_label_view_pairs_each_invented_identifier_with_the_views_nearest_name():
    """tools.label_view --answers: an answer's name its diff lacks is listed beside the most
    similar name the view shows; a miscased copy of one is a near copy, a made-up name is not,
    a name the diff has is not invented (planted: nearest searched in the answer, not the view
    -> fails)."""
    from tools.label_view import invented_in_answers

    def row(**kw):
        return {"answer": schema.render_label(good_label(**kw)), "text": SRC, "hint": None, "product": "curl"}

    got = invented_in_answers([row(), row(subject="Fix curl_httpchunk_read"),
                               row(subject="Fix frobnicate_widgets")])
    assert {k: got[k] for k in ("answers", "answers_with_invented", "invented", "near_copies")} == {
        "answers": 3, "answers_with_invented": 2, "invented": 2, "near_copies": 1}
    copy, made_up = got["identifiers"]
    assert copy["line"] == 2 and copy["invented"] == "curl_httpchunk_read"
    assert copy["nearest_in_view"] == "Curl_httpchunk_read" and copy["ratio"] >= 0.9
    assert made_up["invented"] == "frobnicate_widgets" and made_up["ratio"] < 0.7
    with pytest.raises(ValueError, match="row 1: no parsable answer"):
        invented_in_answers([{"answer": "{", "text": SRC}])
