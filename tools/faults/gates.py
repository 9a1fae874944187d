"""Gates and pins on the tiny chain (nothing failing promoted, a GGUF off its pin refused); a corrupt remote."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from tools.faults.kill import lock_outs
from tools.faults.roots import MODEL_STAGES, PATHS, TASK, copy_root, freeze_code, make_root, run_stage, sh, task_entry
from tools.faults.tiny import model_name, write_tiny_exports, write_tiny_params
from tuneforge import names
from tuneforge.io import write_json


def nothing_promoted(verdict: dict, registry: dict) -> bool:
    """True only for a verdict in which every model failed (anything else cannot show the
    all-fail case) and a registry that lists each of them, rejected, and promotes none."""
    models = verdict["models"]
    every_failed = bool(models) and all(m["verdict"] != "pass" for m in models.values())
    status = {e["quantization"]: e["status"] for e in registry["models"]}
    return (every_failed and registry["promoted"] is None and set(status) == set(models)
            and all(s == "rejected" for s in status.values()))


def gates_and_pins_suite(scratch: Path, tiny_base: Path) -> dict:
    """On the tiny chain: failing gates never promote; a GGUF off its pin is refused by
    register, by eval and by-hand evaluation (tuneforge.evaluate); an unpinned GGUF is refused too."""
    freeze_code(scratch.parent if scratch.name else scratch)
    start = time.monotonic()
    root = make_root(scratch / "chain", {})
    params = write_tiny_params(root, tiny_base)
    write_tiny_exports(root)
    for stage in (*MODEL_STAGES, "eval", "register"):
        r = run_stage(root, stage)
        if r.returncode != 0:
            raise RuntimeError(f"{stage} failed (exit {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    checks: dict[str, bool] = {}
    reg = json.loads((root / PATHS.registry).read_text())
    verdict = json.loads((root / PATHS.verdict).read_text())
    failing = [q for q, v in verdict["models"].items() if v["verdict"] != "pass"]
    checks["failing_models_rejected"] = bool(failing) and all(
        e["status"] == "rejected" for e in reg["models"] if e["quantization"] in failing)
    # every model fails (whatever the tiny chain's own verdict was), and the verdict still names
    # a promotion, as a stale or buggy eval might: register must promote nothing
    allfail = copy_root(root, scratch / "allfail")
    v = json.loads((allfail / PATHS.verdict).read_text())
    for q in v["models"]:
        v["models"][q]["verdict"], v["models"][q]["failed"] = "fail", ["min_class_agreement"]
    v["promoted"], v["release"] = "Q4_K_M", "fail"
    write_json(allfail / PATHS.verdict, v)
    r = run_stage(allfail, "register")
    reg0 = json.loads((allfail / PATHS.registry).read_text()) if r.returncode == 0 else None
    checks["nothing_promoted_when_all_fail"] = reg0 is not None and nothing_promoted(v, reg0)
    # a mixed verdict (only Q4_K_M passes): the failing rest stay rejected, Q4_K_M is promoted
    mixed = copy_root(root, scratch / "mixed")
    v = json.loads((mixed / PATHS.verdict).read_text())
    for q in v["models"]:
        v["models"][q]["verdict"] = "pass" if q == "Q4_K_M" else "fail"
        v["models"][q]["failed"] = [] if q == "Q4_K_M" else ["min_class_agreement"]
    v["promoted"], v["release"] = "Q4_K_M", "pass"
    write_json(mixed / PATHS.verdict, v)
    r = run_stage(mixed, "register")
    reg2 = json.loads((mixed / PATHS.registry).read_text()) if r.returncode == 0 else {"models": []}
    st = {e["quantization"]: e["status"] for e in reg2["models"]}
    others = sorted(set(v["models"]) - {"Q4_K_M"})  # the rest of the ladder params.yaml names
    checks["mixed_verdict_promotes_only_the_passing_model"] = (
        st.get("Q4_K_M") == "promoted" and len(others) >= 2 and all(st.get(q) == "rejected" for q in others))
    # tamper: flip one byte of another ladder member (same size), then register, eval and eval by hand
    tam = copy_root(root, scratch / "tamper")
    q6 = tam / PATHS.gguf_dir / names.gguf_name(model_name(params), others[-1])
    with open(q6, "r+b") as f:
        f.seek(q6.stat().st_size // 2)
        b = f.read(1)
        f.seek(q6.stat().st_size // 2)
        f.write(bytes([b[0] ^ 0x01]))
    registry_before = (tam / PATHS.registry).read_bytes()
    r = run_stage(tam, "register")
    checks["register_refuses_tampered_gguf"] = r.returncode != 0 and "does not match its pin" in r.stderr
    checks["register_left_registry_unchanged"] = (tam / PATHS.registry).read_bytes() == registry_before
    r = run_stage(tam, "eval")
    checks["eval_refuses_tampered_gguf"] = r.returncode != 0 and "does not match its pin" in r.stderr
    r = sh([sys.executable, "-m", "tuneforge.evaluate", "--task", TASK, "--gold", task_entry(params)["gold"],
            "--model", str(q6), "--limit", "1"], tam, check=False)
    checks["eval_by_hand_refuses_tampered_gguf"] = r.returncode != 0 and "does not match its pin" in r.stderr
    # unpinned: drop Q8_0's line from SHA256SUMS
    unp = copy_root(root, scratch / "unpinned")
    sums = unp / PATHS.gguf_dir / names.SUMS
    sums.write_text("".join(ln + "\n" for ln in sums.read_text().splitlines() if "Q8_0" not in ln))
    r = run_stage(unp, "register")
    checks["register_refuses_unpinned_gguf"] = r.returncode != 0 and "is not pinned" in r.stderr
    r = run_stage(unp, "eval")
    checks["eval_refuses_unpinned_gguf"] = r.returncode != 0 and "is not pinned" in r.stderr
    for d in ("allfail", "mixed", "tamper", "unpinned"):
        shutil.rmtree(scratch / d, ignore_errors=True)
    return {"checks": checks, "failed": sorted(k for k, ok in checks.items() if not ok),
            "seconds": round(time.monotonic() - start, 1), "_root": str(root)}


def remote_suite(scratch: Path, built: Path) -> dict:
    """Push a built git+DVC repo to a local directory remote, corrupt one object there (same
    size, one byte flipped), and pull into fresh clones with the remote's default settings
    and with `verify = true`."""
    start = time.monotonic()
    origin = copy_root(built, scratch / "origin")
    remote = scratch / "remote"
    sh(["dvc", "remote", "add", "-d", "local", str(remote)], origin)
    sh(["git", "add", "-A"], origin)
    sh(["git", "commit", "-q", "-m", "build + remote"], origin)
    sh(["dvc", "push"], origin)
    md5 = lock_outs(origin)[PATHS.entries.as_posix()]
    obj = remote / "files" / "md5" / md5[:2] / md5[2:]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    corrupt = bytes(data)
    out = {}
    for mode in ("default", "verify"):
        clone = scratch / f"clone-{mode}"
        sh(["git", "clone", "-q", str(origin), str(clone)], scratch)
        if mode == "verify":
            sh(["dvc", "remote", "modify", "--local", "local", "verify", "true"], clone)
        pull = sh(["dvc", "pull"], clone, check=False)
        target = clone / PATHS.entries
        checked_out = target.exists()
        status = sh(["dvc", "status"], clone, check=False)
        out[mode] = {
            "pull_rc": pull.returncode,
            "pull_error": " ".join((pull.stderr or pull.stdout).split())[-300:] if pull.returncode else "",
            "corrupt_file_checked_out": checked_out and target.read_bytes() == corrupt,
            "file_checked_out": checked_out,
            "corrupt_object_in_local_cache": any(p.read_bytes() == corrupt for p in
                                                 (clone / ".dvc/cache").rglob("*") if p.is_file()),
            "status_clean": "up to date" in status.stdout,
            "status": " ".join(status.stdout.split())[:300],
        }
        out[mode]["detected"] = out[mode]["pull_rc"] != 0 or not out[mode]["status_clean"]
    out["seconds"] = round(time.monotonic() - start, 1)
    return out
