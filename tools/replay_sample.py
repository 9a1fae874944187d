"""The inputs of the replay experiment (issue 22 item 5): the rows a task's step budget reads
that carry the rule labeler's label, as replay inputs (JSONL: text, hint, product).

Run: python -m tools.replay_sample --task T [--out FILE]

train reads the first train.max_steps x batch rows of the SFT export in llm.budget_order (the
order train itself asks for: kind-balanced, hand-labeled rows first within each kind; one
process, no row over train.max_tokens, as on this machine); the rule-labeled ones among them are where a
replay answer would change what the next model reads. Synthetic rows (unknown augmentation)
have no record to label and are left out; each input is the scored record's own text, hint
and product (not the prompt's randomised hint)."""
from __future__ import annotations

import argparse
import json
import sys

from tuneforge import config
from tuneforge.io import read_jsonl
from tuneforge.llm import budget_order
from tuneforge.names import TaskPaths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.replay_sample", description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--out", default="-")
    args = ap.parse_args(argv)
    params, name = config.for_command(config.PARAMS, args.task)
    paths = TaskPaths(name)
    rows = list(read_jsonl(paths.sft("train")))
    ordered, planned = budget_order(rows, params.train.model_dump())
    read = ordered[:planned] if planned else ordered
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
