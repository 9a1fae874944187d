"""Redaction runs on every entry before anything is written; the receipts count what it removed
and the leak scan (find_secrets) is the last check before export. Exact outputs, built at run
time so no credential-shaped literal sits in a tracked file."""
from __future__ import annotations

from tuneforge.redact import KINDS, PATTERNS, find_secrets, redact

AKIA = "AKIA" + "Q" * 16
AKIA2 = "AKIA" + "Z" * 16
AWS_SECRET = "aB3/" * 10
PASS = "hunter2" + "hunter2"


def test_whole_match_kinds_are_replaced_and_counted_exactly():
    out, counts = redact(f"keys {AKIA} and {AKIA2}, again {AKIA}.")
    assert out == ("keys [REDACTED:aws_access_key_id] and [REDACTED:aws_access_key_id], "
                   "again [REDACTED:aws_access_key_id].")
    assert counts == {"aws_access_key_id": 3}


def test_group_kinds_keep_the_frame_around_the_secret():
    text = f"set aws_secret_access_key = '{AWS_SECRET}' then DB_PASSWORD={PASS} end"
    out, counts = redact(text)
    assert out == ("set aws_secret_access_key = '[REDACTED:aws_secret_access_key]' then "
                   "DB_PASSWORD=[REDACTED:env_assignment] end")
    assert counts == {"aws_secret_access_key": 1, "env_assignment": 1}
    url = "clone https://" + "deploy:" + "s3cr3tpass" + "@git.example.com/r.git now"
    assert redact(url) == ("clone https://[REDACTED:url_credentials]@git.example.com/r.git now",
                           {"url_credentials": 1})
    bearer = "Authorization: Bearer " + "tok" * 8 + " sent"
    assert redact(bearer)[0] == "Authorization: Bearer [REDACTED:bearer_token] sent"


def test_specific_patterns_win_over_generic_ones():
    token = "ghp_" + "x1" * 18
    out, counts = redact(f"GITHUB_TOKEN={token}")
    assert out == "GITHUB_TOKEN=[REDACTED:github_token]"
    assert counts == {"github_token": 1}  # env_assignment does not count it a second time


def test_clean_text_is_unchanged_with_empty_counts():
    text = "Fixed a crash when TOKEN is unset; see https://example.com/x."
    assert redact(text) == (text, {})


def test_find_secrets_names_each_kind_once_in_pattern_order():
    # assembled from parts: the tracked-file credential scan (test_remote) reads this line
    text = f"{AKIA} {AKIA2} DB_PASSWORD={PASS} and " + "AWS_SECRET" + f"={AWS_SECRET}"
    assert find_secrets(text) == ["aws_access_key_id", "aws_secret_access_key", "env_assignment"]
    assert find_secrets("nothing here") == []


def test_find_secrets_ignores_redacted_groups_but_sees_later_real_ones():
    # The first env_assignment match holds a redaction marker; the second is a real secret.
    text = f"A_TOKEN=[REDACTED:env_assignment] B_TOKEN={PASS}"
    assert find_secrets(text) == ["env_assignment"]
    assert find_secrets(redact(text)[0]) == []
    assert find_secrets("A_TOKEN=[REDACTED:env_assignment]") == []


def test_kinds_follow_patterns():
    assert KINDS == [p.kind for p in PATTERNS] and len(set(KINDS)) == len(KINDS)
