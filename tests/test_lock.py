"""The committed locks against pyproject.toml, params.yaml's toolchain and the installed env.

requirements.lock (what `make setup` installs: the [model,test] extras, CPU torch) and
requirements-gpu.lock (`make setup-gpu`: plus [gpu], CUDA torch) are written by
`make lock` (uv pip compile --generate-hashes). These tests fail when a requirement in
pyproject is not pinned exactly, when pyproject and a lock disagree, when a lock entry has
no hash, when params.yaml's toolchain pins differ from the lock, and when the running
environment is not the lock.
"""
from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"requirements.lock": ("model", "test"), "requirements-gpu.lock": ("model", "test", "gpu")}
# packages the issue named as shaping artifacts without a pin: params and the run-time check hold them
MUST_PIN = {"tokenizers", "jinja2", "safetensors", "numpy", "gguf", "duckdb", "dvc"}


def parse_lock(path: Path) -> dict[str, dict]:
    """name -> {version, hashes, line} of a hash-pinned requirements file. Own parser: pip's
    is internal API, and a lock line here is only `name==version [; marker] \\ --hash=...`."""
    out: dict[str, dict] = {}
    logical, start = "", 0
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, raw in enumerate(lines + [""], 1):
        text = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not logical:
            start = i
        logical += " " + text.rstrip("\\")
        if text.endswith("\\"):
            continue
        logical, entry = "", logical.strip()
        if not entry:
            continue
        spec, *opts = re.split(r"\s+(?=--)", entry)
        if spec.startswith("-"):
            raise AssertionError(f"{path.name}:{start}: option line {spec!r}; the lock holds only pins")
        req = Requirement(spec)
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"{path.name}:{start}: {spec!r} is not name==version"
        hashes = [o.split("=", 1)[1] for o in opts if o.startswith("--hash=")]
        out[canonicalize_name(req.name)] = {"version": pins[0].version, "hashes": hashes, "line": start,
                                            "marker": req.marker}
    return out


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def same_release(a: str, b: str) -> bool:
    """2.13.0+cpu and 2.13.0 are the same release (CPU and CUDA builds of torch)."""
    return Version(a).public == Version(b).public


def test_every_project_requirement_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = tuple(project["optional-dependencies"])
    loose = [str(r) for r in project_requirements(extras)
             if len(r.specifier) != 1 or next(iter(r.specifier)).operator != "=="]
    assert not loose, f"pyproject.toml: requirements without an exact == pin: {loose}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_agrees_with_pyproject(lock):
    path = ROOT / lock
    assert path.is_file(), f"{lock} missing: run `make lock`"
    pins = parse_lock(path)
    for req in project_requirements(LOCKS[lock]):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock}: pyproject requires {req} but the lock has no {name} (run `make lock`)"
        have = pins[name]["version"]
        assert req.specifier.contains(have, prereleases=True), \
            f"{lock}:{pins[name]['line']}: {name}=={have}, pyproject says {req.specifier} (run `make lock`)"
    unhashed = [f"{n} (line {p['line']})" for n, p in pins.items() if not p["hashes"]]
    assert not unhashed, f"{lock}: entries without --hash: {unhashed}"
    assert pins.keys() >= MUST_PIN, f"{lock}: no pin for {sorted(MUST_PIN - pins.keys())}"


def test_cpu_and_gpu_locks_pin_the_same_releases():
    """The GPU env differs only by CUDA torch and what [gpu] adds, never by a shared package."""
    cpu, gpu = parse_lock(ROOT / "requirements.lock"), parse_lock(ROOT / "requirements-gpu.lock")
    differ = {n: (cpu[n]["version"], gpu[n]["version"]) for n in cpu.keys() & gpu.keys()
              if not same_release(cpu[n]["version"], gpu[n]["version"])}
    assert not differ, f"requirements.lock vs requirements-gpu.lock: {differ}"
    assert cpu.keys() <= gpu.keys(), f"only in the CPU lock: {sorted(cpu.keys() - gpu.keys())}"


def test_toolchain_params_are_the_lock():
    toolchain = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["toolchain"]
    pins = parse_lock(ROOT / "requirements.lock")
    missing = MUST_PIN - {canonicalize_name(k) for k in toolchain}
    assert not missing, f"params.yaml toolchain has no pin for {sorted(missing)}"
    wrong = {k: (str(v), pins.get(canonicalize_name(k), {}).get("version")) for k, v in toolchain.items()
             if not same_release(str(v), pins.get(canonicalize_name(k), {}).get("version", "0"))}
    assert not wrong, f"params.yaml toolchain vs requirements.lock (params, lock): {wrong}"


def test_dvc_toolchain_params_are_known_and_used():
    """Each toolchain key a stage lists exists; each but dvc (the runner, checked at run time)
    is a param of at least one stage, so changing it reruns what it shapes."""
    toolchain = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["toolchain"]
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    used = {p.split(".", 1)[1] for s in stages.values() for p in s.get("do", s).get("params", [])
            if isinstance(p, str) and p.startswith("toolchain.")}
    assert used <= toolchain.keys(), f"dvc.yaml lists unknown toolchain keys {sorted(used - toolchain.keys())}"
    assert toolchain.keys() - used == {"dvc"}, f"toolchain keys no stage lists: {sorted(toolchain.keys() - used)}"


def test_installed_environment_is_the_lock():
    """What runs the tests is what the lock pins (`make setup` installs it with --require-hashes)."""
    pytest.importorskip("torch")
    pins = parse_lock(ROOT / "requirements.lock")
    wrong = {}
    for name, pin in pins.items():
        if pin["marker"] is not None and not pin["marker"].evaluate():
            continue
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = "not installed"
        if have != pin["version"]:
            wrong[name] = (pin["version"], have)
    assert not wrong, f"installed env differs from requirements.lock (lock, installed): {wrong}; run `make setup`"


def test_check_toolchain_checks_every_pin():
    """A model stage refuses to run when any toolchain pin differs, not only the ones it names."""
    pytest.importorskip("torch")
    from tuneforge.llm import check_toolchain

    toolchain = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["toolchain"]
    check_toolchain(toolchain, ["torch"])
    with pytest.raises(RuntimeError, match=r"jinja2: params 0\.0\.1"):
        check_toolchain(dict(toolchain, jinja2="0.0.1"), ["torch", "transformers", "peft"])


def test_make_setup_installs_the_lock_with_hashes():
    """What `make setup` runs (make -n: printed, not run): the lock with --require-hashes, then
    the project alone; no other pip install that could pull an unpinned package."""
    import shutil
    import subprocess

    if not shutil.which("make"):
        pytest.skip("no make")
    out = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), "setup"], capture_output=True, text=True,
                         check=True).stdout
    installs = [line for line in out.splitlines() if "pip install" in line]
    assert installs and all("--require-hashes -r requirements.lock" in line or "--no-deps" in line
                            for line in installs), installs
    assert any("--require-hashes -r requirements.lock" in line for line in installs), installs


def test_gpu_check_stops_in_one_line_without_a_gpu(tmp_path):
    """`make gpu-check` with no GPU (an nvidia-smi that lists none) stops before installing
    anything, with one line of its own (make then adds its usual `*** Error` line)."""
    import os
    import shutil
    import subprocess

    if not shutil.which("make"):
        pytest.skip("no make")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    # run as a user would, not as a sub-make of `make test` (that would print make[1]: lines)
    for var in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(var, None)
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "gpu-check"], capture_output=True, text=True, env=env)
    ours = [line for line in out.stderr.splitlines() if not line.startswith("make: ***")]
    assert out.returncode != 0 and len(ours) == 1 and ours[0].startswith("make gpu-check: no CUDA GPU"), out.stderr
    assert not out.stdout and not (ROOT / ".venv-gpu").exists()


def test_export_checks_its_duckdb_pin(workdir):
    """duckdb computes export's drift report: export refuses an installed duckdb that is not
    toolchain.duckdb (it checks only that pin: the data half runs without the model extras)."""
    from stages import backfill, evidence, export, score

    for stage in (backfill, evidence, score):
        assert stage.main(["changelog-actions"]) == 0
    params = yaml.safe_load((workdir / "params.yaml").read_text(encoding="utf-8"))
    params["toolchain"]["duckdb"] = "0.0.1"
    params["toolchain"]["torch"] = "0.0.1"  # not export's: not checked there
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"toolchain mismatch \(duckdb: params 0\.0\.1, installed [0-9.]+\);"):
        export.main(["changelog-actions"])
