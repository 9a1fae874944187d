"""Synthetic content-free entries ("Minor fixes and improvements.") that export.unknown_augment
trains the abstain class on."""
from __future__ import annotations

import functools

from tuneforge.tasks.changelog_actions.kinds import is_content_free

CONTENT_FREE_CORES = ["bug fixes", "fixes", "improvements", "cleanups", "updates", "changes",
                      "tweaks", "enhancements"]
CONTENT_FREE_QUALIFIERS = ["", "minor ", "various ", "several ", "misc ", "small "]
CONTENT_FREE_TAILS = ["", " and improvements", " and performance improvements",
                      " and stability improvements", " and other changes",
                      " and reliability improvements"]
CONTENT_FREE_PHRASES = [
    "Internal refactoring", "Code cleanup", "Updated dependencies", "Bump dependencies",
    "Refactoring of the code", "Stability improvements",
    "Reliability improvements", "New upstream release", "No-change rebuild",
    "See the commit log for details", "See ChangeLog for details",
]


@functools.lru_cache(maxsize=1)
def content_free_examples() -> tuple[str, ...]:
    """Synthetic entries that say nothing a user must act on ("Minor fixes and
    improvements."), every one content-free by `is_content_free`, in a fixed order:
    export.unknown_augment draws from them."""
    texts = sorted({(q + c + t).capitalize() for q in CONTENT_FREE_QUALIFIERS
                    for c in CONTENT_FREE_CORES for t in CONTENT_FREE_TAILS} | set(CONTENT_FREE_PHRASES))
    return tuple(t + p for t in texts for p in ("", ".") if is_content_free(t + p))
