"""Harnesses beside the package: faults, bench, verify-repro, the README renderer, labeling and
mutation helpers. Run from the repo root as `python -m tools.<name>` (make faults, make bench,
make verify-repro); they import tuneforge, never the other way round (tests/test_layout.py)."""
