"""Gold holdout for the commit-messages task: pick the rows to label by hand, then build the file.

  python tools/commit_gold.py candidates --entries data/commit-messages/entries.jsonl --out DIR
      Holdout source packages in a seeded order (sha256 of the name) until --rows rows, at most
      --per-package from each; their rows are written as labeling batches (id, product, message,
      diff) for people to label against the contract (never the rule labeler's output). Every
      row of a chosen package leaves training (export drops holdout packages: Task.holdout_by_product).
  python tools/commit_gold.py build --entries ... --labels DIR --out data/gold/commit-messages.jsonl
      Joins the hand labels with their rows, injects junk files into a seeded share of them (the
      task's own injector: the ground truth of `ignore` is known by construction), validates every
      label with the task's schema, and reports agreement on rows labeled by more than one person.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from tuneforge.io import read_jsonl, write_json, write_jsonl
from tuneforge.tasks import get_task

TASK = "commit-messages"
READ_CAP = 6000  # characters of diff a labeler is shown; longer diffs are cut (and say so)


def _rank(name: str, seed: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def candidates(args: argparse.Namespace) -> int:
    rows = list(read_jsonl(args.entries))
    by_pkg: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("hint") and len(r["text"]) <= args.max_chars:
            by_pkg[r["product"]].append(r)
    picked: list[dict] = []
    for pkg in sorted(by_pkg, key=lambda p: _rank(p, args.seed)):
        if len(picked) >= args.rows:
            break
        picked += sorted(by_pkg[pkg], key=lambda r: _rank(r["id"], args.seed))[: args.per_package]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batches: list[list[dict]] = [[] for _ in range(args.batches)]
    for i, r in enumerate(picked):
        diff = r["text"] if len(r["text"]) <= READ_CAP else r["text"][:READ_CAP] + "\n[... diff cut for reading]"
        batches[i % args.batches].append({"id": r["id"], "product": r["product"], "message": r["hint"],
                                          "diff": diff})
    # the overlap: the first --overlap rows of each batch are also labeled by the next labeler
    for b in range(args.batches):
        extra = batches[(b - 1) % args.batches][: args.overlap]
        write_jsonl(out / f"batch-{b + 1}.jsonl", batches[b] + extra)
    packages = sorted({r["product"] for r in picked})
    write_json(out / "candidates.json", {"rows": len(picked), "packages": packages, "seed": args.seed})
    print(f"{len(picked)} rows from {len(packages)} packages in {args.batches} batches "
          f"(+{args.overlap} overlap each) -> {out}")
    return 0


def build(args: argparse.Namespace) -> int:
    task = get_task(TASK)
    from tuneforge.tasks.commit_messages.junk import inject  # the injector training uses
    entries = {r["id"]: r for r in read_jsonl(args.entries)}
    labels: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for f in sorted(Path(args.labels).glob("labels-*.jsonl")):
        for i, row in enumerate(read_jsonl(f), 1):
            if row["id"] not in entries:
                raise SystemExit(f"{f}:{i}: id {row['id'][:16]} is not in {args.entries}")
            labels[row["id"]].append((f.stem, row))
    keys = ("type", "scope", "subject", "body", "breaking")
    agree: Counter = Counter()
    gold, bad = [], []
    for rid in sorted(labels, key=lambda r: _rank(r, args.seed)):
        votes = labels[rid]
        if len(votes) > 1:
            agree["rows"] += 1
            for k in ("type", "breaking", "scope"):
                agree[k] += votes[0][1][k] == votes[1][1][k]
        who, row = votes[0]  # the first labeler's label (files in name order)
        e = entries[rid]
        label = {k: row[k] for k in keys}
        text, junk = e["text"], []
        if _rank(rid, args.seed + ":junk") < f"{int(args.junk_share * 16**4):04x}":
            text, junk = inject(e["text"], rid)
        label["ignore"] = sorted(junk)
        try:
            task.parse_label(task.render_label(label))
        except (ValueError, KeyError) as exc:
            bad.append(f"{who}: {rid[:16]}: {str(exc).splitlines()[0]}")
            continue
        gold.append({"text": text, "hint": None, "product": e["product"], "label": label,
                     "source_file": e["source_file"], "line": e["line"], "labeled_by": who,
                     "note": row.get("note") or ""})
    if bad:
        print(f"{len(bad)} labels fail the schema:\n  " + "\n  ".join(bad), file=sys.stderr)
    write_jsonl(args.out, gold)
    types = Counter(g["label"]["type"] for g in gold)
    report = {"rows": len(gold), "with_junk": sum(bool(g["label"]["ignore"]) for g in gold),
              "types": dict(sorted(types.items())), "schema_failures": len(bad),
              "double_labeled": agree["rows"],
              "agreement": {k: round(agree[k] / agree["rows"], 3) if agree["rows"] else None
                            for k in ("type", "breaking", "scope")}}
    write_json(args.report, report)
    print(json.dumps(report, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("candidates")
    c.add_argument("--entries", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--rows", type=int, default=280)
    c.add_argument("--per-package", type=int, default=12)
    c.add_argument("--max-chars", type=int, default=8000)
    c.add_argument("--batches", type=int, default=4)
    c.add_argument("--overlap", type=int, default=10)
    c.add_argument("--seed", default="commit-gold-1")
    b = sub.add_parser("build")
    b.add_argument("--entries", required=True)
    b.add_argument("--labels", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--report", default="reports/commit-messages/gold.json")
    b.add_argument("--junk-share", type=float, default=0.25)
    b.add_argument("--seed", default="commit-gold-1")
    args = ap.parse_args(argv)
    return candidates(args) if args.cmd == "candidates" else build(args)


if __name__ == "__main__":
    sys.exit(main())
