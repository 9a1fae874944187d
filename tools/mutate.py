"""Mutation testing of the modules that guard data and trust -> reports/mutation.json.

Runs mutmut (settings in setup.cfg: which modules, which test files) with one worker, reads
its per-file results (mutants/<path>.meta), and writes per-module counts, the survivors, and
the survivors judged equivalent (tools/mutation_equivalent.json, each with its reason).

An equivalent mutant is one no test can tell apart from the original (same behaviour); each
entry names the mutant and the mutated line it must still show, so a renumbered mutant after
a code change is reported as stale and counted as a survivor, never silently excused.

    .venv/bin/python tools/mutate.py            # fresh run (~see README), exit 1 under --min
    .venv/bin/python tools/mutate.py --keep     # reuse mutants/ results already there
    .venv/bin/python tools/mutate.py --report-only
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # run as a plain script: tools (the README renderer) and the package
from tuneforge.io import write_json  # noqa: E402  (after the path set-up: run as a plain script)

EQUIVALENT = ROOT / "tools" / "mutation_equivalent.json"
# mutmut's own exit-code classes (mutmut.stats.status_by_exit_code)
DETECTED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
            255: "timeout", 37: "caught_by_type_check", -11: "segfault", -9: "segfault"}
OTHER = {0: "survived", 5: "no_tests", 33: "no_tests", 34: "skipped", None: "not_checked"}


def mutmut_bin() -> str:
    exe = Path(sys.executable).parent / "mutmut"
    if not exe.exists():
        sys.exit(f"mutate: {exe} not found; install the test extra (pip install -e '.[test]')")
    return str(exe)


def modules() -> list[str]:
    cfg = ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return [p for p in cfg.get("mutmut", "only_mutate").split() if p]


def status(code: int | None) -> str:
    return DETECTED.get(code) or OTHER.get(code, "suspicious")


def mutated_line(name: str) -> str:
    """The '+' line of a mutant's diff, as `mutmut show NAME` prints it (mutmut's own function,
    in-process: one `mutmut show` per equivalent entry costs a second each)."""
    from mutmut.__main__ import find_mutant, get_diff_for_mutant

    os.chdir(ROOT)
    diff = get_diff_for_mutant(name, path=find_mutant(name).path)
    plus = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return plus[0] if plus else ""


def report(runtime_s: float | None, command: list[str], minimum: float) -> dict:
    equivalent = json.loads(EQUIVALENT.read_text(encoding="utf-8")) if EQUIVALENT.exists() else {}
    per_module, survivors, excused, stale = {}, [], {}, {}
    for path in modules():
        meta = ROOT / "mutants" / (path + ".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        counts = Counter(status(c) for c in codes.values())
        eq = 0
        for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            if status(code) in DETECTED.values():
                continue
            entry = equivalent.get(name)
            if entry and status(code) == "survived":
                line = mutated_line(name)
                if line == entry["mutated_line"]:
                    excused[name] = entry["reason"]
                    eq += 1
                    continue
                stale[name] = f"expected mutated line {entry['mutated_line']!r}, now {line!r}"
            survivors.append({"mutant": name, "status": status(code)})
        detected = sum(n for k, n in counts.items() if k in DETECTED.values())
        judged = len(codes) - eq
        per_module[path] = {"mutants": len(codes), "killed": detected, "equivalent": eq,
                            "survived": judged - detected, "no_tests": counts.get("no_tests", 0),
                            "timeout": counts.get("timeout", 0),
                            "score": round(detected / judged, 4) if judged else None}
    total = sum(m["mutants"] for m in per_module.values())
    killed = sum(m["killed"] for m in per_module.values())
    eq_total = sum(m["equivalent"] for m in per_module.values())
    score = round(killed / (total - eq_total), 4) if total > eq_total else None
    return {
        "tool": "mutmut", "tool_version": _version(), "command": command,
        "runtime_s": None if runtime_s is None else round(runtime_s, 1),
        "score_definition": "killed (incl. timeouts) / (mutants - survivors judged equivalent)",
        "minimum_score": minimum, "score": score, "passes": score is not None and score >= minimum,
        "totals": {"mutants": total, "killed": killed, "equivalent": eq_total,
                   "not_killed": total - killed - eq_total},
        "modules": per_module,
        "tests": _tests(),
        "equivalent": excused,
        "stale_equivalent_entries": stale,
        "survivors": survivors,
        "out_of_scope_for_now": out_of_scope(),
        "note": ("mutmut 3 mutates code inside functions and methods only: module-level tables "
                 "(redact.PATTERNS' regexes, sources' regex constants) and pydantic field "
                 "declarations (records.py) make no mutants here; tests/test_redact.py and "
                 "tests/test_sources.py hold those by example."),
    }


# Guarding code not mutated yet (the report says so); each path must exist, so a move updates it.
OUT_OF_SCOPE = ("stages/eval.py", "stages/register.py", "stages/export.py", "src/tuneforge/predict.py",
                "src/tuneforge/gguf_tools.py", "tools/faults/")


def out_of_scope() -> list[str]:
    missing = [p for p in OUT_OF_SCOPE if not (ROOT / p).exists()]
    if missing:
        sys.exit(f"mutate: tools/mutate.py OUT_OF_SCOPE names paths that do not exist: {missing}")
    return list(OUT_OF_SCOPE)


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _version() -> str:
    from importlib.metadata import version
    return version("mutmut")


def _tests() -> list[str]:
    cfg = ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg.get("mutmut", "pytest_add_cli_args_test_selection").split()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="reuse results already in mutants/")
    ap.add_argument("--report-only", action="store_true", help="only (re)write the report")
    ap.add_argument("--out", default="reports/mutation.json")
    ap.add_argument("--min", type=float, default=0.8, help="lowest passing score")
    ap.add_argument("names", nargs="*", help="mutant name globs, e.g. 'tuneforge.io*'")
    args = ap.parse_args(argv)
    command = ["nice", "-n", "10", mutmut_bin(), "run", "--max-children", "1", *args.names]
    runtime = None
    if not args.report_only:
        if not args.keep:
            shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        start = time.monotonic()
        # mutmut's exit code says nothing about survivors; the report decides pass/fail
        subprocess.run(command, cwd=ROOT, check=True, env=dict(os.environ, TQDM_DISABLE="1"))
        runtime = time.monotonic() - start
    rep = report(runtime, [Path(c).name if c.endswith("mutmut") else c for c in command], args.min)
    write_json(ROOT / args.out, rep)
    if args.out == "reports/mutation.json":  # the README's mutation table is rendered from this file
        from tools.readme_sections import update
        update(["mutation"])
    t = rep["totals"]
    print(f"mutation score {rep['score']} ({t['killed']} killed of {t['mutants']} mutants, "
          f"{t['equivalent']} equivalent, {t['not_killed']} not killed) -> {args.out}")
    for path, m in rep["modules"].items():
        print(f"  {path}: {m['killed']}/{m['mutants'] - m['equivalent']} score {m['score']}")
    if rep["stale_equivalent_entries"]:
        print(f"  stale equivalent entries: {sorted(rep['stale_equivalent_entries'])}")
    return 0 if rep["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
