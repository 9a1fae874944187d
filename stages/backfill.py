"""backfill: release-note files -> one redacted, deduplicated entry per change.

Run: python -m stages.backfill
In:  paths.snapshot (a tar.gz made by `make harvest`, or a directory of changelogs)
Out: paths.entries (RawEntry JSONL), <quarantine_dir>/backfill.jsonl, <receipts_dir>/backfill.json

Accounting: every parsed entry and every file no parser reads is one record in;
each ends as an entry, a quarantine row (with a reason code) or a duplicate.
"""
from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from tuneforge.harvest import iter_snapshot
from tuneforge.io import load_params, write_jsonl
from tuneforge.receipts import Receipt
from tuneforge.records import QuarantineReason, QuarantineRecord, RawEntry
from tuneforge.redact import redact
from tuneforge.sources import UnknownFormatError, detect_format, product_from_path
from tuneforge.text import content_key, normalise_ws

log = logging.getLogger("backfill")


def quarantine(source: str, line: int | None, reason: QuarantineReason, detail: str,
               text: str = "") -> QuarantineRecord:
    return QuarantineRecord(id=content_key(f"{source}:{line}:{text}"), stage="backfill",
                            reason=reason, detail=detail, source_file=source, line=line)


def read_file(name: str, raw: bytes, cfg: dict, seen: set[str], counts: Counter,
              entries: list[RawEntry], dropped: list[QuarantineRecord]) -> None:
    """Parse one file; append its entries and quarantine rows; count everything."""
    if len(raw) > cfg["max_file_mb"] << 20:
        counts["in"] += 1
        dropped.append(quarantine(name, None, QuarantineReason.unreadable_file,
                                  f"{len(raw)} bytes is over backfill.max_file_mb"))
        return
    # surrogateescape keeps invalid bytes visible per entry instead of failing the file.
    text = raw.decode("utf-8", errors="surrogateescape").replace("\r\n", "\n").replace("\r", "\n")
    try:
        fmt = detect_format(name, text)
    except UnknownFormatError as e:
        counts["in"] += 1
        dropped.append(quarantine(name, None, QuarantineReason.unknown_format, str(e)))
        return
    product = product_from_path(name)
    for parsed in fmt.parse(name, text):
        counts["in"] += 1
        body = normalise_ws(parsed.text)
        where = f"{name}:{parsed.line}"
        if any("\udc80" <= ch <= "\udcff" for ch in body):
            dropped.append(quarantine(name, parsed.line, QuarantineReason.invalid_utf8,
                                      f"{where}: entry holds bytes that are not UTF-8", body))
            continue
        if not body:
            dropped.append(quarantine(name, parsed.line, QuarantineReason.empty_entry,
                                      f"{where}: entry is empty"))
            continue
        if len(body) < cfg["min_chars"]:
            dropped.append(quarantine(name, parsed.line, QuarantineReason.entry_too_short,
                                      f"{where}: {len(body)} chars < backfill.min_chars", body))
            continue
        if len(body) > cfg["max_chars"]:
            dropped.append(quarantine(name, parsed.line, QuarantineReason.entry_too_long,
                                      f"{where}: {len(body)} chars > backfill.max_chars", body))
            continue
        body, found = redact(body)
        hint = redact(parsed.hint)[0] if parsed.hint else None
        counts.update({f"redacted_{k}": v for k, v in found.items()})
        key = content_key(body)
        if key in seen:
            counts["deduplicated"] += 1
            continue
        seen.add(key)
        entries.append(RawEntry(id=key, text=body, hint=hint, product=product,
                                version=parsed.version, source_file=name, line=parsed.line,
                                format=fmt.name, redactions=sum(found.values())))
        counts[f"format_{fmt.name}"] += 1


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = load_params()
    cfg, paths = params["backfill"], params["paths"]
    receipt = Receipt("backfill", {"backfill": cfg, "snapshot": paths["snapshot"]})
    receipt.inputs.append(paths["snapshot"])

    seen: set[str] = set()
    counts: Counter = Counter()
    entries: list[RawEntry] = []
    dropped: list[QuarantineRecord] = []

    def unreadable(name: str, error: Exception) -> None:  # a corrupt .gz file: one record
        counts["in"] += 1
        dropped.append(quarantine(name, None, QuarantineReason.unreadable_file, str(error)))

    for name, raw in tqdm(iter_snapshot(paths["snapshot"], on_error=unreadable), desc="backfill",
                          unit="file", disable=None):
        read_file(name, raw, cfg, seen, counts, entries, dropped)

    quarantine_path = Path(paths["quarantine_dir"]) / "backfill.jsonl"
    write_jsonl(paths["entries"], entries)
    write_jsonl(quarantine_path, dropped)
    receipt.outputs += [paths["entries"], quarantine_path]
    redacted = sum(v for k, v in counts.items() if k.startswith("redacted_"))
    extra = {k: v for k, v in counts.items() if k.startswith(("redacted_", "format_"))}
    extra["redactions"] = redacted
    receipt.finish(Path(paths["receipts_dir"]) / "backfill.json", records_in=counts["in"],
                   records_out=len(entries), quarantined=len(dropped),
                   deduplicated=counts["deduplicated"], extra=extra)
    log.info("%d entries, %d quarantined, %d duplicates, %d secrets redacted",
             len(entries), len(dropped), counts["deduplicated"], redacted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
