"""backfill -> evidence -> score -> export for the commit-messages task, on patch fixtures in tmp_path:
what the task's contract promises about its data (no author identity, no planted secret, no holdout
package, never the author's message in a prompt) checked on the stages' real outputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tuneforge.io import read_jsonl, write_jsonl
from tuneforge.records import StageReceipt
from tuneforge.tasks.commit_messages.junk import PLANTED_SECRET

from .conftest import FIXTURES, ROOT, snapshot_tree

TASK = "commit-messages"
STAGES = ("backfill", "evidence", "score", "export")
# identities the fixtures' headers and trailers carry: none may reach any output
PEOPLE = ("Jürgen Müller", "juergen.mueller", "Ana Lima", "ana@example.net", "Morgan Lee", "Lee, Morgan",
          "morgan.lee", "Chris Tan", "ctan@", "Dana Fox", "dana@example.org", "Pat Doe", "pat.doe", "Sam Roe")


def _patch(n: int, path: str, subject: str, body: str, *lines: str) -> str:
    added = "".join(f"+{ln}\n" for ln in lines)
    return (f"From {n:040x} Mon Sep 17 00:00:00 2001\nFrom: Dev {n} <dev{n}@example.com>\n"
            f"Date: Mon, 1 May 2023 10:00:00 +0000\nSubject: [PATCH] {subject}\n\n{body}\n\n"
            f"Signed-off-by: Dev {n} <dev{n}@example.com>\n---\n {path} | {len(lines)} +\n\n"
            f"diff --git a/{path} b/{path}\nindex {n:07x}..{n + 1:07x} 100644\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -1,2 +1,{2 + len(lines)} @@\n int a{n};\n{added} int b{n};\n-- \n2.39.2\n")


@pytest.fixture
def commit_workdir(tmp_path, monkeypatch) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    entry = params["tasks"][TASK]
    entry.update(snapshot="snapshot", gold="data/gold/commit-messages.jsonl",
                 human_labels="data/labeled/commit-messages.jsonl", replay_log="data/replay/commit-messages.jsonl")
    entry["overrides"]["export"].update(augment_rate=1.0, valid_fraction=0.0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    snap = tmp_path / "snapshot"
    shutil.copytree(FIXTURES / "patches", snap / "fixtures-pkg")  # real-shaped headers, a bare patch
    for n in range(1, 9):  # plain format-patch rows in four more packages
        pkg = snap / f"pkg{n % 4}"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / f"{n:04d}-change.patch").write_text(_patch(
            n, f"src/mod{n}.c", f"Fix an off-by-one in mod{n}_read", f"mod{n}_read read one byte past the end.",
            f"int fixed{n};", f"int mod{n}_read(void);",
            # an author's address inside the diff itself (a copyright line): backfill's redaction
            *([f"/* Copyright 2023 Dana Fox <dana@example.org>, dev{n}@example.com */"] if n == 3 else [])),
            encoding="utf-8")
    gold_src = _patch(99, "lib/gold.c", "Fix the gold path", "It was wrong.", "int gold;")
    (snap / "goldpkg").mkdir()
    (snap / "goldpkg" / "0001-gold.patch").write_text(gold_src, encoding="utf-8")
    (snap / "goldpkg" / "0002-other.patch").write_text(
        _patch(98, "lib/other.c", "Add the other option", "Adds it.", "int other;",
               'static const char *other_option_names[] = {"alpha", "beta", "gamma", "delta", "epsilon"};',
               "register_other_option(other_option_names, sizeof other_option_names);"), encoding="utf-8")
    diff = gold_src[gold_src.index("diff --git"):gold_src.index("-- \n")].rstrip("\n")
    write_jsonl(tmp_path / "data/gold/commit-messages.jsonl", [{
        "text": diff, "hint": None, "product": "goldpkg", "label": {
            "type": "fix", "scope": None, "subject": "Fix the gold path", "body": None, "breaking": False,
            "ignore": []}}])
    (tmp_path / "data/labeled").mkdir(parents=True)
    (tmp_path / "data/labeled/commit-messages.jsonl").write_text("")
    (tmp_path / "data/replay").mkdir(parents=True)
    (tmp_path / "data/replay/commit-messages.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


def run_stages() -> None:
    from stages import backfill, evidence, export, score
    for stage in (backfill, evidence, score, export):
        assert stage.main([TASK]) == 0


def test_every_patch_is_accounted_for(commit_workdir):
    run_stages()
    for stage in STAGES:
        r = StageReceipt.model_validate_json((commit_workdir / f"reports/{TASK}/receipts/{stage}.json").read_text())
        c = r.counts
        assert c.records_in == c.records_out + c.quarantined + c.deduplicated and r.invariant_holds, stage
    reasons = {q["reason"] for q in read_jsonl(commit_workdir / f"data/{TASK}/quarantine/backfill.jsonl")}
    assert {"patch_without_message", "patch_without_diff"} <= reasons  # the bare and the DEP-3-only fixtures


def test_no_author_identity_reaches_any_output(commit_workdir):
    run_stages()
    for path, data in snapshot_tree(commit_workdir, ("data", "reports")).items():
        if "gold" in path:
            continue
        text = data.decode("utf-8", errors="replace")
        found = [p for p in PEOPLE if p in text] + [f"dev{n}@" for n in range(100) if f"dev{n}@" in text]
        assert not found, (path, found)


def test_the_authors_message_is_never_in_a_prompt_and_diffs_stay_verbatim(commit_workdir):
    run_stages()
    entries = {e["id"]: e for e in read_jsonl(commit_workdir / f"data/{TASK}/entries.jsonl")}
    assert any("\n int a1;\n+int fixed1;\n+int mod1_read(void);\n int b1;" in e["text"] for e in entries.values())
    rows = list(read_jsonl(commit_workdir / f"data/{TASK}/exports/sft/train.jsonl"))
    assert rows
    for row in rows:
        prompt = "\n".join(m["content"] for m in row["messages"] if m["role"] != "assistant")
        assert "read one byte past the end" not in prompt and "Signed-off-by" not in prompt
        assert row["hint_shown"] is False


def test_holdout_packages_and_the_planted_secret_never_reach_training(commit_workdir):
    run_stages()
    exports = commit_workdir / f"data/{TASK}/exports"
    rows = [r for p in sorted(exports.rglob("*.jsonl")) for r in read_jsonl(p)]
    assert {r.get("product") for r in rows} >= {"pkg1", "pkg2", "pkg3"}  # training rows exist...
    assert not [r for r in rows if r.get("product") == "goldpkg"]  # ...none from the holdout package
    text = "\n".join(json.dumps(r) for r in rows)
    assert "int other;" not in text  # goldpkg's other patch left too: split by package
    assert PLANTED_SECRET not in text
    train = list(read_jsonl(exports / "sft/train.jsonl"))
    junk = [r for r in train if json.loads(r["messages"][-1]["content"])["ignore"]]
    assert junk, "export.augment_rate 1.0 injected no junk"
    for r in junk:  # each ignored path is in the prompt's diff: the ground truth is the injection
        prompt = r["messages"][1]["content"]
        assert all(p in prompt for p in json.loads(r["messages"][-1]["content"])["ignore"])


def test_two_runs_are_byte_identical(commit_workdir):
    run_stages()
    first = snapshot_tree(commit_workdir)
    for p in (commit_workdir / "data" / TASK).rglob("*.jsonl"):
        p.unlink()
    run_stages()
    assert snapshot_tree(commit_workdir) == first
