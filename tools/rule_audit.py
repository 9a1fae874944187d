"""How often the rule labeler's rule-2 `breaking` is right: a blind, double-labeled audit.

The sample (data/labeled/double-labeled/s30-rule2-sample.jsonl) is records the rule labeler
called breaking by rule 2, drawn in two strata: entries that lead with the removal or rename
("Remove ...", "Rename ...") and the rest. Two annotators per batch labeled each one from the
contract, never seeing the labeler's answer (s30-rule2-<batch>-first/second.jsonl). On the
rows where they agree on kind, this counts how many they call breaking per stratum, and
weights the strata by their share of
the population now (every rule-2 breaking record of score's output, distinct texts), so the
estimate is for the labeler's breaking labels as a whole. It also asks the labeler as it is
now about every sampled row, so a change to the rules shows here as its agreement moving.

Run: python -m tools.rule_audit [--out reports/changelog-actions/by-hand/s30-rule2-audit.json]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from tuneforge.io import read_jsonl, write_json
from tuneforge.metrics import wilson_ci95
from tuneforge.names import TaskPaths
from tuneforge.review import cohen_kappa
from tuneforge.tasks.changelog_actions.kinds import rule_kind

TASK = "changelog-actions"
DIR = Path("data/labeled/double-labeled")
# the stratum the sample was drawn by: the entry (after an "area: " or "#123: " prefix) leads
# with the removal or rename itself
LEADING = re.compile(r"^(?:\S+: |\*\*\S+\*\*: |#\d+: )?(remove|drop|rename|delete)", re.I)


def stratum(text: str) -> str:
    return "leading" if LEADING.match(text) else "other"


def population(scored: Path) -> Counter:
    """Distinct texts the rule labeler calls breaking by rule 2, per stratum."""
    seen: set[str] = set()
    counts: Counter = Counter()
    for r in read_jsonl(scored):
        if (r.get("label_source") == "rules" and r["label"]["kind"] == "breaking" and r.get("rule") == 2
                and r["text"] not in seen):
            seen.add(r["text"])
            counts[stratum(r["text"])] += 1
    return counts


def audit(sample: list[dict], labels: dict[str, tuple[dict, dict]], pop: Counter) -> dict:
    out: dict = {"population": dict(pop), "batches": {}, "strata": {}}
    for batch in sorted({s["batch"] for s in sample}):
        rows = [s for s in sample if s["batch"] == batch]
        first = [labels[s["id"]][0]["kind"] for s in rows]
        second = [labels[s["id"]][1]["kind"] for s in rows]
        out["batches"][batch] = {"rows": len(rows), "kind_kappa": cohen_kappa(first, second),
                                 "consensus_rows": sum(a == b for a, b in zip(first, second, strict=True))}
    consensus = [(s, labels[s["id"]][0]["kind"]) for s in sample
                 if labels[s["id"]][0]["kind"] == labels[s["id"]][1]["kind"]]
    for name in ("leading", "other"):
        rows = [(s, k) for s, k in consensus if s["stratum"] == name]
        breaking = sum(k == "breaking" for _, k in rows)
        low, high = wilson_ci95(breaking, len(rows))
        out["strata"][name] = {"consensus_rows": len(rows), "breaking": breaking,
                               "precision": round(breaking / len(rows), 4), "ci95": [low, high],
                               "kinds": dict(Counter(k for _, k in rows).most_common())}
    total = sum(pop.values())
    out["precision_weighted"] = round(sum(pop[n] / total * out["strata"][n]["precision"] for n in out["strata"]), 4)
    now = [(rule_kind(s["text"], s["hint"])[0].value, k) for s, k in consensus]
    out["labeler_now"] = {"consensus_rows": len(now), "agrees": sum(a == b for a, b in now),
                          "still_breaking": sum(a == "breaking" for a, _ in now)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.rule_audit", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=f"reports/{TASK}/by-hand/s30-rule2-audit.json")
    args = ap.parse_args(argv)
    sample = list(read_jsonl(DIR / "s30-rule2-sample.jsonl"))
    labels: dict[str, tuple[dict, dict]] = {}
    for batch in sorted({s["batch"] for s in sample}):
        one, two = ({r["id"]: r["label"] for r in read_jsonl(DIR / f"s30-rule2-{batch}-{side}.jsonl")}
                    for side in ("first", "second"))
        labels.update({i: (one[i], two[i]) for i in one})
    missing = [s["id"] for s in sample if s["id"] not in labels]
    if missing:
        raise SystemExit(f"rule_audit: {len(missing)} sampled rows have no labels (first: {missing[0]})")
    result = audit(sample, labels, population(TaskPaths.for_task(TASK).scored))
    write_json(Path(args.out), result)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
