"""How many commit-messages training labels name what the model cannot see: identifiers in a
label's subject or body that its prompt view (prompt.render_user: the paths, then whole hunks to a
budget) does not show. The scorer checks labels against the whole diff, so these pass; the model
reads only the view, so they teach it to name things it was not shown, which eval counts as
invented identifiers.

Run: python -m tools.label_view [--export FILE] [--out FILE]
In:  the task's SFT train export (default data/commit-messages/exports/sft/train.jsonl): each
     row's user turn is the view the model read, its assistant turn the label
Out: JSON (rows, rows whose subject / body / either names an identifier outside the view, and
     the first examples) on stdout or --out; a row the task cannot parse is an error naming its line

The other side, `--answers FILE` (what `python -m tuneforge.evaluate --answers` writes): each
identifier an answer names that its diff does not contain (eval's invented identifiers), beside
the most similar name its prompt view shows (difflib's ratio, stdlib). A near copy (ratio >=
NEAR) is a name the model was shown and wrote wrong (case, a dropped prefix, `/` as `_`); the
rest it made up.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

from tuneforge.io import read_jsonl, write_json
from tuneforge.names import TaskPaths
from tuneforge.tasks import get_task
from tuneforge.tasks.commit_messages.style import identifiers, not_in_diff

TASK = "commit-messages"


def outside_view(rows: list[dict]) -> dict:
    """rows: SFT export rows ({"messages": [system, user, assistant], ...})."""
    task = get_task(TASK)
    counts = {"rows": len(rows), "subject": 0, "body": 0, "either": 0}
    examples = []
    for line, row in enumerate(rows, 1):
        turns = {m["role"]: m["content"] for m in row["messages"]}
        try:
            label = task.parse_label(turns["assistant"]).model_dump(mode="json")
        except (KeyError, ValueError) as e:
            raise ValueError(f"row {line}: no parsable label ({e})") from e
        view = turns["user"]
        subject = not_in_diff(label["subject"], view)
        body = not_in_diff(label["body"] or "", view)
        counts["subject"] += bool(subject)
        counts["body"] += bool(body)
        counts["either"] += bool(subject or body)
        if (subject or body) and len(examples) < 10:
            examples.append({"line": line, "subject": label["subject"], "not_in_view": subject + body})
    return {**counts, "either_share": round(counts["either"] / len(rows), 6) if rows else 0.0,
            "examples": examples}


NEAR = 0.7  # difflib ratio from which an invented name counts as a copy of one the view shows
NAME_RE = re.compile(r"[\w./-]{3,}")  # the view's words that could be names (paths, symbols)


def invented_in_answers(rows: list[dict]) -> dict:
    """rows: `tuneforge.evaluate --answers` rows ({"answer", "text", "hint", "product"}): each
    invented identifier with the view's most similar name, and how many are near copies."""
    task = get_task(TASK)
    found = []
    answers_with = 0
    for line, row in enumerate(rows, 1):
        try:
            label = json.loads(row["answer"])
            named = f"{label['subject']}\n{label.get('body') or ''}"
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"row {line}: no parsable answer ({e})") from e
        invented = not_in_diff(named, row["text"])
        if not invented:
            continue
        answers_with += 1
        view = task.messages(row["text"], row.get("hint"), row.get("product"))[-1]["content"]
        shown = sorted(set(identifiers(view)) | set(NAME_RE.findall(view)))
        for name in invented:
            ratio, nearest = max(((difflib.SequenceMatcher(None, name, c).ratio(), c) for c in shown),
                                 default=(0.0, None))
            found.append({"line": line, "invented": name, "nearest_in_view": nearest, "ratio": round(ratio, 3)})
    near = sum(f["ratio"] >= NEAR for f in found)
    return {"answers": len(rows), "answers_with_invented": answers_with, "invented": len(found),
            "near_copies": near, "near_ratio": NEAR, "identifiers": found}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.label_view", description=__doc__.split("\n")[0])
    ap.add_argument("--export", default=str(TaskPaths(TASK).sft("train")))
    ap.add_argument("--answers", help="evaluate --answers JSONL: the invented identifiers' nearest names "
                                      "in the view, instead of the export's labels")
    ap.add_argument("--out", default="-")
    args = ap.parse_args(argv)
    if args.answers:
        report = {"answers_file": args.answers, **invented_in_answers(list(read_jsonl(args.answers)))}
    else:
        report = {"export": args.export, **outside_view(list(read_jsonl(args.export)))}
    if args.out == "-":
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        write_json(Path(args.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
