"""Scratch pipeline roots: the repo's paths, a frozen copy of the code, stage runs, shell steps.

The suite feeds one task: the changelog task, whose fixtures (tests/fixtures) it mutates. Every
artifact path comes from tuneforge.names for that task (PATHS), never typed in here."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import yaml

from tuneforge import names
from tuneforge.names import TaskPaths

ROOT = Path(__file__).resolve().parents[2]
TASK = "changelog-actions"  # the task the fixtures below hold sources and gold for
PATHS = TaskPaths.for_task(TASK)  # relative: the same layout in the repo and in every scratch root
FIXTURES = ROOT / "tests" / "fixtures" / "sources"
GOLD_MINI = ROOT / "tests" / "fixtures" / "gold-mini.jsonl"
REPORT = ROOT / "reports" / "faults.json"
# The machine's download cache (pip wheels/sdists, the extracted converter), as the stages find
# it: TUNEFORGE_CACHE, else .cache in the repo.
SHARED_CACHE = ROOT / names.CACHE
DATA_STAGES = ("backfill", "evidence", "score", "export")
MODEL_STAGES = ("base", "train", "merge", "convert", "quantize")  # the model half up to eval
KILL_MODEL_STAGES = (*MODEL_STAGES, "eval", "register")


def log(msg: str) -> None:
    print(f"faults: {msg}", file=sys.stderr, flush=True)


# The code every stage subprocess runs: a copy of stages/ and src/ taken once per process
# (freeze_code), so edits to the working tree while the suite runs cannot change outputs
# between a reference run and a rerun.
CODE: Path | None = None


def freeze_code(scratch: Path) -> Path:
    global CODE
    if CODE is None or not CODE.exists():
        dst = Path(tempfile.mkdtemp(prefix="code-", dir=scratch))
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(ROOT / "stages", dst / "stages", ignore=ignore)
        shutil.copytree(ROOT / "src", dst / "src", ignore=ignore)
        CODE = dst
    return CODE


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def task_entry(params: dict) -> dict:
    """params.yaml's entry for TASK; a clear error when the file no longer lists it."""
    try:
        return params["tasks"][TASK]
    except (KeyError, TypeError):
        raise KeyError(f"params.yaml: tasks: no task {TASK!r}, which the faults suite feeds "
                       "(tests/fixtures hold its sources and gold)") from None


def snapshot_path() -> Path:
    """The committed real snapshot of TASK (params.yaml tasks.<task>.snapshot)."""
    return ROOT / task_entry(repo_params())["snapshot"]


def stage_env() -> dict[str, str]:
    # TUNEFORGE_CACHE: each root's own .cache (eval's answer memo stays in the root, scanned
    # for secrets and absent from a kill point's starting state); the tiny chain links the
    # shared downloads into it (tiny.write_tiny_params)
    env = dict(os.environ, TQDM_DISABLE="1", DVC_NO_ANALYTICS="1", PYTHONHASHSEED="0", TUNEFORGE_CACHE=".cache",
               GIT_AUTHOR_NAME="faults", GIT_AUTHOR_EMAIL="faults@example.invalid",
               GIT_COMMITTER_NAME="faults", GIT_COMMITTER_EMAIL="faults@example.invalid")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    code = CODE or ROOT  # PYTHONPATH comes before the editable install's src on sys.path
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), str(code / "src"), env.get("PYTHONPATH")) if p)
    return env


def base_params(v1: bool = True) -> dict:
    """The repo's params for a scratch root: TASK alone (so dvc.yaml's foreach builds just it),
    its snapshot the root's snapshot/ directory."""
    params = repo_params()
    params["tasks"] = {TASK: {**task_entry(params), "snapshot": "snapshot"}}
    params["evidence"]["replay_labels"] = False  # the fixtures' entries were never replayed
    if v1:  # the fixture-sized runs use the dataset v1 knobs (no hand labels, no augmentation)
        params["evidence"]["human_labels"] = False
        params["export"].update(hint_drop_rate=0.0, hint_swap_rate=0.0, unknown_augment=0)
    return params


def make_root(root: Path, files: dict[str, bytes], gold_rows: list[dict] | None = None,
              params: dict | None = None) -> Path:
    """A pipeline root: params.yaml, dvc.yaml (each stage reads the params its entry declares),
    snapshot/ holding `files`, TASK's gold file."""
    params = params or base_params()
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    for rel, data in files.items():
        p = root / "snapshot" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "snapshot").mkdir(exist_ok=True)
    gold = root / task_entry(params)["gold"]
    gold.parent.mkdir(parents=True, exist_ok=True)
    if gold_rows is None:
        shutil.copy(GOLD_MINI, gold)
    else:
        gold.write_text("".join(json.dumps(r) + "\n" for r in gold_rows), encoding="utf-8")
    return root


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_inproc(root: Path) -> tuple[str, str] | None:
    """Run the data stages in this process; None, or (stage, traceback) of the first failure."""
    import importlib

    os.environ.setdefault("TQDM_DISABLE", "1")
    if str(ROOT) not in sys.path:  # `stages` is a top-level package of the repo, not installed
        sys.path.insert(0, str(ROOT))
    with chdir(root):
        for name in DATA_STAGES:
            stage = importlib.import_module(f"stages.{name}")
            try:
                rc = stage.main([TASK])
            except BaseException as e:  # noqa: BLE001 - any escape is a crash we count
                if isinstance(e, KeyboardInterrupt):
                    raise
                return name, "".join(traceback.format_exception_only(type(e), e)).strip()
            if rc != 0:
                return name, f"exit status {rc}"
    return None


def stage_cmd(stage: str) -> list[str]:
    """A stage as dvc.yaml runs it: `python -m stages.<stage> <task>`; base, shared by every task, bare."""
    return [sys.executable, "-m", f"stages.{stage}", *([] if stage == "base" else [TASK])]


def run_stage(root: Path, stage: str, logs: Path | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(stage_cmd(stage), cwd=root, env=stage_env(), capture_output=True, text=True,
                         timeout=timeout)
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{stage}.log", "a", encoding="utf-8") as f:
            f.write(out.stdout + out.stderr)
    return out


def sh(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=stage_env(), capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {cwd} failed ({out.returncode}):\n"
                           f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out


def copy_root(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def init_dvc_repo(root: Path, stages: tuple[str, ...]) -> None:
    """Turn a pipeline root into a git+DVC project reduced to `stages` (as tests/test_remote.py).
    The full dvc.yaml comes back with full_pipeline (the model stages read their entries)."""
    for name in ("stages", "src"):
        shutil.copytree((CODE or ROOT) / name, root / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in stages}
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    for rel in (task_entry(repo_params())["human_labels"],):
        if (ROOT / rel).exists() and not (root / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, root / rel)
    replay_log = root / task_entry(repo_params())["replay_log"]  # the fixtures' entries were never replayed
    if not replay_log.exists():
        replay_log.parent.mkdir(parents=True, exist_ok=True)
        replay_log.write_text("")
    sh(["git", "init", "-q", "-b", "main"], root)
    sh(["dvc", "init", "-q"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "scratch"], root)


def full_pipeline(root: Path) -> None:
    """The repo's whole dvc.yaml in `root`: what a model stage reads its declared params from."""
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
