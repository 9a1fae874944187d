"""Junk files: what must not be committed (`is_junk`), and the injection that teaches the
model to route it to `ignore` (`inject`, `augment`: the Task.augment hook export calls).

Real staged changes carry editor swap files, `.DS_Store`, `__pycache__/*.pyc`, build output,
`node_modules/` and `.env` files by accident; the Debian patches we learn from never do (a
maintainer's tree is clean), so a seeded share of training rows gets 1-3 plausible junk files
added to its diff, with the ground truth known by construction.

The `.env` file holds a planted fake secret (PLANTED_SECRET) to teach that a file holding a
secret is junk. The secret itself never leaves this module: the `.env` hunk is passed through
tuneforge.redact.redact before it is written into the diff, exactly as backfill redacts a real
secret, so a training row shows `API_KEY=[REDACTED:github_token]` and no record, export or
prompt holds the secret. Its shape (a GitHub token) is one redact() already catches anywhere,
alone or in an assignment; tests/test_commit_messages.py holds both.
"""
from __future__ import annotations

import hashlib
import posixpath
import re

from tuneforge.redact import redact
from tuneforge.tasks.commit_messages.prompt import is_junk, parse_diff, render_user

# Fixed and recognisable ("tuneforgeplantedfake"), built from parts so no scanner reads a token
# in this file; redact() knows the `ghp_` + 30 or more alphanumerics shape as github_token.
PLANTED_SECRET = "ghp" + "_tuneforgeplantedfake" + hashlib.sha256(b"tuneforge planted secret").hexdigest()[:16]

def _unit(*parts: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for the given keys."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(items: list, *key: str):
    return items[int(_unit(*key) * len(items))]


def _blob(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:7]  # a plausible abbreviated blob id


def _binary(path: str) -> list[str]:
    return [f"diff --git a/{path} b/{path}", "new file mode 100644", f"index 0000000..{_blob(path)}",
            f"Binary files /dev/null and b/{path} differ"]


def _text(path: str, body: list[str]) -> list[str]:
    return [f"diff --git a/{path} b/{path}", "new file mode 100644", f"index 0000000..{_blob(path)}",
            "--- /dev/null", f"+++ b/{path}", f"@@ -0,0 +1,{len(body)} @@"] + [f"+{ln}" for ln in body]


def _env_file(path: str, key: str) -> list[str]:
    body = [f"DATABASE_URL=postgres://localhost:5432/{_pick(['app', 'dev', 'test'], key, 'db')}",
            "API_KEY=" + PLANTED_SECRET, f"DEBUG={_pick(['1', 'true'], key, 'debug')}"]
    return redact("\n".join(_text(path, body)))[0].splitlines()  # the secret never leaves here


def _candidates(src_dir: str, src_name: str, key: str) -> list[tuple[str, list[str]]]:
    """(path, diff block) of every junk kind, placed beside the diff's first real file."""
    join = (lambda *p: posixpath.join(src_dir, *p)) if src_dir else posixpath.join
    module = _pick(["utils", "config", "main", "helpers"], key, "module")
    package = _pick(["left-pad", "is-odd", "lodash.merge"], key, "package")
    return [
        (join(f".{src_name}.swp"), _binary(join(f".{src_name}.swp"))),
        (join(".DS_Store"), _binary(join(".DS_Store"))),
        (join("__pycache__", f"{module}.cpython-311.pyc"),
         _binary(join("__pycache__", f"{module}.cpython-311.pyc"))),
        (f"node_modules/{package}/index.js",
         _text(f"node_modules/{package}/index.js", ["'use strict';", "module.exports = require('./lib');"])),
        (f"build/{module}.o", _binary(f"build/{module}.o")),
        (".env", _env_file(".env", key)),
    ]


def inject(diff: str, seed_key: str) -> tuple[str, list[str]]:
    """The diff with 1-3 junk files added as `diff --git` blocks (sorted in among the diff's
    own `diff --git` sections by path, as git orders them; appended to a diff without them),
    and the junk paths in the order they now appear. Deterministic in (diff, seed_key)."""
    changes = parse_diff(diff)
    taken = {c.path for c in changes}
    first = next((c.path for c in changes if not is_junk(c.path)), "main.c")
    src_dir, src_name = posixpath.split(first)
    pool = [c for c in _candidates(src_dir, src_name, seed_key) if c[0] not in taken]
    count = min(len(pool), 1 + int(_unit(seed_key, "count") * 3))
    chosen = sorted(pool, key=lambda c: _unit(seed_key, "kind", c[0]))[:count]
    lines = diff.rstrip("\n").split("\n")
    starts = [i for i, ln in enumerate(lines) if ln.startswith("diff --git ")]
    blocks = [lines[:starts[0]] if starts else lines]  # the preamble (or a diff with no git headers)
    paths: list[str | None] = [None]
    for n, s in enumerate(starts):
        blocks.append(lines[s:starts[n + 1] if n + 1 < len(starts) else len(lines)])
        parsed = parse_diff("\n".join(blocks[-1]))
        paths.append(parsed[0].path if parsed else "")
    for path, block in chosen:
        at = len(blocks)
        if starts:
            at = next((i for i in range(1, len(blocks)) if (paths[i] or "") > path), len(blocks))
        blocks.insert(at, block)
        paths.insert(at, path)
    new = "\n".join(ln for b in blocks for ln in b) + "\n"
    order = [p for p in paths if p is not None]
    return new, [p for p in order if p in {c[0] for c in chosen}]


def augment(records: list, rate: float, seed: int) -> list:
    """Task.augment: a seeded share `rate` of the train records (tuneforge.records.ScoredRecord)
    get junk injected; their label's `ignore` gains the junk paths and their id becomes
    sha256("junk:" + id). The same records in the same order come out; which ones change
    depends only on `seed` and each record's id. A record whose prompt view would not list
    every junk path (a change with more paths than the view lists) stays as it is: its label
    would name a path the model was never shown."""
    out = []
    for rec in records:
        label = rec.label
        if label is None or _unit(str(seed), "junk", rec.id) >= rate or len(label.get("ignore", [])) > 13:
            out.append(rec)
            continue
        text, junk = inject(rec.text, f"{seed}:{rec.id}")
        listed = render_user(text, None, rec.product).split("\nHunks:", 1)[0]
        if any(not re.search(rf" {re.escape(path)}(?: |$)", listed, re.M) for path in junk):
            out.append(rec)
            continue
        ignore = list(dict.fromkeys([*label["ignore"], *junk]))
        out.append(rec.model_copy(update={
            "id": hashlib.sha256(f"junk:{rec.id}".encode()).hexdigest(),
            "text": text, "label": dict(label, ignore=ignore)}))
    return out
