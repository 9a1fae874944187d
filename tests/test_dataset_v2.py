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
