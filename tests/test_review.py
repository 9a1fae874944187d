"""make review: the queue (needs-review records only, never labeled or gold-like ones, drawn
across strata, the same for the same seed) and the import (validated as a whole, appended
atomically, nothing existing lost, every bad row named by file and line)."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tuneforge import review
from tuneforge.cli import UserError
from tuneforge.io import read_jsonl, write_jsonl
from tuneforge.tasks import get_task

from .conftest import FIXTURES, ROOT

TASK = get_task("changelog-actions")
GOLD_TEXT = "Fixed a crash when the configuration file is empty and the cache directory is missing."


def record(i: int, text: str, product: str, category: str = "needs_human_review") -> dict:
    label = TASK.rule_label(text, None, product, "1.0")[0]
    return {"id": f"{i:064x}", "text": text, "hint": None, "product": product, "version": "1.0",
            "source_file": f"{product}/NEWS", "line": i, "format": "plain", "label": label, "rule": 8,
            "category": category, "reasons": ["unknown_without_cue"], "label_source": "rules"}


@pytest.fixture
def root(tmp_path, monkeypatch):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    gold = tmp_path / params["tasks"]["changelog-actions"]["gold"]
    gold.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "gold-mini.jsonl", gold)
    with open(gold, "a") as f:
        f.write(json.dumps({"text": GOLD_TEXT, "hint": None, "product": "demo", "version": "1.0",
                            "label": TASK.rule_label(GOLD_TEXT, None, "demo", "1.0")[0]}) + "\n")
    labeled = tmp_path / params["tasks"]["changelog-actions"]["human_labels"]
    labeled.parent.mkdir(parents=True, exist_ok=True)
    first = record(0, "Reworked the plugin loader internals.", "vim")
    write_jsonl(labeled, [{k: first[k] for k in ("id", "text", "hint", "product", "label")}])
    recs = [first, record(1, GOLD_TEXT.replace("empty", "blank"), "demo")]  # labeled; near gold
    recs += [record(10 + i, f"Changed the {w} handling of the {p} tool.", p)
             for i, (w, p) in enumerate((w, p) for p in ("vim", "tmux", "git") for w in ("quote", "tab", "path"))]
    recs.append(record(99, "Fixed a typo in the README.", "git", category="accepted"))
    write_jsonl(tmp_path / "data/changelog-actions/scored.jsonl", recs)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_queue_skips_labeled_and_gold_like_records_and_spreads_over_products(root):
    assert review.main(["export", "--task", "changelog-actions", "--n", "3", "--out", "q"]) == 0
    queue = list(read_jsonl(root / "q/queue.jsonl"))
    assert len(queue) == 3 and len({r["product"] for r in queue}) == 3  # one per product first
    assert queue[0]["source_file"].endswith("/NEWS") and queue[0]["line"]
    texts = {r["text"] for r in queue}
    assert "Reworked the plugin loader internals." not in texts and not any("blank" in t for t in texts)
    assert all(r["suggested"]["kind"] and r["reasons"] for r in queue)
    studio = json.loads((root / "q/label-studio.json").read_text())
    assert [t["data"]["record_id"] for t in studio] == [r["id"] for r in queue]
    again = root / "q2"
    review.main(["export", "--task", "changelog-actions", "--n", "3", "--out", str(again)])
    assert (again / "queue.jsonl").read_bytes() == (root / "q/queue.jsonl").read_bytes()  # same seed, same queue


def test_the_draw_takes_each_class_in_turn_and_each_product_within_a_class():
    recs = [{"id": f"{c}{p}{i}", "product": p, "label": {"kind": c}}
            for c, products in (("unknown", "abcdef"), ("fix", "ab"), ("security", "a")) for p in products
            for i in range(3)]
    got = review.draw(recs, 6, seed=0, class_field="kind")
    kinds = [r["label"]["kind"] for r in got]
    assert sorted(kinds[:3]) == ["fix", "security", "unknown"] and kinds.count("unknown") == 2
    unknown = [r["product"] for r in got if r["label"]["kind"] == "unknown"]
    assert len(set(unknown)) == len(unknown)  # a second product before a second row of the first
    assert review.draw(recs, 6, seed=0, class_field="kind") == got != review.draw(recs, 6, seed=1, class_field="kind")


def labeled_rows(root, n: int) -> list[dict]:
    review.main(["export", "--task", "changelog-actions", "--n", str(n), "--out", "q"])
    return [{**r, "label": r["suggested"]} for r in read_jsonl(root / "q/queue.jsonl")]


def test_import_appends_valid_rows_and_keeps_every_existing_one(root):
    target = root / "data/labeled/train.jsonl"
    before = target.read_bytes()
    rows = labeled_rows(root, 4)
    write_jsonl(root / "done.jsonl", rows + rows[:1])  # one duplicate
    assert review.main(["import", "--task", "changelog-actions", "done.jsonl", "--labeler", "ann-1",
                        "--contract", "v6"]) == 0
    after = target.read_bytes()
    assert after.startswith(before)
    added = [json.loads(x) for x in after[len(before):].decode().splitlines()]
    assert len(added) == 4 and {r["labeler"] for r in added} == {"ann-1"} and {r["contract"] for r in added} == {"v6"}
    # the same file again: every row a duplicate, nothing added
    review.main(["import", "--task", "changelog-actions", "done.jsonl", "--labeler", "ann-1", "--contract", "v6"])
    assert target.read_bytes() == after


def test_a_dry_run_checks_every_row_and_writes_nothing(root, caplog):
    target = root / "data/labeled/train.jsonl"
    before = target.read_bytes()
    rows = labeled_rows(root, 3)
    write_jsonl(root / "done.jsonl", rows + rows[:1])  # one duplicate
    args = ["import", "--task", "changelog-actions", "done.jsonl", "--labeler", "ann-1", "--contract", "v6"]
    with caplog.at_level("INFO"):
        assert review.main([*args, "--dry-run"]) == 0
    assert "3 would be added, 1 duplicates (dry run" in caplog.text
    assert target.read_bytes() == before
    bad = {**rows[0], "label": {**rows[0]["label"], "kind": "improvement"}}
    write_jsonl(root / "bad.jsonl", [bad])
    with pytest.raises(UserError, match="bad.jsonl:1: label is not the task's schema"):
        review.main(["import", "--task", "changelog-actions", "bad.jsonl", "--labeler", "x", "--contract", "v6",
                     "--dry-run"])
    assert target.read_bytes() == before
    assert review.main(args) == 0  # the real import adds what the dry run said it would
    assert len(target.read_bytes().decode().splitlines()) == len(before.decode().splitlines()) + 3


def test_a_bad_row_stops_the_import_naming_each_line_and_nothing_is_written(root):
    target = root / "data/labeled/train.jsonl"
    before = target.read_bytes()
    good, other = labeled_rows(root, 2)
    bad_kind = {**other, "label": {**other["label"], "kind": "improvement"}}
    gold_like = {**good, "text": GOLD_TEXT}
    relabel = {"text": "Reworked the plugin loader internals.", "label": {**good["label"], "kind": "security"}}
    (root / "bad.jsonl").write_text("\n".join(json.dumps(r) for r in (good, bad_kind, gold_like, relabel))
                                    + "\n{not json\n")
    with pytest.raises(UserError) as e:
        review.main(["import", "--task", "changelog-actions", "bad.jsonl", "--labeler", "x", "--contract", "v6"])
    msg = str(e.value)
    assert "4 bad rows, nothing imported" in msg
    assert "bad.jsonl:2: label is not the task's schema" in msg
    assert "bad.jsonl:3: text is a gold entry" in msg
    assert "bad.jsonl:4: text already labeled differently" in msg
    assert "bad.jsonl:5: not JSON" in msg
    assert target.read_bytes() == before


# ---------------------------------------------------------------- agreement (Cohen's kappa)

def test_kappa_is_the_textbook_value_and_undefined_when_chance_is_certain():
    # 50 items: both yes 20, both no 15, yes/no 5, no/yes 10 -> observed 0.7, chance 0.5, kappa 0.4
    first = ["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10
    second = ["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10
    assert review.cohen_kappa(first, second) == 0.4
    assert review.cohen_kappa(first, first) == 1.0
    # uneven shares: chance (3x2 + 1x2) / 16 = 0.5 from both raters' shares, observed 0.75
    assert review.cohen_kappa(["a", "a", "a", "b"], ["a", "a", "b", "b"]) == 0.5
    assert review.cohen_kappa(["a", "b"], ["b", "a"]) == -1.0
    assert review.cohen_kappa(["fix"] * 3, ["fix"] * 3) is None  # one class, both: undefined
    with pytest.raises(ValueError):
        review.cohen_kappa(["a"], [])


def test_agreement_compares_the_rows_both_labelers_labeled(tmp_path, capsys):
    def row(i: int, kind: str, severity: str) -> dict:
        return {"id": f"r{i}", "label": {"kind": kind, "severity": severity}}

    write_jsonl(tmp_path / "a.jsonl", [row(1, "fix", "low"), row(2, "security", "high"), row(3, "docs", "low"),
                                       row(9, "fix", "low")])
    write_jsonl(tmp_path / "b.jsonl", [row(1, "fix", "low"), row(2, "fix", "medium"), row(3, "docs", "low"),
                                       row(8, "docs", "low")])
    out = tmp_path / "agreement.json"
    assert review.main(["agreement", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out", str(out),
                        "--task", "changelog-actions", "--params", str(ROOT / "params.yaml")]) == 0
    got = json.loads(out.read_text())
    assert got["rows"] == 3  # r8 and r9 were labeled once only
    assert got["fields"]["kind"] == {"kappa": review.cohen_kappa(["fix", "security", "docs"], ["fix", "fix", "docs"]),
                                     "agreement": 0.6667}
    assert got["disagreements"] == [{"id": "r2", "kind": ["security", "fix"], "severity": ["high", "medium"]}]
    assert json.loads(capsys.readouterr().out)["rows"] == 3
