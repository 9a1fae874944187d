"""An ordered map over record indices on forked worker processes (issue 23: the data stages).

The data stages hold their records in memory and do the same pure per-record work on each
(score a record, label it, serialise it). `ordered_map(fn, n)` gives fn(0) ... fn(n - 1) in
order, computed by forked workers that inherit `fn` and everything it closes over: only index
spans go to the workers and only fn's results come back, so a closure over 46k pydantic
records costs nothing to hand over (Pool.map would pickle every record twice).

Why not Pool.imap with a top-level function (what backfill and the first evidence pool did):
the function must then be importable and its inputs picklable, which pushed each stage to ship
its records to the workers by value. A fork's copy-on-write memory already holds them.

Output never depends on the number of workers: spans are fixed-size and imap returns them in
order. Results must be picklable; an exception in a worker is raised again in the caller.

Forking a process that has other threads (a stage holding a DuckDB connection, whose thread
pool lives on) is safe only if the children stay away from what those threads may have locked: `fn`
must not use DuckDB or Arrow, only Python objects (glibc's malloc is reset in the child).
Python 3.12 warns about such forks; moving there means checking this again.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

SPAN = 256  # indices a worker takes at a time: ~10-50 ms of work, so the pipe stays busy
_JOB: Callable[[int], Any] | None = None  # what the forked workers run: set just before the fork


def cpu_workers() -> int:
    """The cores this process may run on (a container's affinity, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _run_span(span: tuple[int, int]) -> list:
    assert _JOB is not None, "forkmap: a worker started without a job (not forked?)"
    return [_JOB(i) for i in range(*span)]


def ordered_map(fn: Callable[[int], T], n: int, workers: int = 0, span: int = 0) -> Iterator[T]:
    """fn(0), fn(1), ... fn(n - 1), in that order, on `workers` forked processes (0: one per
    core), `span` indices at a time (0: SPAN). Runs in this process when one worker is asked
    for or there is under two spans' work: forking costs more than it saves there."""
    global _JOB
    workers, span = workers or cpu_workers(), span or SPAN
    if workers <= 1 or n < 2 * span:
        yield from map(fn, range(n))
        return
    if _JOB is not None:
        raise RuntimeError("forkmap: ordered_map is not reentrant (a pool is already running)")
    _JOB = fn
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, -(-n // span))) as pool:
            for chunk in pool.imap(_run_span, [(lo, min(lo + span, n)) for lo in range(0, n, span)]):
                yield from chunk
    finally:
        _JOB = None
