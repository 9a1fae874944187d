"""Mend what a killed `dvc repro` leaves half-written, so the next one runs.

Run: python -m tuneforge.recover [--root DIR]   (make repro and make demo run it first)

DVC writes two state files in place, not through a temporary file and a rename: its lock
table `.dvc/tmp/rwlock` (JSON, rewritten as each stage takes and frees its paths) and
`dvc.lock` (rewritten after each stage). A SIGKILL during either write (the OOM killer, a CI
timeout, kill -9) leaves it truncated, and every later `dvc` command stops on it ("Unable to
read RWLock-file ... JSON structure is corrupted", "'./dvc.lock' validation failed";
treeverse/dvc#7615 is a user meeting the first). tools/faults' kill suite hits both.

Holding DVC's own repository lock (so no other dvc command is running), this:
- removes an unreadable rwlock: it only lists the paths that processes now dead held;
- replaces an unreadable dvc.lock by the committed one (git HEAD): DVC then reruns exactly the
  stages whose outputs no longer match it. A stage that finished after that commit is rerun
  rather than trusted, which costs time, never correctness. With no committed copy it is
  removed, and every stage reruns.
A readable file is left alone; each repair is one line on stderr. Not upstream: DVC 3.x still
writes both in place (dvc/rwlock.py `_edit_rwlock`, dvc/dvcfile.py `dump_stages`).
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from tuneforge.io import write_text

log = logging.getLogger("tuneforge.recover")

RWLOCK = Path(".dvc/tmp/rwlock")
LOCKFILE = Path("dvc.lock")


def lockfile_problem(text: str) -> str | None:
    """Why `text` is not a dvc.lock DVC can read (its own YAML reader and schema), or None."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils.serialize import parse_yaml

    try:
        COMPILED_LOCKFILE_SCHEMA(parse_yaml(text, str(LOCKFILE)) or {})
    except Exception as e:  # noqa: BLE001 - DVC raises YAMLFileCorruptedError or voluptuous.Invalid
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    return None


def rwlock_problem(text: str) -> str | None:
    """Why `text` is not a JSON lock table, or None."""
    try:
        table = json.loads(text)
    except json.JSONDecodeError as e:
        return f"not JSON ({e})"
    return None if isinstance(table, dict) else "not a JSON object"


def recover(root: Path) -> list[str]:
    """Repair root's rwlock and dvc.lock where they are unreadable; returns what was done."""
    from dvc.repo import Repo

    done = []
    with Repo(str(root)).lock:  # raises LockError, naming the holder, while a dvc command runs
        rwlock = root / RWLOCK
        if rwlock.is_file() and (why := rwlock_problem(rwlock.read_text(encoding="utf-8", errors="replace"))):
            rwlock.unlink()
            done.append(f"removed {RWLOCK}: {why} (a killed dvc command's lock table)")
        lockfile = root / LOCKFILE
        if lockfile.is_file() and (why := lockfile_problem(lockfile.read_text(encoding="utf-8", errors="replace"))):
            head = subprocess.run(["git", "show", f"HEAD:{LOCKFILE.as_posix()}"], cwd=root,
                                  capture_output=True, text=True)
            if head.returncode == 0:
                write_text(lockfile, head.stdout)
                done.append(f"restored {LOCKFILE} from git HEAD: it was unreadable ({why}); "
                            "dvc repro reruns the stages whose outputs no longer match it")
            else:  # never committed: without it DVC trusts no output and reruns every stage
                lockfile.unlink()
                done.append(f"removed {LOCKFILE}: it was unreadable ({why}) and git has no committed copy; "
                            "dvc repro reruns every stage")
    return done


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(prog="python -m tuneforge.recover", description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".", help="the repository (default: here)")
    args = ap.parse_args(argv)
    for line in recover(Path(args.root)):
        log.warning("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
