"""make review: a queue of records for people to label, and their labels back into the
hand-label set (issue 21 item 6).

Run: python -m tuneforge.review export --task T [--n 50] [--seed 0] [--out reports/<task>/review]
     python -m tuneforge.review import --task T FILE --labeler NAME --contract VERSION
     python -m tuneforge.review agreement --task T FIRST SECOND [--out FILE]

export: the score stage's records that need a human (category needs_human_review), minus the
ones already hand-labeled and any near-duplicate of a gold entry (export's own measure and
threshold), drawn round-robin over the rule labeler's classes and, within a class, over
products (each in a seeded order), so that no one class or product fills the queue. Writes queue.jsonl (one
row per record: its text, hint, product, the rule labeler's suggestion and why it needs a
human) and label-studio.json (Label Studio's task import format, the suggestion as a prediction).

import: labeled rows (queue rows, each with a `label`) checked before anything is written:
the label must be the task's schema-valid JSON and pass its STYLE checks; the row must name a
text (a near-duplicate of a gold entry is refused); a row whose text is already hand-labeled
with the same label is a duplicate (counted, skipped), with another label a conflict (refused).
Any bad row stops the import with every problem named by file and line; nothing is written.
Otherwise the new rows (with `labeler` and `contract`) are appended to the task's hand-label
file (params.yaml tasks.<task>.human_labels) in one atomic write that keeps every existing row
byte for byte; in = added + duplicates is checked.

agreement: two labelers' files (JSONL rows with `id` and `label`) over the rows both labeled
(the blind double-labeled share): Cohen's kappa and raw agreement on the task's two label
fields (changelog: kind and severity), and every row they disagree on.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

from tuneforge import config
from tuneforge.cli import ArgumentParser, UserError, decode_utf8, read_input, run
from tuneforge.dataset_sql import round_robin_draw
from tuneforge.decontam import GoldCheck
from tuneforge.io import atomic_path, read_jsonl, write_json, write_jsonl
from tuneforge.names import TaskPaths
from tuneforge.tasks import Task, get_task
from tuneforge.text import content_key

log = logging.getLogger("review")

QUEUE_FIELDS = ("id", "text", "hint", "product", "version", "source_file", "line", "format")
CONTRACT = re.compile(r"^v\d+(\.\d+)?$")  # the contract's own version names (v1 ... v6)


def gold_check(params, name: str) -> GoldCheck:
    """The task's gold entries, checked with export's own near-duplicate measure and threshold."""
    gold = [row["text"] for row in read_jsonl(params.tasks[name].gold)]
    return GoldCheck(gold, params.export.near_dup_threshold, params.export.near_dup_min_contained_words)


def draw(records: list[dict], n: int, seed: int, class_field: str) -> list[dict]:
    """Up to n records, round-robin over the rule labeler's classes, and within a class
    round-robin over products, so that neither the commonest class nor the largest product
    fills the queue. Orders come from sha256(seed, key): the same queue for the same inputs.
    The draw is a DuckDB query (tuneforge.dataset_sql.round_robin_draw)."""
    rows = [(r["id"], str(r["label"].get(class_field)), r.get("product") or "") for r in records]
    return [records[i] for i in round_robin_draw(rows, n, seed)]


def export(task: Task, params, paths: TaskPaths, n: int, seed: int, out: Path) -> dict:
    labeled = {content_key(r["text"]) for r in read_jsonl(params.tasks[task.name].human_labels)}
    gold = gold_check(params, task.name)
    pending, skipped = [], {"already_labeled": 0, "near_gold": 0}
    for r in read_jsonl(paths.scored):
        if r["category"] != "needs_human_review":
            continue
        if content_key(r["text"]) in labeled:
            skipped["already_labeled"] += 1
        elif gold.why_not(r["text"]):
            skipped["near_gold"] += 1
        else:
            pending.append(r)
    queue = draw(pending, n, seed, task.class_field)
    rows = [{**{k: r.get(k, (r.get("provenance") or {}).get(k)) for k in QUEUE_FIELDS},
             "suggested": r["label"], "rule": r.get("rule"),
             "reasons": r.get("reasons", [])} for r in queue]
    write_jsonl(out / "queue.jsonl", rows)
    write_json(out / "label-studio.json", [
        {"data": {"record_id": r["id"], "text": r["text"], "hint": r["hint"], "product": r["product"]},
         "predictions": [{"model_version": "rules", "result": [
             {"from_name": "label", "to_name": "text", "type": "textarea",
              "value": {"text": [task.render_label(r["suggested"])]}}]}]} for r in rows])
    return {"needs_review": len(pending) + sum(skipped.values()), **skipped, "queued": len(rows)}


def check_rows(task: Task, name: str, text: str, existing: dict[str, dict], gold: GoldCheck
               ) -> tuple[list[dict], int]:
    """The rows to add and the duplicates skipped; a UserError naming every bad line."""
    errors, new, dups, seen = [], [], 0, {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            errors.append(f"{name}:{i}: not JSON ({e})")
            continue
        entry, label = row.get("text"), row.get("label")
        if not isinstance(entry, str) or not entry.strip():
            errors.append(f"{name}:{i}: no 'text' (the entry that was labeled)")
            continue
        if not isinstance(label, dict):
            errors.append(f"{name}:{i}: no 'label' object")
            continue
        try:
            parsed = task.parse_label(json.dumps(label)).model_dump(mode="json")
        except ValueError as e:
            errors.append(f"{name}:{i}: label is not the task's schema: {str(e).splitlines()[0]}")
            continue
        style = task.style_problems(parsed, entry, row.get("hint"))
        if style:
            errors.append(f"{name}:{i}: label fails STYLE: {', '.join(style)}")
            continue
        if why := gold.why_not(entry):
            errors.append(f"{name}:{i}: text {why}; gold never becomes training data")
            continue
        key = content_key(entry)
        before = existing.get(key) or seen.get(key)
        if before is not None:
            if before["label"] == parsed:
                dups += 1
                continue
            errors.append(f"{name}:{i}: text already labeled differently ({json.dumps(before['label'])}); "
                          "resolve the two labels by hand")
            continue
        seen[key] = {**row, "label": parsed}
        new.append(seen[key])
    if errors:
        raise UserError(f"{len(errors)} bad rows, nothing imported:\n" + "\n".join(errors))
    return new, dups


def import_labels(task: Task, params, name: str, text: str, labeler: str, contract: str,
                  dry_run: bool = False) -> dict:
    """Check every row (check_rows) and append the new ones to the task's hand-label file.
    dry_run: the same checks and counts, nothing written (a labeler checks a file as it goes)."""
    target = Path(params.tasks[task.name].human_labels)
    old_text = target.read_text(encoding="utf-8") if target.exists() else ""
    existing = {content_key(r["text"]): r for r in read_jsonl(target)} if target.exists() else {}
    new, dups = check_rows(task, name, text, existing, gold_check(params, task.name))
    rows_in = sum(1 for line in text.splitlines() if line.strip())
    if rows_in != len(new) + dups:  # every row is added or a counted duplicate, none dropped
        raise AssertionError(f"{name}: {rows_in} rows in, {len(new)} added + {dups} duplicates")
    if dry_run:
        return {"rows": rows_in, "added": 0, "would_add": len(new), "duplicates": dups, "file": str(target)}
    keep = ("id", *QUEUE_FIELDS[1:], "label", "note")
    lines = [json.dumps({**{k: r.get(k) for k in keep if k in r}, "label": r["label"], "labeler": labeler,
                         "contract": contract}, ensure_ascii=False) for r in new]
    if lines:
        sep = "" if not old_text or old_text.endswith("\n") else "\n"
        with atomic_path(target) as tmp:
            tmp.write_text(old_text + sep + "\n".join(lines) + "\n", encoding="utf-8")
    return {"rows": rows_in, "added": len(new), "duplicates": dups, "file": str(target)}


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two raters over the same items: (observed - chance agreement) / (1 -
    chance), chance from each rater's own class shares. Written here rather than taking
    scikit-learn (cohen_kappa_score) for this one formula. None when chance agreement is 1
    (both raters gave one and the same class to every item: kappa is undefined)."""
    if len(first) != len(second) or not first:
        raise ValueError(f"kappa needs two equal, non-empty rating lists (got {len(first)} and {len(second)})")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    shares_1, shares_2 = Counter(first), Counter(second)
    chance = sum(shares_1[c] * shares_2[c] for c in shares_1) / (n * n)
    return None if chance == 1 else round((observed - chance) / (1 - chance), 4)


def agreement(task: Task, first: list[dict], second: list[dict]) -> dict:
    """Kappa and raw agreement per label field over the ids both files label."""
    one = {r["id"]: r["label"] for r in first}
    two = {r["id"]: r["label"] for r in second}
    both = sorted(one.keys() & two.keys())
    if not both:
        raise UserError("the two files share no labeled id: nothing to compare")
    out: dict = {"rows": len(both), "fields": {}}
    for field in task.fields:
        a, b = [str(one[i][field]) for i in both], [str(two[i][field]) for i in both]
        out["fields"][field] = {"kappa": cohen_kappa(a, b),
                                "agreement": round(sum(x == y for x, y in zip(a, b, strict=True)) / len(both), 4)}
    out["disagreements"] = [{"id": i, **{f: [one[i][f], two[i][f]] for f in task.fields}}
                            for i in both if any(one[i][f] != two[i][f] for f in task.fields)]
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    ap = ArgumentParser(prog="python -m tuneforge.review", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write a review queue")
    ex.add_argument("--n", type=int, default=50)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--out", help="queue directory (default reports/<task>/review)")
    im = sub.add_parser("import", help="add labeled rows to the task's hand-label file")
    im.add_argument("file", help="labeled JSONL (queue rows, each with a 'label')")
    im.add_argument("--labeler", required=True, help="who labeled them (a name or a model id)")
    im.add_argument("--contract", required=True, help="the contract version they were labeled under (e.g. v6)")
    im.add_argument("--dry-run", action="store_true",
                    help="check every row and say what would be added; write nothing")
    ag = sub.add_parser("agreement", help="Cohen's kappa of two labelers over the rows both labeled")
    ag.add_argument("first", help="one labeler's JSONL (rows with id and label)")
    ag.add_argument("second", help="the other's")
    ag.add_argument("--out", help="write the figures as JSON here too")
    for p in (ex, im, ag):
        p.add_argument("--task", help="a key of params.yaml's tasks (default: the only one listed)")
        p.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params, name = config.for_command(args.params, args.task)
    task, paths = get_task(name), TaskPaths(name)
    if args.cmd == "export":
        out = Path(args.out) if args.out else paths.reports / "review"
        counts = export(task, params, paths, args.n, args.seed, out)
        log.info("%s: %d records need review (%d already labeled, %d near gold); %d queued in %s", name,
                 counts["needs_review"], counts["already_labeled"], counts["near_gold"], counts["queued"], out)
        return 0
    if args.cmd == "agreement":
        rows = [list(read_jsonl(Path(f))) for f in (args.first, args.second)]
        result = agreement(task, *rows)
        if args.out:
            write_json(Path(args.out), result)
        print(json.dumps({k: v for k, v in result.items() if k != "disagreements"}))
        return 0
    if not CONTRACT.match(args.contract):
        ap.error(f"--contract {args.contract}: expected a contract version such as v6")
    text = decode_utf8(read_input(args.file, "labeled file"), args.file)
    counts = import_labels(task, params, args.file, text, args.labeler, args.contract, args.dry_run)
    if args.dry_run:
        log.info("%s: %d rows, all valid: %d would be added, %d duplicates (dry run: nothing written to %s)",
                 args.file, counts["rows"], counts["would_add"], counts["duplicates"], counts["file"])
        return 0
    log.info("%s: %d rows, %d added, %d duplicates skipped -> %s", args.file, counts["rows"], counts["added"],
             counts["duplicates"], counts["file"])
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.review"))
