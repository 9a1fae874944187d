"""Commit-messages' answer check (Task.answer_check, style.copy_check): decoded token by token,
an answer names only identifiers its diff shows. The check itself on answer prefixes, then
eval's decoder steering tiny GGUFs with it."""
from __future__ import annotations

import json

import pytest

from tuneforge.tasks import get_task
from tuneforge.tasks.commit_messages.style import copy_check, not_in_diff

TASK = get_task("commit-messages")
DIFF = """--- a/lib/http.c
+++ b/lib/http.c
@@ -10,3 +10,3 @@ static int bump(void)
-  Curl_bump_headersize(data, 4);
+  Curl_bump_headersize(data, 8);
   return pip._vendor.packaging.version;
"""
HEAD = '{"type": "fix", "scope": null, "subject": "'


@pytest.mark.parametrize("prefix, ok", [
    (HEAD + "Raise the header size in Curl_bump", True),        # on its way to a shown name
    (HEAD + "Raise the header size in Curl_bump_headersize()", True),
    (HEAD + "Raise the header size in curl_", False),           # no name in the diff starts so
    (HEAD + "Raise the header size in curl_bump", False),
    (HEAD + "Bump pip._vendor.packaging.version", True),
    (HEAD + "Bump pip.vendor", False),                           # the dropped underscore
    (HEAD + "Bump ldash.", True),                                # a sentence's period, so far
    (HEAD + "Bump ldash.m", False),
    (HEAD + "Raise it to 8, e.g", True),                         # e.g is a word
    (HEAD + "Call Curl_bump_headersize(data", True),              # a call, as the diff writes it
    (HEAD + "Call Curl_bump_headersize<data", False),             # glued into one word no diff shows
    (HEAD + "Call `Curl_bump_headersize`,", True),               # quoted, then a comma
    (HEAD + "Raise the size", True),
    (HEAD + 'Raise the size", "body": "Line one\\nfoo', True),  # \\n is a line break, not `nfoo`
    (HEAD + 'Raise the size", "body": "See \\', True),          # an escape still being written
    (HEAD + 'Fix made_up", "body": null', False),                # a closed value naming an unshown name
    (HEAD + 'Fix lib/http.c", "body": "Now 8 (was 4) in Curl_bump_headersize().", ', True),
    # the scope: a name the diff's paths or text show, case aside, checked as it is written
    ('{"type": "fix", "scope": "', True),
    ('{"type": "fix", "scope": "htt', True),                      # on its way to lib/http.c
    ('{"type": "fix", "scope": "http", "subject": "', True),
    ('{"type": "fix", "scope": "curl_bump', True),                # Curl_bump_headersize, lowered
    ('{"type": "fix", "scope": "httpd', False),                   # no longer in the diff
    ('{"type": "fix", "scope": "ssl", "subject": "Raise', False),  # a closed scope the diff never shows
])
def test_prefixes(prefix, ok):
    assert copy_check(DIFF)(prefix) is ok


@pytest.mark.parametrize("prefix, ok", [
    ('{"type": "docs", "scope": "postgresql-doc', True),
    ('{"type": "docs", "scope": "postgresql-doc-', False),    # the diff goes on with `*`: a dead end
    ('{"type": "docs", "scope": "postgresql-', True),         # postgresql-15 follows
    ('{"type": "docs", "scope": "postgresql-1', True),
])
def test_a_scope_is_never_written_into_a_dash_the_diff_does_not_continue(prefix, ok):
    diff = "--- a/debian/control\n+++ b/debian/control\n-Package: postgresql-doc-*\n+Depends: postgresql-15\n"
    assert copy_check(diff)(prefix) is ok


def test_a_whole_answer_passes_exactly_when_it_names_nothing_the_diff_does_not_show():
    good = {"type": "fix", "scope": None, "subject": "Raise the header size in Curl_bump_headersize()",
            "body": "It was 4.", "breaking": False, "ignore": []}
    bad = dict(good, body="It was 4 in curl_bump_headersize.")
    for label in (good, bad):
        text = json.dumps(label)
        assert copy_check(DIFF)(text) is not not_in_diff(f"{label['subject']}\n{label['body']}", DIFF)
    assert TASK.answer_check is not None and TASK.answer_check(DIFF)(json.dumps(bad)) is False


def test_a_whole_answer_passes_the_scope_check_exactly_when_style_finds_its_scope_in_the_diff():
    from tuneforge.tasks.commit_messages.style import style_problems

    for scope in ("http", "lib", "curl_bump_headersize", "ssl", "headers"):
        label = {"type": "fix", "scope": scope, "subject": "Raise the header size", "body": None,
                 "breaking": False, "ignore": []}
        assert copy_check(DIFF)(json.dumps(label)) is ("style_scope_not_in_diff" not in style_problems(label, DIFF))


def test_the_changelog_task_has_no_check():
    assert get_task("changelog-actions").answer_check is None


# ---------------------------------------------------------------- the decoder steers

@pytest.fixture(scope="module")
def underscores(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from tests.tiny_gguf import write_tiny_gguf
    # a model that writes `_` wherever the grammar lets it, then `x`
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "underscores.gguf", favour=["_", "x"])


def _answers(path, diff, check):
    from tuneforge.decode import Settings, gguf_answers, task_gbnf
    settings = Settings(max_tokens=48, n_ctx=1024, n_threads=1)
    return gguf_answers(path, [TASK.messages(diff, None, "demo")], task_gbnf(TASK, diff), settings=settings,
                        checks=[check])


@pytest.mark.model
def test_the_decoder_turns_a_model_away_from_a_name_the_diff_does_not_show(underscores):
    diff = "--- a/README\n+++ b/README\n@@ -1 +1 @@\n-old text\n+new text\n"  # no underscore anywhere
    (free,) = _answers(underscores, diff, None)
    (checked,) = _answers(underscores, diff, TASK.answer_check(diff))
    assert "_" in json.loads(free.text)["subject"] and free.steered == 0  # what the model writes alone
    label = json.loads(checked.text)
    assert "_" not in label["subject"] + (label["body"] or "")
    assert checked.steered > 0
    TASK.parse_label(checked.text)  # still the task's JSON


@pytest.mark.model
def test_a_check_that_always_passes_changes_nothing(underscores):
    diff = "--- a/x_y\n+++ b/x_y\n@@ -1 +1 @@\n-a\n+b\n"
    (free,) = _answers(underscores, diff, None)
    (passing,) = _answers(underscores, diff, lambda text: True)
    assert passing == free


@pytest.mark.model
def test_a_check_no_allowed_token_passes_leaves_the_rest_to_the_grammar(underscores, caplog):
    """Cornered (every token the grammar allows fails the check), the decoder neither stops nor
    searches the vocabulary at every later token: the answer is finished under the grammar
    alone, and a warning says where."""
    diff = "--- a/README\n+++ b/README\n@@ -1 +1 @@\n-old text\n+new text\n"
    with caplog.at_level("WARNING", logger="tuneforge.decode"):
        (answer,) = _answers(underscores, diff, lambda text: len(text) < 30)  # nothing passes past 29
    TASK.parse_label(answer.text)
    assert answer.steered == 1 and len(answer.text) > 30
    assert "found no token the grammar allows" in caplog.text
