"""Dataset v2 knobs: hand-labeled training rows, hint randomisation, unknown augmentation."""
import json

import pytest
import yaml

from tuneforge.io import read_jsonl


def set_params(workdir, **sections):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_hint_randomisation_and_unknown_augmentation(workdir, run_pipeline):
    set_params(workdir, export={"hint_drop_rate": 0.3, "hint_swap_rate": 0.2, "unknown_augment": 40})
    run_pipeline()
    train = list(read_jsonl(workdir / "data/changelog-actions/exports/sft/train.jsonl"))
    scored = {r["id"]: r for r in read_jsonl(workdir / "data/changelog-actions/scored.jsonl")}
    real = [r for r in train if r["id"] in scored and scored[r["id"]]["hint"]]
    dropped = [r for r in real if "Section:" not in r["messages"][1]["content"]]
    swapped = [r for r in real if "Section:" in r["messages"][1]["content"]
               and f"Section: {scored[r['id']]['hint']}\n" not in r["messages"][1]["content"]]
    assert 0.15 < len(dropped) / len(real) < 0.45
    assert 0.05 < len(swapped) / len(real) < 0.35
    synthetic = [r for r in train if r["id"] not in scored]
    assert len(synthetic) == 40
    assert all(json.loads(r["messages"][2]["content"])["kind"] == "unknown" for r in synthetic)
    for row in read_jsonl(workdir / "data/changelog-actions/exports/sft/valid.jsonl"):  # valid keeps real hints
        hint = scored[row["id"]]["hint"]
        assert (f"Section: {hint}\n" in row["messages"][1]["content"]) == bool(hint)
    receipt = json.loads((workdir / "reports/changelog-actions/receipts/export.json").read_text())
    assert receipt["invariant_holds"] and receipt["counts"]["extra"]["unknown_augment"] == 40


def test_human_labels_outrank_rules_and_may_not_touch_gold(workdir, run_pipeline):
    run_pipeline()
    entries = list(read_jsonl(workdir / "data/changelog-actions/entries.jsonl"))[:3]
    label = {"kind": "docs", "severity": "low", "subject": "hand labeled row",
             "action_text": "Read the updated documentation.", "deadline": None, "tags": ["demo"]}
    human = workdir / "data/labeled/train.jsonl"
    human.parent.mkdir(parents=True, exist_ok=True)
    human.write_text("".join(json.dumps({"text": e["text"], "label": label, "rule": 9}) + "\n"
                             for e in entries))
    set_params(workdir, evidence={"human_labels": True})
    run_pipeline()
    scored = {r["id"]: r for r in read_jsonl(workdir / "data/changelog-actions/scored.jsonl")}
    for e in entries:
        assert scored[e["id"]]["label_source"] == "human"
        assert scored[e["id"]]["label"] == label and scored[e["id"]]["category"] == "accepted"
    gold = json.loads((workdir / "data/gold/holdout.jsonl").read_text().splitlines()[0])
    with open(human, "a") as f:
        f.write(json.dumps({"text": gold["text"], "label": label, "rule": 9}) + "\n")
    from stages import evidence
    with pytest.raises(SystemExit, match="also in the gold holdout"):
        evidence.main(["changelog-actions"])


def test_export_holds_out_a_seeded_share_of_the_gold_products():
    """export.heldout_products: a seeded share of the gold's products gives training no row, so
    eval can set the model beside the rule labeler on products it never saw; a task whose
    contract splits by source package (commit-messages) holds out every gold product."""
    from stages.export import held_out_products
    from tuneforge.tasks import get_task

    rows = [{"product": f"p{i}"} for i in range(200)] + [{"product": None}, {"text": "no product"}]
    every = {f"p{i}" for i in range(200)}
    changelog = get_task("changelog-actions")
    assert held_out_products(rows, changelog, 1, 0.0) == set()
    assert held_out_products(rows, changelog, 1, 1.0) == every
    some = held_out_products(rows, changelog, 1, 0.2)
    assert 20 < len(some) < 60 and some == held_out_products(rows, changelog, 1, 0.2)
    assert held_out_products(rows, changelog, 2, 0.2) != some  # the seed draws them
    assert held_out_products(rows, changelog, 1, 0.3) > some   # a larger share keeps the smaller's
    assert held_out_products(rows, get_task("commit-messages"), 1, 0.0) == every


def replay_line(text: str, label: dict | None, verdict: str = "accepted", task: str = "changelog-actions",
                hint: str | None = None, product: str | None = "demo") -> str:
    from tuneforge.io import sha256_text
    from tuneforge.names.shapes import ReplayRecord

    return ReplayRecord(task=task, input_sha256=sha256_text(text), text=text, hint=hint, product=product,
                        model_sha256="ab" * 32, retrieval=None, answer=json.dumps(label), closed_by_decoder=False,
                        problems=[] if label else ["not_schema_valid: x"], escalated=False, verdict=verdict,
                        label=label).model_dump_json() + "\n"


def test_accepted_replay_answers_become_candidates_below_hand_labels_and_never_near_gold(workdir, run_pipeline):
    """evidence.replay_labels: the latest accepted answer per input is a candidate with source
    replay (chosen over the rule labeler, reviewed when they disagree); an input the snapshot
    lacks becomes a record whose provenance is the log's line; a rejected answer, another task's
    and a gold entry's never count; every log line is accounted for in the receipt."""
    from tuneforge.tasks import get_task

    task = get_task("changelog-actions")
    run_pipeline()
    entries = list(read_jsonl(workdir / "data/changelog-actions/entries.jsonl"))
    scored = {r["id"]: r for r in read_jsonl(workdir / "data/changelog-actions/scored.jsonl")}
    same = next(e for e in entries if scored[e["id"]]["category"] == "accepted")
    rules_label = scored[same["id"]]["label"]
    agreeing = {**rules_label, "subject": "replayed subject"}  # same kind, another wording
    other_kind = next(k for k in ("docs", "feature") if k != rules_label["kind"])
    disagreeing = {**rules_label, "kind": other_kind}
    second = next(e for e in entries if e["id"] != same["id"] and scored[e["id"]]["category"] == "accepted")
    gold = json.loads((workdir / "data/gold/holdout.jsonl").read_text().splitlines()[0])
    new_text = "Added a `--frobnicate` flag to the `widget` command."
    new_label, _ = task.rule_label(new_text, None, "demo", None)
    log = workdir / "data/replay/changelog-actions.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        replay_line(same["text"], disagreeing)        # 1: superseded by line 2
        + replay_line(same["text"], agreeing)         # 2: used
        + replay_line(second["text"], disagreeing)    # 3: used, disagrees with the rules -> review
        + replay_line(new_text, new_label)            # 4: used, a new record
        + replay_line("Garbage in.", None, "rejected")  # 5: not accepted
        + replay_line(gold["text"], gold["label"])    # 6: a gold entry
        + replay_line(new_text, new_label, task="commit-messages"))  # 7: another task's
    set_params(workdir, evidence={"replay_labels": True})
    run_pipeline()
    evidence = {r["id"]: r for r in read_jsonl(workdir / "data/changelog-actions/evidence.jsonl")}
    scored = {r["id"]: r for r in read_jsonl(workdir / "data/changelog-actions/scored.jsonl")}
    assert scored[same["id"]]["label_source"] == "replay" and scored[same["id"]]["label"] == agreeing
    assert scored[same["id"]]["category"] == "accepted"
    assert scored[second["id"]]["category"] == "needs_human_review"
    assert "label_sources_disagree" in scored[second["id"]]["reasons"]
    [new] = [r for r in evidence.values() if r["text"] == new_text]
    assert new["format"] == "replay" and new["provenance"]["line"] == 4
    assert new["provenance"]["source_file"] == "data/replay/changelog-actions.jsonl"
    assert {c["source"] for c in new["candidates"]} == {"rules", "replay"}
    assert not any(c["source"] == "replay" for r in evidence.values() if r["text"] == gold["text"]
                   for c in r["candidates"])
    receipt = json.loads((workdir / "reports/changelog-actions/receipts/evidence.json").read_text())
    extra = receipt["counts"]["extra"]
    assert {k: v for k, v in extra.items() if k.startswith("replay_")} == {
        "replay_lines": 7, "replay_used": 3, "replay_superseded": 1, "replay_not_accepted": 1,
        "replay_gold_near_duplicate": 1, "replay_other_task": 1, "replay_new_records": 1}
    assert receipt["invariant_holds"] and receipt["counts"]["records_in"] == len(entries) + 1
    # a hand label outranks the replay answer for the same entry
    human = workdir / "data/labeled/train.jsonl"
    human.parent.mkdir(parents=True, exist_ok=True)
    hand = {**rules_label, "subject": "hand labeled subject"}
    human.write_text(json.dumps({"text": same["text"], "label": hand}) + "\n")
    set_params(workdir, evidence={"replay_labels": True, "human_labels": True})
    run_pipeline()
    scored = {r["id"]: r for r in read_jsonl(workdir / "data/changelog-actions/scored.jsonl")}
    assert scored[same["id"]]["label_source"] == "human" and scored[same["id"]]["label"] == hand
