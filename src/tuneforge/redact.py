"""Secret redaction: runs on every entry before anything is written.

Each pattern replaces the secret with `[REDACTED:<kind>]` and is counted, so a
receipt can say how many of which kind were removed. Patterns are ordered so the
specific ones (PEM blocks, provider prefixes) win over the generic ones.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class SecretPattern:
    kind: str
    regex: re.Pattern
    group: int = 0  # the group that holds the secret; 0 = the whole match


# Token edges: not \b, which fails next to "_" and so missed `__token__` (markdown bold).
_START, _END = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
_SECRET_NAME = (r"[A-Za-z0-9_]*"
                r"(?:SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?)"
                r"[A-Za-z0-9_]*")

PATTERNS: list[SecretPattern] = [
    SecretPattern("pem_private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|$)",
        re.S)),
    SecretPattern("anthropic_key", re.compile(_START + r"sk-ant-[A-Za-z0-9_-]{20,}")),
    SecretPattern("openai_key", re.compile(_START + r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    SecretPattern("aws_access_key_id", re.compile(_START + r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}" + _END)),
    SecretPattern("aws_secret_access_key", re.compile(
        r"(?i:aws_?secret_?access_?key|aws_?secret)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"), 1),
    SecretPattern("github_token", re.compile(_START + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    SecretPattern("gitlab_token", re.compile(_START + r"glpat-[A-Za-z0-9_-]{20,}")),
    SecretPattern("huggingface_token", re.compile(_START + r"hf_[A-Za-z0-9]{30,}")),
    SecretPattern("slack_token", re.compile(_START + r"xox[abposr]-[A-Za-z0-9-]{10,}")),
    SecretPattern("jwt", re.compile(_START + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    SecretPattern("bearer_token", re.compile(_START + r"(?i:bearer)\s+([A-Za-z0-9._~+/-]{16,}=*)"), 1),
    SecretPattern("url_credentials", re.compile(
        _START + r"[a-zA-Z][a-zA-Z0-9+.-]*://([^/\s:@`'\"<>]+:[^/\s@`'\"<>]+)@"), 1),
    SecretPattern("env_assignment", re.compile(
        rf"\b{_SECRET_NAME}\s*[:=]\s*[\"']?((?!\$|<|\[REDACTED)[^\s\"'`]{{8,}})"), 1),
]

KINDS = [p.kind for p in PATTERNS]


def redact(text: str) -> tuple[str, Counter]:
    """Return the text with every secret replaced, and counts per kind."""
    counts: Counter = Counter()
    for pattern in PATTERNS:
        def _sub(m: re.Match, kind: str = pattern.kind, group: int = pattern.group) -> str:
            counts[kind] += 1
            if group == 0:
                return f"[REDACTED:{kind}]"
            start, end = m.span(group)
            s0 = m.start()
            return m.group(0)[: start - s0] + f"[REDACTED:{kind}]" + m.group(0)[end - s0:]
        text = pattern.regex.sub(_sub, text)
    return text, counts


# Author identities in verbatim sources (diffs): `Name <address>` and bare addresses. Not in
# PATTERNS: release-note entries keep theirs as they always have (their outputs are pinned), and
# a patch parser drops its header and trailer lines before this sees the message.
_PERSON = re.compile(r"(?:[^\W\d_][\w.'-]*[ \t]+){0,3}<[\w.+-]+@[\w-]+(?:\.[\w-]+)+>")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")


def redact_people(text: str) -> tuple[str, int]:
    """Replace `Name <address>` and bare e-mail addresses with `[REDACTED:person]`."""
    text, n = _PERSON.subn("[REDACTED:person]", text)
    text, m = _EMAIL.subn("[REDACTED:person]", text)
    return text, n + m


def find_secrets(text: str) -> list[str]:
    """Kinds of secrets still present in text (for leak scans of artifacts)."""
    found = []
    for pattern in PATTERNS:
        for m in pattern.regex.finditer(text):
            secret = m.group(pattern.group)
            if "[REDACTED" not in secret:
                found.append(pattern.kind)
                break
    return found
