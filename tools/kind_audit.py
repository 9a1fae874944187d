"""How often the rule labels training reads are right, kind by kind: a blind audit.

The default build trains mostly on the rule labeler's accepted labels (score's `accepted`
records with label source `rules`). This draws a fixed number of them per kind the labeler gave
(`draw`), for annotators who label each entry from the contract and never see the labeler's
answer; `report` then counts, per kind, how often the annotator's kind is the labeler's (the
labeler's precision for that kind, with a Wilson 95% interval), and weights the kinds by their
share of the accepted rule labels (distinct texts) for the share of all of them that is right.
A blind 10% labeled twice gives the annotators' own agreement (Cohen's kappa), the ceiling any
such figure can be read against.

Run: python -m tools.kind_audit draw --n 80 --seed 31 [--kinds breaking,deprecation] --out FILE
     python -m tools.kind_audit report SAMPLE LABELED [--first F --second S] [--out REPORT]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from tuneforge import config
from tuneforge.io import read_jsonl, write_json, write_jsonl
from tuneforge.metrics import wilson_ci95
from tuneforge.names import TaskPaths
from tuneforge.review import agreement, gold_check
from tuneforge.tasks import get_task
from tuneforge.text import content_key

TASK = "changelog-actions"
FIELDS = ("id", "text", "hint", "product", "version", "source_file", "line", "format")


def accepted_rule_records(scored: Path) -> list[dict]:
    """score's accepted records labeled by the rules, one per distinct text (first seen)."""
    seen: set[str] = set()
    out = []
    for r in read_jsonl(scored):
        if r["category"] == "accepted" and r.get("label_source") == "rules" and r["text"] not in seen:
            seen.add(r["text"])
            out.append(r)
    return out


def draw(records: list[dict], n: int, seed: int, exclude: set[str], gold,
         kinds: set[str] | None = None) -> list[dict]:
    """Up to n records per labeler kind (only `kinds`, when given), in a seeded order (sha256 of
    seed and id), skipping texts already hand-labeled (`exclude`: content keys) and gold
    near-duplicates (import refuses them)."""
    by_kind: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest()):
        if kinds is not None and r["label"]["kind"] not in kinds:
            continue
        rows = by_kind.setdefault(r["label"]["kind"], [])
        if len(rows) < n and content_key(r["text"]) not in exclude and not gold.why_not(r["text"]):
            rows.append(r)
    return [{**{f: r.get(f) for f in FIELDS}, "labeler_kind": r["label"]["kind"], "rule": r.get("rule")}
            for kind in sorted(by_kind) for r in by_kind[kind]]


def report(sample: list[dict], labeled: dict[str, dict], population: Counter,
           double: tuple[list[dict], list[dict]] | None = None) -> dict:
    """Per labeler kind: rows, how many the annotators gave the same kind, the precision and its
    interval, and what they said instead; `overall`: the kinds weighted by population share.
    `double`: the blind rows labeled twice (rows with id and label), compared by review's own
    agreement."""
    missing = [s["id"] for s in sample if s["id"] not in labeled]
    if missing:
        raise ValueError(f"{len(missing)} sampled rows have no annotator label, first {missing[0]}")
    kinds: dict = {}
    for kind in sorted({s["labeler_kind"] for s in sample}):
        rows = [s for s in sample if s["labeler_kind"] == kind]
        said = Counter(labeled[s["id"]]["kind"] for s in rows)
        right = said[kind]
        low, high = wilson_ci95(right, len(rows))
        kinds[kind] = {"rows": len(rows), "right": right, "precision": round(right / len(rows), 4),
                       "ci95": [round(low, 4), round(high, 4)],
                       "annotators_said": dict(sorted(said.items(), key=lambda kv: (-kv[1], kv[0])))}
    total = sum(population[k] for k in kinds)
    overall = sum(population[k] / total * kinds[k]["precision"] for k in kinds)
    out = {"population": dict(sorted(population.items())), "kinds": kinds,
           "overall_precision_weighted": round(overall, 4), "rows": len(sample)}
    if double:
        both = agreement(get_task(TASK), *double)
        kind = both["fields"]["kind"]
        out["double_labeled"] = {"rows": both["rows"], "kind_kappa": kind["kappa"], "kind_agreement": kind["agreement"]}
    return out


def _labels(path: str) -> dict[str, dict]:
    return {r["id"]: r["label"] for r in read_jsonl(path)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.kind_audit", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("draw")
    d.add_argument("--n", type=int, default=80, help="rows per labeler kind")
    d.add_argument("--seed", type=int, default=31)
    d.add_argument("--kinds", help="only these labeler kinds, comma-separated (default: every kind)")
    d.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("sample")
    r.add_argument("labeled", help="the annotators' labels (JSONL rows with id and label), one per sampled row")
    r.add_argument("--first", help="the blind double-labeled rows, first annotator")
    r.add_argument("--second", help="... second annotator")
    r.add_argument("--out", default=f"reports/{TASK}/by-hand/s31-kind-audit.json")
    args = ap.parse_args(argv)
    params = config.load()
    scored = TaskPaths.for_task(TASK).scored
    records = accepted_rule_records(scored)
    if args.cmd == "draw":
        exclude = {content_key(row["text"]) for row in read_jsonl(params.tasks[TASK].human_labels)}
        kinds = set(args.kinds.split(",")) if args.kinds else None
        sample = draw(records, args.n, args.seed, exclude, gold_check(params, TASK), kinds)
        write_jsonl(args.out, sample)
        print(f"{len(sample)} rows: {dict(Counter(s['labeler_kind'] for s in sample))} -> {args.out}")
        return 0
    population = Counter(rec["label"]["kind"] for rec in records)
    double = (list(read_jsonl(args.first)), list(read_jsonl(args.second))) if args.first and args.second else None
    out = report(list(read_jsonl(args.sample)), _labels(args.labeled), population, double)
    write_json(args.out, out)
    precision = {k: v["precision"] for k, v in out["kinds"].items()}
    print(json.dumps(precision), "overall", out["overall_precision_weighted"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
