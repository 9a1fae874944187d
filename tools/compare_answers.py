"""Two builds' answers on the same gold rows, row by row: which one gets the class field right
more often, and is the difference more than chance? (the exact sign test over the rows only one
of them gets right, tuneforge.metrics.versus: the test eval runs between a model and the rule
labeler, here between two models).

Run: python -m tools.compare_answers FIRST.jsonl SECOND.jsonl [--out FILE]
In:  two files `python -m tuneforge.evaluate --answers` wrote over the same gold file (same rows,
     same order; a row that differs stops it, naming the line)
Out: JSON on stdout (and --out): both agreements, the rows only one gets right, and the one-sided
     p of "the second is better"
"""
from __future__ import annotations

import argparse
import json
import sys

from tuneforge.io import read_jsonl, write_json
from tuneforge.metrics import versus


def compare(first: list[dict], second: list[dict]) -> dict:
    if len(first) != len(second):
        raise SystemExit(f"compare_answers: {len(first)} rows against {len(second)}: not the same gold rows")
    for line, (a, b) in enumerate(zip(first, second, strict=True), 1):
        if (a["text"], a["gold"]) != (b["text"], b["gold"]):
            raise SystemExit(f"compare_answers: line {line}: the two files hold different gold rows")
    first_hits = [a["kind"] == a["gold"]["kind"] for a in first]
    second_hits = [b["kind"] == b["gold"]["kind"] for b in second]
    # versus(model, labeler) tests "the labeler is better": the second build plays the labeler
    v = versus(first_hits, second_hits)
    return {"n": v["n"], "first": v["model"], "second": v["labeler"], "first_only": v["model_only"],
            "second_only": v["labeler_only"], "p_second_better": v["p_labeler_better"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.compare_answers", description=__doc__.split("\n")[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    result = compare(list(read_jsonl(args.first)), list(read_jsonl(args.second)))
    result.update(first_file=args.first, second_file=args.second)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
