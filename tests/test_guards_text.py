"""tuneforge.text keys dedupe, gold exclusion and leakage checks: a weaker key lets a gold entry
leak into training data, a stronger one drops distinct entries. Oracles are hashlib and hand-made sets."""
from __future__ import annotations

import hashlib

from tuneforge.text import content_key, jaccard, normalise_ws, word_shingles


def test_normalise_ws():
    assert normalise_ws("  a\t\tb\n\nc  ") == "a b c"
    assert normalise_ws("a\u00a0 b") == "a b"
    assert normalise_ws("") == ""


def test_content_key_is_sha256_of_folded_word_characters():
    assert content_key("Fix: the CRASH, in foo_bar()!") == hashlib.sha256(b"fixthecrashinfoobar").hexdigest()


def test_content_key_collides_on_confusable_copies_and_not_on_other_text():
    base = content_key("Fix crash in parser")
    assert content_key("  fix   CRASH in *parser*. ") == base
    assert content_key("Ｆｉｘ ｃｒａｓｈ ｉｎ ｐａｒｓｅｒ") == base  # full-width: NFKC folds it
    assert content_key("FIX CRASH IN PARSER") == base
    assert content_key("Fix crash in parsers") != base
    assert content_key("Straße") == content_key("STRASSE")  # casefold, not lower()


def test_word_shingles():
    assert word_shingles("A b, c d") == {"a b c", "b c d"}
    assert word_shingles("one two") == {"one two"}  # shorter than n: the whole text
    assert word_shingles("x_y z", n=2) == {"x y", "y z"}
    assert word_shingles("Ｆｉｘ it now") == {"fix it now"}
    assert word_shingles("a b c d", n=1) == {"a", "b", "c", "d"}
    assert word_shingles("") == {""}


def test_jaccard():
    assert jaccard({"a", "b"}, {"b", "c"}) == 1 / 3
    assert jaccard({"a"}, {"a"}) == 1.0
    assert jaccard(set(), {"a"}) == 0.0
    assert jaccard({"a"}, set()) == 0.0
    assert jaccard(set(), set()) == 0.0
