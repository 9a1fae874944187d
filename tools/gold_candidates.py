"""Pick entries for hand labeling: a seeded, stratified sample of the backfilled entries.

Run: python -m tools.gold_candidates --out FILE [--task T] [--entries FILE] [--per-class N]
     (entries: the task's backfilled data/<task>/entries.jsonl unless --entries names a file)

Stratification uses the rule labeler's *guess* only to make rare classes appear
often enough; the gold label itself comes from a person reading the entry against
the contract. Products are round-robined inside each class so no product dominates.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from pathlib import Path

from tuneforge.io import read_jsonl, write_jsonl
from tuneforge.names import TaskPaths
from tuneforge.tasks import get_task


def pick(entries: list[dict], task_name: str, per_class: int, seed: int,
         exclude: set[str]) -> list[dict]:
    task = get_task(task_name)
    by_class: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    # a product's entries all come from one format in practice; key products by format too
    for e in entries:
        if e["id"] in exclude:
            continue
        label, _ = task.rule_label(e["text"], e["hint"], e["product"], e["version"])
        by_class[task.label_class(label)][e["product"]].append(e)
    order = lambda e: hashlib.sha256(f"{seed}:{e['id']}".encode()).hexdigest()  # noqa: E731
    chosen = []
    for cls in sorted(by_class):
        # round-robin over formats, and over products inside a format, so no source dominates
        queues: dict[str, list[dict]] = defaultdict(list)
        for rows in by_class[cls].values():
            queues[rows[0]["format"]].append(sorted(rows, key=order))
        for fmt in queues:
            queues[fmt].sort(key=lambda rows: hashlib.sha256(f"{seed}:{rows[0]['product']}".encode()).hexdigest())
        taken = 0
        while taken < per_class and any(any(q) for q in queues.values()):
            for fmt in sorted(queues):
                product_rows = next((rows for rows in queues[fmt] if rows), None)
                if product_rows is None or taken >= per_class:
                    continue
                e = product_rows.pop(0)
                queues[fmt].append(queues[fmt].pop(queues[fmt].index(product_rows)))
                chosen.append({"id": e["id"], "text": e["text"], "hint": e["hint"],
                               "product": e["product"], "version": e["version"],
                               "source_file": e["source_file"], "line": e["line"],
                               "format": e["format"], "rule_guess": cls})
                taken += 1
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", help="backfilled entries JSONL (default: the task's, from tuneforge.names)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--task", default="changelog-actions")
    ap.add_argument("--per-class", type=int, default=45)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--exclude", help="JSONL whose ids are skipped (already labeled)")
    args = ap.parse_args(argv)
    try:
        get_task(args.task)
    except ValueError as e:
        ap.error(f"--task: {e}")
    entries = args.entries or TaskPaths.for_task(args.task).entries
    if not Path(entries).is_file():
        ap.error(f"{entries}: no such file" + ("" if args.entries else
                                               f" (build it first: dvc repro backfill@{args.task})"))
    exclude = {r["id"] for r in read_jsonl(args.exclude)} if args.exclude else set()
    rows = pick(list(read_jsonl(entries)), args.task, args.per_class, args.seed, exclude)
    n = write_jsonl(args.out, rows)
    print(f"{n} candidates -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
