"""The inputs of the replay experiment (issue 22 item 5): the rows a task's step budget reads
that carry the rule labeler's label, as replay inputs (JSONL: text, hint, product).

Run: python -m tools.replay_sample --task T [--out FILE]

train reads the first train.max_steps x batch rows of balanced_order over the SFT export
(hand-labeled rows first within each kind); the rule-labeled ones among them are where a
replay answer would change what the next model reads. Synthetic rows (unknown augmentation)
have no record to label and are left out; each input is the scored record's own text, hint
and product (not the prompt's randomised hint)."""
from __future__ import annotations

import argparse
import json
import sys

from tuneforge import config
from tuneforge.io import read_jsonl
from tuneforge.llm import balanced_order
from tuneforge.names import TaskPaths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.replay_sample", description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--out", default="-")
    args = ap.parse_args(argv)
    params, name = config.for_command(config.PARAMS, args.task)
    paths, train = TaskPaths(name), params.train
    rows = list(read_jsonl(paths.exports_dir / "sft" / "train.jsonl"))
    prefer = (lambda r: r.get("label_source") == "human") if train.prefer_human_labels else None
    planned = train.max_steps * train.batch_size * train.grad_accum
    read = balanced_order(rows, train.kind_balance, planned, prefer=prefer)[:planned]
    scored = {r["id"]: r for r in read_jsonl(paths.scored)}
    picked = [scored[r["id"]] for r in read if r.get("label_source") == "rules" and r["id"] in scored]
    lines = [json.dumps({"text": r["text"], "hint": r["hint"], "product": r["product"]}, ensure_ascii=False)
             for r in picked]
    out = "\n".join(lines) + "\n" if lines else ""
    if args.out == "-":
        sys.stdout.write(out)
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(out)
    print(f"{len(picked)} rule-labeled rows of {len(read)} read", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
