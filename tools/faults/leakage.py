"""Leakage: gold rows planted into the sources, verbatim and near-duplicate, never reach train/valid."""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

from tools.faults.roots import FIXTURES, GOLD_MINI, PATHS, ROOT, TASK, base_params, make_root, run_inproc, task_entry
from tuneforge.decontam import GoldMatcher, words
from tuneforge.io import read_jsonl
from tuneforge.text import content_key


def leakage_check(train_rows: list[dict], gold_rows: list[dict], cfg: dict) -> dict:
    """Gold entries in SFT rows, by normalised hash and by the export's near-duplicate
    measure (tuneforge.decontam, with the export params `cfg`)."""
    gold_keys = {content_key(g["text"]) for g in gold_rows}
    matcher = GoldMatcher([g["text"] for g in gold_rows], cfg["near_dup_threshold"],
                          cfg["near_dup_min_contained_words"])
    exact, near = [], []
    for row in train_rows:
        user = row["messages"][1]["content"]
        text = user.split("Entry: ", 1)[1] if "Entry: " in user else user
        if content_key(text) in gold_keys:
            exact.append(text[:80])
        elif matcher.matches(text):
            near.append(text[:80])
    return {"rows": len(train_rows), "gold": len(gold_rows), "exact": exact[:10], "exact_count": len(exact),
            "near": near[:10], "near_count": len(near)}


def _edit_words(text: str, kind: str) -> str | None:
    """`text` with a small word-level edit of `kind`; None when the entry does not suit it.
    Edits touch plain alphabetic words, so each is one word to the near-duplicate measure."""
    toks = text.split()
    n = len(words(text))
    plain = [i for i, t in enumerate(toks) if t.isalpha()]
    if not plain:
        return None
    mid = min(plain, key=lambda i: (abs(i - len(toks) // 2), i))
    if kind == "last_word":  # the old probe's only edit
        return " ".join(toks[:-1] + ["EXTRA"]) if n > 12 else None
    if kind == "middle_word" and n >= 9:
        return " ".join(toks[:mid] + ["zyxwv"] + toks[mid + 1:])
    if kind == "insert_two" and n >= 9:
        return " ".join(toks[:mid] + ["really", "quite"] + toks[mid:])
    if kind == "delete_two" and n >= 9 and mid + 1 in plain:
        return " ".join(toks[:mid] + toks[mid + 2:])
    if kind == "short_edit" and 5 <= n <= 8:
        return " ".join(toks[:mid] + ["zyxwv"] + toks[mid + 1:])
    if kind == "short_delete" and 5 <= n <= 8:
        return " ".join(toks[:mid] + toks[mid + 1:])
    return None


LEAK_VARIANTS = ("verbatim", "case_punct", "fullwidth", "last_word", "middle_word", "insert_two", "delete_two",
                 "short_edit", "short_delete")


def leakage_suite(scratch: Path) -> dict:
    """Gold rows planted into the sources must not reach train or valid: verbatim,
    case/punctuation changed, full-width, and word-level near-duplicates (last or middle
    word edited, two words inserted or deleted, 5-8 word entries with one word edited or
    deleted); plus one near-duplicate of a synthetic unknown row, which the augmentation
    draws after the split. And the repo's real build, if present."""
    from tuneforge.tasks import get_task

    start = time.monotonic()
    fixtures = {str(p.relative_to(FIXTURES)): p.read_bytes() for p in FIXTURES.rglob("*") if p.is_file()}
    gold = [json.loads(x) for x in GOLD_MINI.read_text(encoding="utf-8").splitlines() if x.strip()]
    # plant every fixture entry the pipeline would export as gold too, in variants
    root = make_root(scratch / "leak-probe", fixtures)
    assert run_inproc(root) is None
    entries = list(read_jsonl(root / PATHS.entries))
    train = list(read_jsonl(root / PATHS.sft("train")))
    by_id = {e["id"]: e for e in entries}
    pool = [by_id[t["id"]] for t in train if t["id"] in by_id]
    labels = {t["id"]: json.loads(t["messages"][2]["content"]) for t in train}
    variants, used = [], set()
    for kind in LEAK_VARIANTS:  # each kind from its own entry, the first that suits it
        for e in pool:
            text = e["text"]
            if kind == "case_punct":
                text = text.upper().rstrip(".") + "!!"
            elif kind == "fullwidth":
                text = text.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
            elif kind != "verbatim":
                text = _edit_words(text, kind)
            if e["id"] not in used and text is not None:
                used.add(e["id"])
                variants.append({"text": text, "hint": e["hint"], "product": e["product"], "label": labels[e["id"]],
                                 "rule": 7, "kind": kind})
                break
    params = base_params()
    content_free = get_task(TASK).content_free_examples()
    params["export"]["unknown_augment"] = 3 * len(content_free)  # draws nearly every example
    synthetic = next(t for t in content_free if len(t.split()) >= 5)
    variants.append({"text": _edit_words(synthetic, "short_edit"), "hint": None, "product": "synthetic",
                     "label": gold[0]["label"], "rule": 7, "kind": "synthetic_short_edit"})
    gold_all = gold + [{k: v for k, v in r.items() if k != "kind"} for r in variants]
    root2 = make_root(scratch / "leak", fixtures, gold_rows=gold_all, params=params)
    assert run_inproc(root2) is None
    cfg = params["export"]
    rows = [r for s in ("train", "valid") for r in read_jsonl(root2 / PATHS.sft(s))]
    probe = leakage_check(rows, gold_all, cfg)
    quarantine = list(read_jsonl(root2 / PATHS.quarantine("export")))
    q = Counter(r["reason"] for r in quarantine)
    out = {"planted_gold": len(variants), "planted_kinds": [v["kind"] for v in variants],
           "measure": "word edit similarity or containment",
           "planted_words": "verbatim, upper-cased, full-width, last or middle word edited, two words inserted or "
                            "deleted, 5-8 word entries with a word edited or deleted, a synthetic row edited",
           "gold_overlap_quarantined": q.get("gold_overlap", 0),
           "synthetic_quarantined": sum(1 for r in quarantine if r["source_file"] == "(unknown_augment)"),
           "probe": probe, "threshold": cfg["near_dup_threshold"]}
    # the real default build in this checkout (read-only), when its exports are present
    real_gold = ROOT / task_entry(params)["gold"]
    if (ROOT / PATHS.sft("train")).exists() and real_gold.exists():
        rows = [r for s in ("train", "valid") for r in read_jsonl(ROOT / PATHS.sft(s))]
        out["real_build"] = leakage_check(rows, list(read_jsonl(real_gold)), cfg)
    else:
        out["real_build"] = None
    out["leaks"] = probe["exact_count"] + probe["near_count"] + (
        out["real_build"]["exact_count"] + out["real_build"]["near_count"] if out["real_build"] else 0)
    out["seconds"] = round(time.monotonic() - start, 1)
    for d in (root, root2):
        shutil.rmtree(d, ignore_errors=True)
    return out
