"""export: scored records -> SFT, RAG and preference datasets, gold kept out.

Run: python -m stages.export
In:  paths.scored, paths.gold, params.export
Out: <exports_dir>/sft/{train,valid}.jsonl (chat `messages`, accepted only),
     paths.leakage (each gold entry's nearest SFT row; removed rows by reason),
     <exports_dir>/rag/rag.jsonl (accepted + partially accepted),
     <exports_dir>/preference/pairs.jsonl (chosen vs rejected label, same entry),
     <quarantine_dir>/export.jsonl (every record not in SFT, one reason code),
     <receipts_dir>/export.json, paths.drift (vs the drift report export.drift_since's release committed;
     its commit read from RELEASES)

Dataset v2 knobs (train rows only; valid keeps real hints): export.hint_drop_rate
and export.hint_swap_rate randomise the hint so the model cannot lean on it, and
export.unknown_augment adds synthetic content-free entries labeled unknown.

The gold holdout is the eval set: a record whose normalised content hash equals a
gold entry's, or that is a near-duplicate of one (tuneforge.decontam: word edit
similarity or containment at or above export.near_dup_threshold), is never exported;
the synthetic rows pass the same filter. paths.leakage lists, for every gold entry, its
nearest SFT row and their similarity, so the margin under the threshold can be audited.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge import config
from tuneforge.batch import records_in_memory
from tuneforge.dataset_sql import GoldSets, stratified_split
from tuneforge.decontam import GoldMatcher, Match
from tuneforge.io import atomic_path, canonical_json, read_jsonl, read_models, write_json
from tuneforge.receipts import Receipt, drift_report, scored_distributions
from tuneforge.records import (
    LabelSource,
    PreferencePair,
    Provenance,
    QuarantineReason,
    QuarantineRecord,
    RagSample,
    ScoreCategory,
    ScoredRecord,
    SftSample,
)
from tuneforge.releases import read_at
from tuneforge.schema_check import SchemaCheck
from tuneforge.tasks import Task, get_task
from tuneforge.text import content_key

log = logging.getLogger("export")


def seeded_unit(seed: int, *parts: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for the given keys."""
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class GoldFilter:
    """Exact (content hash) and near-duplicate (tuneforge.decontam) lookups against gold, for a
    whole batch of records at once in DuckDB (tuneforge.dataset_sql; the same answers as
    GoldMatcher text by text).

    Keeps, for every row it lets through, the gold entries it scored at least the
    report floor against: the leakage report's nearest rows come from these."""

    def __init__(self, gold_texts: list[str], cfg: dict):
        self.gold_keys = [content_key(t) for t in gold_texts]
        self.threshold = cfg["near_dup_threshold"]
        self.matcher = GoldMatcher(gold_texts, min(cfg["leakage_report_floor"], self.threshold),
                                   cfg["near_dup_min_contained_words"])
        self.sets = GoldSets(self.matcher, self.gold_keys)
        self.kept: dict[str, list[Match]] = {}

    def overlaps(self, records: list[ScoredRecord]) -> list[tuple[str, str] | None]:
        """For each record None, or (reason, detail) when it must not be exported."""
        texts = [rec.text for rec in records]
        out: list[tuple[str, str] | None] = []
        for rec, (exact, found) in zip(records, self.sets.check(texts), strict=True):
            if exact is not None:
                out.append(("exact", "exact match of a gold holdout entry"))
            elif found and found[0].score >= self.threshold:
                best = found[0]
                out.append((f"near_{best.how}", f"near match ({best.how} {best.score:.3f} >= {self.threshold}) "
                            f"of gold holdout entry {self.gold_keys[best.gold][:16]}"))
            else:
                self.kept[rec.id] = found
                out.append(None)
        return out


def leakage_report(gold_texts: list[str], gold: GoldFilter, sft: dict[str, list[ScoredRecord]],
                   removed: Counter) -> dict:
    """For every gold entry, its nearest SFT row (train or valid) and their similarity."""
    nearest: dict[int, tuple[Match, ScoredRecord, str]] = {}
    for split in sorted(sft):
        for rec in sorted(sft[split], key=lambda r: r.id):
            for m in gold.kept.get(rec.id, ()):
                if m.gold not in nearest or m.score > nearest[m.gold][0].score:
                    nearest[m.gold] = (m, rec, split)
    rows = []
    for i, text in enumerate(gold_texts):
        row: dict = {"gold_sha256": gold.gold_keys[i], "text": text[:120], "nearest": None}
        if i in nearest:
            m, rec, split = nearest[i]
            row["nearest"] = {"id": rec.id, "split": split, "text": rec.text[:120],
                              "similarity": round(m.score, 4), "how": m.how}
        else:  # finding the exact nearest under the floor costs a comparison with every row
            row["note"] = f"no SFT row scores {gold.matcher.floor} or more against it"
        rows.append(row)
    rows.sort(key=lambda r: (-(r["nearest"] or {}).get("similarity", 0.0), r["gold_sha256"]))
    kept = [r["nearest"]["similarity"] for r in rows if r["nearest"]]
    summary = {
        "gold": len(gold_texts), "sft_rows": sum(len(v) for v in sft.values()),
        "threshold": gold.threshold, "floor": gold.matcher.floor,
        "min_contained_words": gold.matcher.min_contained,
        "max_kept_similarity": max(kept, default=0.0),
        "margin": round(gold.threshold - max(kept, default=0.0), 4),
        "gold_with_nearest_at_or_above_floor": len(kept),
        "removed": {k: removed.get(k, 0) for k in ("exact", "near_edit", "near_contained", "synthetic")
                    + (("package",) if "package" in removed else ())},
    }
    return {"summary": summary, "gold": rows}


def sft_sample(task: Task, rec: ScoredRecord, split: str, hint: str | None) -> SftSample:
    messages = task.messages(rec.text, hint, rec.product)
    messages.append({"role": "assistant", "content": task.render_label(rec.label)})
    return SftSample(id=rec.id, messages=messages, kind=task.label_class(rec.label),
                     product=rec.product, hint_shown=hint is not None, split=split,
                     label_source=rec.label_source or LabelSource.rules)


def randomised_hint(rec: ScoredRecord, hints: list[str], cfg: dict) -> str | None:
    """Drop the hint, or swap in another row's, for the configured shares of train rows."""
    u = seeded_unit(cfg["seed"], "hint", rec.id)
    if u < cfg["hint_drop_rate"]:
        return None
    if u < cfg["hint_drop_rate"] + cfg["hint_swap_rate"] and hints:
        return hints[int(seeded_unit(cfg["seed"], "swap", rec.id) * len(hints))]
    return rec.hint


def unknown_augmentation(task: Task, products: list[str], n: int, seed: int) -> list[ScoredRecord]:
    """n synthetic content-free entries, spread over real products, each labeled by the
    task's rule labeler (the abstain class: nothing to act on)."""
    texts = task.content_free_examples()
    out = []
    for i in range(n if products else 0):
        text = texts[int(seeded_unit(seed, "aug-text", str(i)) * len(texts))]
        product = products[int(seeded_unit(seed, "aug-product", str(i)) * len(products))]
        label, rule = task.rule_label(text, None, product, None)
        rid = hashlib.sha256(f"augment:{i}:{product}:{text}".encode()).hexdigest()
        out.append(ScoredRecord(
            id=rid, task=task.name, text=text, hint=None, product=product, version=None,
            format="synthetic", provenance=Provenance(source_file="(unknown_augment)", line=1,
                                                      sig_hash=rid),
            category=ScoreCategory.accepted, reasons=[], label=label,
            label_source=LabelSource.rules, rule=rule, alternatives=[], scorer_version="augment"))
    return out


def held_out_products(gold_rows: list[dict], task: Task, seed: int, share: float) -> set[str]:
    products = {row.get("product") for row in gold_rows} - {None}
    if task.holdout_by_product:
        return products
    return {p for p in products if seeded_unit(seed, "heldout", p) < share}


def split_strata(records: list[ScoredRecord], task: Task, seed: int,
                 valid_fraction: float) -> tuple[list[ScoredRecord], list[ScoredRecord]]:
    """Seeded split, stratified by (kind, product): each stratum gives its share to valid.
    A task split by product (Task.holdout_by_product) gives valid whole products instead."""
    if task.holdout_by_product:
        return split_products(records, seed, valid_fraction)
    train, valid = stratified_split([(r.id, task.label_class(r.label), r.product) for r in records],
                                    seed, valid_fraction)  # in DuckDB (tuneforge.dataset_sql)
    return [records[i] for i in train], [records[i] for i in valid]


def split_products(records: list[ScoredRecord], seed: int,
                   valid_fraction: float) -> tuple[list[ScoredRecord], list[ScoredRecord]]:
    """Whole products to valid, in seeded order, each that still fits under valid_fraction of
    the rows (a big product is skipped, not allowed to overshoot the share). A greedy walk in
    draw order, each step depending on the last: plain Python, not a set operation."""
    by_product: dict[str, list[ScoredRecord]] = defaultdict(list)
    for rec in records:
        by_product[rec.product].append(rec)
    target, valid_products, n = round(len(records) * valid_fraction), set(), 0
    for product in sorted(by_product, key=lambda p: seeded_unit(seed, "split-product", p)):
        if n + len(by_product[product]) <= target:
            valid_products.add(product)
            n += len(by_product[product])
    order = lambda r: seeded_unit(seed, "order", r.id)  # noqa: E731 - shuffled, reproducible
    return (sorted((r for r in records if r.product not in valid_products), key=order),
            sorted((r for r in records if r.product in valid_products), key=order))


def preference_pair(task: Task, rec: ScoredRecord) -> PreferencePair | None:
    """Chosen = the accepted label; rejected = a differing candidate, else the label the
    section hint alone would give (the keyword-anchoring mistake), when it differs."""
    chosen_text = task.render_label(rec.label)
    prompt = task.messages(rec.text, rec.hint, rec.product)
    for alt in rec.alternatives:
        if alt.label is not None:
            try:
                rejected_text = task.render_label(alt.label)
            except KeyError:  # an invalid label is still a fine negative
                rejected_text = json.dumps(alt.label, ensure_ascii=False, sort_keys=True)
            if rejected_text != chosen_text:
                return PreferencePair(id=rec.id, prompt=prompt, chosen=chosen_text,
                                      rejected=rejected_text, chosen_source=rec.label_source,
                                      rejected_source=alt.source.value,
                                      rejected_reasons=["label_sources_disagree"])
    hinted = task.hint_class(rec.hint)
    if hinted is not None and hinted != task.label_class(rec.label):
        anchored = task.with_class(rec.label, hinted)
        return PreferencePair(id=rec.id, prompt=prompt, chosen=chosen_text,
                              rejected=task.render_label(anchored), chosen_source=rec.label_source,
                              rejected_source="hint_anchored", rejected_reasons=["hint_anchored"])
    return None


def drift_baseline(rev: str | None, path: Path) -> tuple[dict[str, Any] | None, str]:
    """The distributions the drift report committed at `rev` (export.drift_since) holds as its
    `current`, and where they came from. Reading a release's committed report (not whatever the
    last run left in the work tree) makes the drift a function of the inputs: a rerun with the
    same data writes the same report. A release is read at the commit RELEASES records, not
    through a git tag this clone may lack. No revision, no repository or no report there: no
    baseline, and why."""
    if rev is None:
        return None, "none (export.drift_since is null)"
    text, since = read_at(rev, path)
    return (None if text is None else json.loads(text).get("current")), since


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("export", argv)
    cfg, paths, task = params.section("export"), params.paths, get_task(params.task_name)
    params.check_toolchain(["duckdb"], every=False)  # the drift report's engine
    receipt = Receipt("export", {"task": task.name, "export": cfg})
    receipt.inputs += [paths.scored, params.task.gold]

    gold_rows = list(read_jsonl(params.task.gold))
    gold_texts = [row["text"] for row in gold_rows]
    gold = GoldFilter(gold_texts, cfg)
    # products held out: none of their records reaches SFT or RAG, so eval can measure the model on
    # products it never saw. A task split by source package holds out every gold product; others a
    # seeded export.heldout_products share of them
    gold_products = held_out_products(gold_rows, task, cfg["seed"], cfg["heldout_products"])
    records = list(read_models(paths.scored, ScoredRecord))
    dropped: list[QuarantineRecord] = []
    sft_pool, rag, pairs = [], [], []

    def drop(rec: ScoredRecord, reason: QuarantineReason, detail: str) -> None:
        dropped.append(QuarantineRecord(id=rec.id, stage="export", reason=reason, detail=detail,
                                        source_file=rec.provenance.source_file,
                                        line=rec.provenance.line))

    removed: Counter = Counter()  # gold overlaps by kind, for the leakage report
    overlaps = iter(gold.overlaps([rec for rec in records if rec.product not in gold_products]))
    for rec in records:
        if rec.product in gold_products:
            removed["package"] += 1
            drop(rec, QuarantineReason.gold_overlap, f"product {rec.product} is held out: it has gold holdout rows")
            continue
        if overlap := next(overlaps):
            removed[overlap[0]] += 1
            drop(rec, QuarantineReason.gold_overlap, overlap[1])
            continue
        if rec.category in (ScoreCategory.accepted, ScoreCategory.partially_accepted):
            rag.append(RagSample(id=rec.id, text=rec.text, hint=rec.hint, product=rec.product,
                                 label=rec.label, category=rec.category.value,
                                 source_file=rec.provenance.source_file, line=rec.provenance.line))
        if rec.category is ScoreCategory.accepted:
            sft_pool.append(rec)
            # built here, for the kept records only: on forked workers (all accepted records, the
            # pairs pickled back) this took longer on 2 cores than in this process alone
            if (pair := preference_pair(task, rec)) is not None:
                pairs.append(pair)
        elif rec.category is ScoreCategory.partially_accepted:
            drop(rec, QuarantineReason.partial_not_for_sft, ",".join(rec.reasons))
        elif rec.category is ScoreCategory.needs_human_review:
            drop(rec, QuarantineReason.needs_human_review, ",".join(rec.reasons))
        else:  # score quarantines its rejects; one here means the inputs were tampered with
            drop(rec, QuarantineReason.score_rejected, ",".join(rec.reasons))

    train, valid = split_strata(sft_pool, task, cfg["seed"], cfg["valid_fraction"])
    augmented = unknown_augmentation(task, sorted({r.product for r in sft_pool}),
                                     cfg["unknown_augment"], cfg["seed"])
    kept_aug = []
    for rec, overlap in zip(augmented, gold.overlaps(augmented), strict=True):
        # synthetic rows are training rows too: same filter, same quarantine
        if overlap:
            removed["synthetic"] += 1
            drop(rec, QuarantineReason.gold_overlap, f"synthetic row: {overlap[1]}")
        else:
            kept_aug.append(rec)
    train = sorted(train + kept_aug, key=lambda r: seeded_unit(cfg["seed"], "order", r.id))
    augmented_rows = 0
    if task.augment is not None and cfg["augment_rate"] > 0:  # ground truth known by construction
        changed = task.augment(train, cfg["augment_rate"], cfg["seed"])
        augmented_rows = sum(a.id != r.id for a, r in zip(changed, train, strict=True))
        train = changed
    if task.hint_in_prompt:
        hints = sorted({r.hint for r in train if r.hint})
        shown = {"train": lambda r: randomised_hint(r, hints, cfg), "valid": lambda r: r.hint}
    else:  # the hint is the label's source (a commit's own message): no prompt shows it
        shown = {"train": lambda r: None, "valid": lambda r: None}

    def sft_row(split: str, recs: list[ScoredRecord]) -> tuple[int, Callable[[int], SftSample], type]:
        return len(recs), lambda i: sft_sample(task, recs[i], split, shown[split](recs[i])), SftSample

    def listed(rows: list, model: type) -> tuple[int, Callable[[int], Any], type]:
        return len(rows), rows.__getitem__, model

    # each row is built, checked against its generated schema (tuneforge.schema_check),
    # serialised and written in order, in this process: on forked workers (tuneforge.forkmap)
    # the rows' trip back through the pipe cost more than the second core saved (2 cores, 1M
    # resampled entries: 2.1 s for the five files against 1.7 s here)
    outputs = {
        paths.sft("train"): sft_row("train", train),
        paths.sft("valid"): sft_row("valid", valid),
        paths.rag: listed(sorted(rag, key=lambda r: r.id), RagSample),
        paths.preference: listed(sorted(pairs, key=lambda p: p.id), PreferencePair),
        paths.quarantine("export"): listed(sorted(dropped, key=lambda q: q.id), QuarantineRecord),
    }
    checks = {model: SchemaCheck(model) for _, _, model in outputs.values()}  # each built once
    for path, (n, make, model) in outputs.items():
        check = checks[model]
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for i in range(n):
                f.write(canonical_json(check.row(path, i + 1, make(i))) + "\n")
        receipt.outputs.append(path)
    leakage = leakage_report(gold_texts, gold, {"train": train, "valid": valid}, removed)
    write_json(paths.leakage, leakage)
    receipt.outputs.append(paths.leakage)

    previous, since = drift_baseline(cfg["drift_since"], paths.drift)
    if previous is None:
        log.warning("drift: no baseline: %s", since)
    report = drift_report(scored_distributions(paths.scored, (task.class_field, task.second_field)),
                          previous, cfg["drift_threshold"], since)
    write_json(paths.drift, report.model_dump(mode="json"))
    if report.flags:
        log.warning("drift: %d distribution swings over %.2f: %s", len(report.flags),
                    cfg["drift_threshold"], ", ".join(f"{f.dimension}/{f.key}" for f in report.flags[:8]))

    reasons = Counter(q.reason.value for q in dropped)
    extra = {"train": len(train), "valid": len(valid), "rag": len(rag), "preference": len(pairs),
             **{f"quarantine_{k}": v for k, v in reasons.items()},
             **{f"gold_{k}": v for k, v in sorted(removed.items())}}
    extra["unknown_augment"] = len(kept_aug)
    if task.augment is not None:
        extra["augmented"] = augmented_rows
    # synthetic rows are outputs without an input record: count them in, so the ledger balances
    receipt.finish(paths.receipt("export"),
                   records_in=len(records) + len(augmented),
                   records_out=len(train) + len(valid), quarantined=len(dropped), extra=extra)
    log.info("sft train=%d valid=%d, rag=%d, preference=%d, quarantined=%d",
             len(train), len(valid), len(rag), len(pairs), len(dropped))
    log.info("gold overlap: %s; nearest kept SFT row %.3f (threshold %.2f)",
             dict(sorted(removed.items())), leakage["summary"]["max_kept_similarity"], gold.threshold)
    return 0


if __name__ == "__main__":
    records_in_memory()  # a process of its own: no cyclic garbage collection (tuneforge.batch says why)
    sys.exit(main())
