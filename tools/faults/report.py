"""The faults report: every suite in one run, the checks that failed, the command."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tools import faults
from tools.faults.bad_input import bad_input_suite
from tools.faults.gates import gates_and_pins_suite, remote_suite
from tools.faults.kill import kill_suite
from tools.faults.leakage import leakage_suite
from tools.faults.planted_secrets import secrets_suite
from tools.faults.roots import KILL_MODEL_STAGES, REPORT, ROOT, freeze_code, log, sh
from tools.faults.tiny import build_tiny_base, model_available
from tuneforge.io import git_revision, write_json
from tuneforge.redact import KINDS


def run_all(seed: int = 7, quick: bool = False, model: bool = True, n_plain: int | None = None,
            n_dvc: int | None = None, n_model: int | None = None, scratch: Path | None = None) -> dict:
    started = time.monotonic()
    own = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="tuneforge-faults-")) if own else scratch
    try:
        freeze_code(scratch)
        why_not = model_available() if model else "--no-model"
        tiny = None
        if why_not is None:
            try:
                tiny = build_tiny_base(scratch / "tiny" / "base")
            except Exception as e:  # noqa: BLE001 - e.g. no base wheel in the cache, no registry
                why_not = f"cannot build the tiny base: {e}"
        log("bad inputs ...")
        bad = bad_input_suite(seed, quick, scratch / "bad")
        log(f"bad inputs: {bad['cases']} cases, {len(bad['crashes'])} crashes, {bad['seconds']} s")
        log("secrets ...")
        sec = secrets_suite(seed, scratch, model=tiny is not None, tiny_base=tiny)
        log(f"secrets: {sec['planted']} planted, {sec['leak_count']} leaks, {sec['seconds']} s")
        log("kill points ...")
        kills, dvc_ref = kill_suite(
            seed, scratch / "kill", n_plain if n_plain is not None else (4 if quick else 16),
            n_dvc if n_dvc is not None else (1 if quick else 6),
            (n_model if n_model is not None else (0 if quick else len(KILL_MODEL_STAGES))) if tiny is not None else 0,
            tiny, 150_000 if quick else 600_000)
        log(f"kill points: {kills['points']}, {kills['nonidentical']} non-identical, {kills['seconds']} s")
        log("leakage ...")
        leak = leakage_suite(scratch)
        log("remote corruption ...")
        remote = remote_suite(scratch / "remote", dvc_ref)
        gates = None
        if tiny is not None:
            log("gates and pins ...")
            gates = gates_and_pins_suite(scratch / "gates", tiny)
        sec.pop("_root", None)
        if gates:
            gates.pop("_root", None)
        report = {
            "bad_inputs": bad["cases"],
            "crashes": len(bad["crashes"]),
            "lost_records": bad["lost_count"],
            "secret_kinds": len(sec["kinds"]),
            "leaked_secrets": sec["leak_count"],
            "kill_points": kills["points"],
            "nonidentical_reruns": kills["nonidentical"],
            "leaked_gold": leak["leaks"],
            "gates_and_pins_failed": gates["failed"] if gates else None,
            "remote_corruption_detected": {m: remote[m]["detected"] for m in ("default", "verify")},
            "profile": "quick" if quick else "full",
            "git_revision": git_revision(ROOT),
            "working_tree_dirty": bool(sh(["git", "status", "--porcelain", "--untracked-files=no"],
                                          ROOT, check=False).stdout.strip()),
            "seed": seed,
            "model_half": why_not or MODEL_HALF,
            "machine": {"cores": os.cpu_count()},
            "seconds": round(time.monotonic() - started, 1),
            "details": {"bad_inputs": bad, "secrets": sec, "kill": kills, "leakage": leak,
                        "gates_and_pins": gates, "remote": remote},
        }
        return report
    finally:
        if own:
            shutil.rmtree(scratch, ignore_errors=True)


MODEL_HALF = "tiny random-weight llama, SmolLM2 tokenizer"


def failures(report: dict) -> list[str]:
    """One line per check that failed or did not run. The exit status and the README's
    faults section both read this list, so neither can call a run good that it is not."""
    d, out = report["details"], []
    counts = [("bad_inputs", "no bad input was run", lambda n: n == 0),
              ("crashes", "bad inputs crashed a stage in {} cases", bool),
              ("lost_records", "{} records lost between source and export", bool),
              ("leaked_secrets", "{} planted secrets reached a produced or tracked file", bool),
              ("kill_points", "no kill point was run", lambda n: n == 0),
              ("nonidentical_reruns", "{} reruns after a kill were not byte-identical", bool),
              ("leaked_gold", "{} gold rows reached train/valid", bool)]
    out += [msg.format(report[key]) for key, msg, bad in counts if bad(report[key])]
    if n := d["bad_inputs"]["problem_count"]:
        out.append(f"{n} quarantine/injection/dedupe problems in the bad-input accounting")
    if report["secret_kinds"] < len(KINDS):
        out.append(f"only {report['secret_kinds']} of the redactor's {len(KINDS)} secret kinds were planted")
    if report["kill_points"] < d["kill"].get("requested", 0):
        out.append(f"only {report['kill_points']} of {d['kill']['requested']} kill points landed")
    for key, what in (("partial_files_in_dvc_cache", "partial files in the DVC cache after a kill"),
                      ("stray_temp_files_after_rerun", "temp files left after the reruns")):
        if n := d["kill"].get(key):
            out.append(f"{n} {what}")
    gates = report["gates_and_pins_failed"]
    if gates:
        out.append(f"gates and pins failed: {', '.join(gates)}")
    if gates is None or report["model_half"] != MODEL_HALF:
        out.append(f"the model half did not run ({report['model_half']}): no gates, pins, model kill "
                   "points or secrets scan of model artifacts")
    if not report["remote_corruption_detected"]["verify"]:
        out.append("a corrupt remote object got past `dvc pull` with the remote's verify = true")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.faults", description=faults.__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the reduced profile the tests run")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-model", action="store_true",
                    help="skip the tiny-model half (the run then fails: its checks did not run)")
    ap.add_argument("--out", type=Path, default=REPORT,
                    help=f"the report; the README's faults section is rewritten only for {REPORT.name}")
    args = ap.parse_args(argv)
    report = run_all(seed=args.seed, quick=args.quick, model=not args.no_model)
    write_json(args.out, report)
    head = {k: report[k] for k in ("bad_inputs", "crashes", "lost_records", "secret_kinds",
                                   "leaked_secrets", "kill_points", "nonidentical_reruns",
                                   "leaked_gold", "gates_and_pins_failed", "remote_corruption_detected")}
    print(json.dumps(head, indent=2))
    print(f"wrote {args.out} ({report['seconds']} s)")
    if args.out.resolve() == REPORT.resolve():  # the README describes the committed report only
        from tools import readme_sections

        try:
            readme_sections.update(["faults"])
        except ValueError as e:  # markers missing: the report is written, the README is not
            log(f"README not updated: {e}")
            return 1
        print(f"rewrote the faults section of {readme_sections.README}")
    fails = failures(report)
    for f in fails:
        log(f"FAILED: {f}")
    return 1 if fails else 0
