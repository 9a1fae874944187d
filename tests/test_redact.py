from hypothesis import given, settings
from hypothesis import strategies as st

from tuneforge.redact import KINDS, find_secrets, redact

# Built at run time so no credential-shaped literal sits in a tracked file.
SECRETS = {
    "aws_access_key_id": "AKIA" + "Q" * 16,
    "aws_secret_access_key": "aws_secret_access_key=" + "aB3/" * 10,
    "github_token": "ghp_" + "x1" * 18,
    "gitlab_token": "glpat-" + "Ab1_" * 6,
    "huggingface_token": "hf_" + "Zq" * 17,
    "openai_key": "sk-proj-" + "a1B2" * 8,
    "anthropic_key": "sk-ant-api03-" + "Xy9_" * 8,
    "slack_token": "xoxb-" + "1234567890-abcdef",
    "jwt": ".".join(["eyJhbGciOiJIUzI1NiJ9", "eyJzdWIiOiIxMjM0NTY3ODkwIn0", "c2lnbmF0dXJlMTIzNDU2"]),
    "pem_private_key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow" + "A" * 40 + "\n-----END RSA PRIVATE KEY-----",
    "url_credentials": "https://" + ":".join(["deploy", "s3cr3tpass"]) + "@git.example.com/repo.git",
    "bearer_token": "Authorization: Bearer " + "tok" * 8,
    "env_assignment": "DATABASE_PASSWORD=" + "hunter2hunter2",
}

# Where the planted text carries a non-secret frame, the part that must vanish.
SECRET_PART = {
    "aws_secret_access_key": "aB3/" * 10,
    "url_credentials": "deploy:s3cr3tpass",
    "bearer_token": "tok" * 8,
    "env_assignment": "hunter2hunter2",
    "pem_private_key": "MIIEow" + "A" * 40,
}


def test_every_kind_is_covered():
    assert set(SECRETS) == set(KINDS)


def test_each_secret_is_redacted_and_counted():
    for kind, secret in SECRETS.items():
        text = f"Fixed a bug where {secret} was logged."
        out, counts = redact(text)
        assert counts[kind] >= 1, kind
        assert "[REDACTED:" in out
        assert find_secrets(out) == [], (kind, out)
        assert SECRET_PART.get(kind, secret) not in out, (kind, out)


def test_ordinary_changelog_text_is_untouched():
    for text in [
        "Added `CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=1` to strip credentials.",
        "GIT_ASKPASS is now honoured by `git push`.",
        "The --password option reads from stdin; see https://example.com/docs.",
        "http://user@host/ URLs without a password are kept.",
        "TOKEN_LIMIT=$LIMIT is expanded at run time.",
    ]:
        out, counts = redact(text)
        assert out == text and not counts, (text, out)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(sorted(SECRETS)), st.text(max_size=50))
def test_planted_secret_never_survives(prefix, kind, suffix):
    text = f"{prefix} {SECRETS[kind]} {suffix}"
    out, _ = redact(text)
    assert SECRET_PART.get(kind, SECRETS[kind]) not in out


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_redact_is_idempotent(text):
    once, _ = redact(text)
    twice, counts = redact(once)
    assert twice == once and not counts
