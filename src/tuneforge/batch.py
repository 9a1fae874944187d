"""Process settings for the data stages that hold their records in memory (evidence, score, export).

Each builds tens of thousands of pydantic records and keeps them alive until it exits. Python's
cyclic garbage collector starts a full collection whenever enough new container objects have
outlived its younger generations, and a full collection walks every live object: at 1M resampled
entries (make bench's data row) export spent 3.6 s of its 8.2 s there, score 0.4 s of 2.8 and
evidence 0.4 s of 5.1, and the collections found nothing to free. Reference counting frees what
these stages drop: with the collector off for a whole run, one collection at exit found ~0.7-1.6k
unreachable objects (evidence 856, score 739, export 1,565: import-time cycles), and peak RSS was
the same (export 721 MB with it, 724 MB without). So these processes run without it; the forked
workers of tuneforge.forkmap inherit that. Backfill keeps it: it streams inputs of any size (the
10M-entry bench run's bounded memory) and the collector cost it 0.3 s of 3.5.
"""
from __future__ import annotations

import gc


def records_in_memory() -> None:
    """This process holds its records until it exits: no cyclic garbage collection (see above)."""
    gc.disable()
