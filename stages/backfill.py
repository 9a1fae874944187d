"""backfill: release-note files -> one redacted, deduplicated entry per change.

Run: python -m stages.backfill <task>
In:  tasks.<task>.snapshot (a tar.gz made by `make harvest` / `make harvest-patches`, or a directory),
     params.backfill; the task's source formats (tuneforge.tasks.Task.source_formats)
Out: data/<task>/entries.jsonl (RawEntry JSONL), quarantine/backfill.jsonl, reports/<task>/receipts/backfill.json

Accounting: every parsed entry, every file no parser reads and every file a parser
reads without finding an entry is one record in; each ends as an entry, a quarantine
row (with a reason code) or a duplicate.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import multiprocessing
import os
import re
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator

from tqdm import tqdm

from tuneforge import config
from tuneforge.harvest import iter_snapshot
from tuneforge.io import write_jsonl
from tuneforge.receipts import Receipt
from tuneforge.records import QuarantineReason, QuarantineRecord, RawEntry
from tuneforge.redact import redact, redact_people
from tuneforge.sources import Rejected, UnknownFormatError, detect_format, product_from_path
from tuneforge.tasks import get_task
from tuneforge.text import content_key, normalise_ws

log = logging.getLogger("backfill")


def quarantine(source: str, line: int | None, reason: QuarantineReason, detail: str,
               text: str = "") -> QuarantineRecord:
    return QuarantineRecord(id=content_key(f"{source}:{line}:{text}"), stage="backfill",
                            reason=reason, detail=detail, source_file=source, line=line)


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes surrogateescape kept from invalid UTF-8


@functools.lru_cache(maxsize=1 << 16)
def redact_once(text: str, people: bool = False) -> tuple[str, tuple[tuple[str, int], ...]]:
    """redact() memoised: the same entry text recurs across packages' changelogs. `people`
    (verbatim sources: diffs and their authors' messages) also removes names with addresses."""
    body, found = redact(text)
    if people:
        body, n = redact_people(body)
        if n:
            found["person"] += n
    return body, tuple(sorted(found.items()))


@functools.lru_cache(maxsize=1 << 17)
def check_entry(text: str, min_chars: int, max_chars: int, verbatim: bool = False) -> tuple:
    """One parsed entry's fate, memoised like redact_once: ("drop", reason, detail, text)
    or ("entry", content key, redacted text, redactions found). A verbatim entry (a diff)
    keeps its whitespace: only its ends' blank lines go."""
    body = text.strip("\n") if verbatim else normalise_ws(text)
    if _NOT_UTF8.search(body):
        return ("drop", QuarantineReason.invalid_utf8, "entry holds bytes that are not UTF-8", body)
    if not body:
        return ("drop", QuarantineReason.empty_entry, "entry is empty", "")
    if len(body) < min_chars:
        return ("drop", QuarantineReason.entry_too_short,
                f"{len(body)} chars < backfill.min_chars", body)
    if len(body) > max_chars:
        return ("drop", QuarantineReason.entry_too_long,
                f"{len(body)} chars > backfill.max_chars", body)
    body, found = redact_once(body, verbatim)
    return ("entry", content_key(body), body, found)


# content key -> index of the first file this process saw it in, for the run `_SEEN_RUN`
_SEEN: dict[str, int] = {}
_SEEN_RUN = ""


def parse_file(item: tuple[int, tuple[str, bytes | None, str | None]], cfg: config.Backfill,
               run: str, formats: tuple[str, ...] = ()) -> tuple[list[tuple], int, Counter]:
    """Everything one file needs that no other file does: parse, check, redact, hash.

    Runs in a worker process. Returns the file's records in order as plain tuples (cheap
    to pickle): ("drop", line, reason, detail, text) or ("entry", key, text, hint, version,
    line, format, redactions found); then the number of entries this process already saw
    in an earlier file or earlier in this one (duplicates whatever the other processes
    saw, so not sent), and their redactions. Deduplication of the rest across files
    happens in the parent, in snapshot order.
    """
    global _SEEN_RUN
    index, (name, raw, error) = item
    if _SEEN_RUN != run:  # a new run in a reused process (tests) starts from nothing
        _SEEN.clear()
        _SEEN_RUN = run
    if raw is None:  # a corrupt .gz in a directory snapshot: one record, the file
        return [("drop", None, QuarantineReason.unreadable_file, str(error), "")], 0, Counter()
    if len(raw) > cfg.max_file_mb << 20:
        return [("drop", None, QuarantineReason.unreadable_file,
                 f"{name}: {len(raw)} bytes is over backfill.max_file_mb", "")], 0, Counter()
    # surrogateescape keeps invalid bytes visible per entry instead of failing the file.
    text = raw.decode("utf-8", errors="surrogateescape").replace("\r\n", "\n").replace("\r", "\n")
    try:
        fmt = detect_format(name, text, formats)
    except UnknownFormatError as e:
        return [("drop", None, QuarantineReason.unknown_format, str(e), "")], 0, Counter()
    out: list[tuple] = []
    seen_before, seen_redactions, n_parsed = 0, Counter(), 0
    for parsed in fmt.parse(name, text):
        n_parsed += 1
        if isinstance(parsed, Rejected):  # a unit the format knows but cannot use (a bare patch)
            out.append(("drop", parsed.line, QuarantineReason(parsed.reason),
                        f"{name}:{parsed.line}: {parsed.detail}", ""))
            continue
        fate = check_entry(parsed.text, cfg.min_chars, cfg.max_chars, fmt.verbatim)
        if fate[0] == "drop":
            _, reason, detail, body = fate
            out.append(("drop", parsed.line, reason, f"{name}:{parsed.line}: {detail}", body))
            continue
        _, key, body, found = fate
        first = _SEEN.get(key)
        if first is not None and first <= index:
            seen_before += 1
            if found:
                seen_redactions.update(dict(found))
            continue
        _SEEN[key] = index
        hint = redact_once(parsed.hint, fmt.verbatim)[0] if parsed.hint else None
        out.append(("entry", key, body, hint, parsed.version, parsed.line, fmt.name, found))
    if not n_parsed:  # one record, the file: a format was detected but nothing came of it
        return [("drop", None, QuarantineReason.no_entries,
                 f"{name}: read as {fmt.name}, but it holds no entry", "")], 0, Counter()
    return out, seen_before, seen_redactions


def snapshot_files(path: str) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(name, bytes, None) per file in snapshot order; (name, None, error) for a corrupt one.
    A generator: the snapshot is never held in memory whole."""
    errors: list[tuple[str, None, str]] = []
    for name, raw in iter_snapshot(path, on_error=lambda n, e: errors.append((n, None, str(e)))):
        yield from errors  # a corrupt file comes before the file read after it, in snapshot order
        errors.clear()
        yield name, raw, None
    yield from errors


WINDOW = 64  # files handed to the worker pool at a time


def windows(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of up to `size` items. Pool.imap reads its whole input before the
    first result comes back, so backfill gives it one window of files at a time: memory is
    bounded by a window's files and the unique entries, not by the snapshot's size."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("backfill", argv)
    cfg, paths, snapshot = params.backfill, params.paths, params.task.snapshot
    formats = get_task(params.task_name).source_formats
    receipt = Receipt("backfill", params.declared())
    receipt.inputs.append(snapshot)

    file_windows = windows(enumerate(snapshot_files(snapshot)), WINDOW)
    first = next(file_windows, [])
    workers = min(cfg.workers or os.cpu_count() or 1, max(len(first), 1))
    seen: set[str] = set()
    counts: Counter = Counter()
    entries: list[RawEntry] = []
    dropped: list[QuarantineRecord] = []
    with contextlib.ExitStack() as stack:
        work = functools.partial(parse_file, cfg=cfg, run=uuid.uuid4().hex, formats=formats)
        if workers > 1:  # imap keeps snapshot order, so the output does not depend on workers
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = (r for window in itertools.chain([first], file_windows)
                       for r in zip(window, pool.imap(work, window, chunksize=4), strict=True))
        else:
            results = ((item, work(item)) for window in itertools.chain([first], file_windows)
                       for item in window)
        for (_, (name, _, _)), (records, seen_before, seen_redactions) in tqdm(
                results, desc="backfill", unit="file", disable=None):
            counts["in"] += seen_before
            counts["deduplicated"] += seen_before
            counts.update({f"redacted_{k}": v for k, v in seen_redactions.items()})
            product = product_from_path(name)
            for kind, *rec in records:
                counts["in"] += 1
                if kind == "drop":
                    line, reason, detail, text = rec
                    dropped.append(quarantine(name, line, reason, detail, text))
                    continue
                key, text, hint, version, line, fmt, found = rec
                if found:
                    counts.update({f"redacted_{k}": v for k, v in found})
                if key in seen:
                    counts["deduplicated"] += 1
                    continue
                seen.add(key)
                entries.append(RawEntry(id=key, text=text, hint=hint, product=product,
                                        version=version, source_file=name, line=line, format=fmt,
                                        redactions=sum(n for _, n in found)))
                counts[f"format_{fmt}"] += 1

    quarantine_path = paths.quarantine("backfill")
    write_jsonl(paths.entries, entries)
    write_jsonl(quarantine_path, dropped)
    receipt.outputs += [paths.entries, quarantine_path]
    redacted = sum(v for k, v in counts.items() if k.startswith("redacted_"))
    extra = {k: v for k, v in counts.items() if k.startswith(("redacted_", "format_"))}
    extra["redactions"] = redacted
    extra.update({f"quarantine_{k}": v for k, v in sorted(Counter(q.reason.value for q in dropped).items())})
    receipt.finish(paths.receipt("backfill"), records_in=counts["in"],
                   records_out=len(entries), quarantined=len(dropped),
                   deduplicated=counts["deduplicated"], extra=extra)
    log.info("%d entries, %d quarantined, %d duplicates, %d secrets redacted",
             len(entries), len(dropped), counts["deduplicated"], redacted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
