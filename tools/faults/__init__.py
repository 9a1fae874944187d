"""Faults suite (issue #7): bad input, planted secrets, kill -9, leakage, gates, pins, remote.

Run: python -m tools.faults [--quick] [--seed N] [--no-model] [--out reports/faults.json]

Everything runs in scratch directories (tempfile); the repo's data/, models/ and dvc.lock
are never touched.  The report's headline keys are measured here, never typed in:

* ``bad_inputs``: crafted source files (every registered format x malformed markup, invalid
  UTF-8, NUL bytes, 10 MB lines, empty files, bad/truncated gzip, duplicates, deep nesting,
  prompt-injection text, Unicode confusables, CRLF/CR/mixed line endings, ...) run through
  the real data stages (backfill -> evidence -> score -> export).
* ``crashes``: cases on which a stage raised or exited non-zero (isolated case by case).
* ``lost_records``: parsed entries / stage records with no trace downstream (an entry, a
  quarantine row with a reason code, or a counted duplicate), plus receipt mismatches.
* ``secret_kinds`` / ``leaked_secrets``: kinds planted in source files; occurrences of any
  planted secret in any file the build produced (exports, receipts, logs, quarantine, GGUF
  bytes and metadata, Modelfiles, registry, dvc.lock and other tracked config).
* ``kill_points`` / ``nonidentical_reruns``: SIGKILLs at seeded moments of the data stages
  (plain subprocesses and whole ``dvc repro`` process groups) and of the model stages; a
  rerun must give outputs byte-identical to an uninterrupted run (receipts compared without
  their timing fields, the drift report without its previous-run half) and DVC's cache
  must hold no object whose content does not hash to its name.

Fake secrets are assembled at run time from fragments, so no tracked file holds one.

The exit status is 0 only when `failures(report)` is empty: every check held and ran, the
tiny-model half and the remote's verify=true pull included (`--no-model` therefore exits 1).
Writing reports/faults.json also rewrites README.md's faults section from it
(tools.readme_sections).

Modules: roots (scratch pipeline roots, running stages), tiny (the tiny-model chain),
cases and bad_input (crafted inputs, accounting), planted_secrets, kill, leakage,
gates (gates, pins, remote) and report (run_all, failures, main).
"""
