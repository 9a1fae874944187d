"""Versions and the remote, on the whole twelve-stage pipeline with a tiny random-weight model.

One module-scoped build: a scratch git+DVC repository holding a copy of the project
(stages/, src/, dvc.yaml, params.yaml, the fixture snapshot, the real gold holdout and
hand labels) runs `dvc repro` end to end on a tiny llama with SmolLM2's real tokenizer,
is tagged v1 (dataset v1 knobs), rebuilt with the dataset v2 knobs and tagged v2, and
pushed (both tags) to moto's S3 server on loopback. The tests then check, with the
real `dvc` CLI:

- `dvc metrics diff v1 v2` lists kind agreement and every other eval and train figure
  (JSON and the human-readable table), with each version's own values;
- `dvc plots diff v1 v2` renders every plot dvc.yaml declares, for both revisions;
- a fresh clone + `dvc pull` is clean, `dvc repro` runs no stage, every GGUF matches
  its pin (SHA256SUMS and the registry), and v1 can be checked out from the remote too;
- a consumer pulling one GGUF gets that file and nothing else;
- `dvc exp run -S eval.<param>=<value>` runs, and `dvc exp show` lists the run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools.faults.tiny import TINY_IMATRIX

pytest.importorskip("torch")
pytest.importorskip("llama_cpp")
moto_server = pytest.importorskip("moto.server")
pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CACHE = Path(os.environ.get("TUNEFORGE_CACHE", ROOT / ".cache"))
NAME = "tuneforge-changelog-actions"
TASK = "changelog-actions"
_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
QUANTS = tuple(_PARAMS["quantize"]["types"])  # the ladder
DECODED = tuple(t for t in QUANTS if t not in _PARAMS["eval"]["fidelity_only"])  # with figures in metrics.json
GGUFS = [f"models/changelog-actions/gguf/{NAME}-{t}.gguf" for t in ("f16", "base-f16", *QUANTS)]
# fake credentials for the loopback server, assembled at runtime (the tracked-file scan)
MOTO_ID, MOTO_SIG = "moto-versions-key-id", "-".join(["moto", "versions", "secret", "value"])

# Dataset versions: v1 has every v2 knob off; v2 turns them on (smaller augmentation than
# the default build's 400 rows, to fit the tiny snapshot).
V1 = {"evidence": {"human_labels": False},
      "export": {"hint_drop_rate": 0.0, "hint_swap_rate": 0.0, "unknown_augment": 0}}
V2 = {"evidence": {"human_labels": True},
      "export": {"hint_drop_rate": 0.2, "hint_swap_rate": 0.1, "unknown_augment": 24}}


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def dvc_json(args: list[str], cwd: Path, env: dict):
    out = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_params(root: Path, sections: dict) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def leaves(tree, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics file, keyed the way DVC names them (a.b.c)."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(leaves(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix[:-1]: tree}
    return {}


def dvc_outs(root: Path) -> list[str]:
    """Every output dvc.lock records that lives in the DVC cache (cache: false ones are
    committed to git instead)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    paths = {o["path"] for s in lock["stages"].values() for o in s.get("outs", [])}
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                                 check=True).stdout.split())
    return sorted(p for p in paths
                  if p not in tracked and not any(t.startswith(p + "/") for t in tracked))


# ---------------------------------------------------------------- the module-scoped build

# tiny_base: the session fixture in conftest.py

@pytest.fixture(scope="module")
def s3():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = dict(os.environ, DVC_NO_ANALYTICS="1", TQDM_DISABLE="1", AWS_DEFAULT_REGION="us-east-1",
               TUNEFORGE_CACHE=str(CACHE),  # the shared pip downloads (converter sdist)
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               # stages import the project copy's own src/ (dvc runs them in the repo root)
               PYTHONPATH="src", OMP_NUM_THREADS="1", GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.invalid",
               GIT_COMMITTER_NAME="ci", GIT_COMMITTER_EMAIL="ci@example.invalid")
    env.update({"AWS_ACCESS_KEY_ID": MOTO_ID, "AWS_SECRET_ACCESS_KEY": MOTO_SIG})
    import boto3
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=MOTO_ID,
                 aws_secret_access_key=MOTO_SIG, region_name="us-east-1").create_bucket(Bucket="tuneforge")
    yield endpoint, env
    server.stop()


def make_project(root: Path, base: Path, endpoint: str, env: dict) -> None:
    """The whole project (twelve stages) on the fixture snapshot and a tiny base model."""
    root.mkdir()
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(FIXTURES / "sources", root / "snapshot")
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, root / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"] = {TASK: params["tasks"][TASK]}  # one task: the fixtures hold its sources and gold
    params["tasks"][TASK]["snapshot"] = "snapshot"
    # one thread everywhere: a model this small gains nothing from more, and on a shared
    # 2-core machine llama.cpp's spinning threads make a busy box 5-10x slower
    params["base"] = {"source": "hf-dir", "path": str(base), "name": "tiny-llama"}
    params["train"].update(max_steps=4, batch_size=2, valid_examples=2, logging_steps=1,
                           warmup_steps=1, num_threads=1, lora_layers=1)  # of the tiny model's 2 blocks
    params["quantize"].update(nthread=1, **TINY_IMATRIX)
    params["eval"].update(holdout_limit=4, hf_subset=2, max_tokens=16, n_ctx=512, n_threads=1,
                          min_support=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for rel in ("data/gold/holdout.jsonl", "data/labeled/train.jsonl"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, root / rel)
    (root / "data/replay").mkdir(parents=True)
    (root / "data/replay/changelog-actions.jsonl").write_text("")  # the fixtures' entries were never replayed
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["dvc", "remote", "add", "-d", "s3", "s3://tuneforge/cache"], root, env)
    sh(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], root, env)


def build_version(root: Path, version: str, knobs: dict, env: dict) -> str:
    set_params(root, knobs)
    out = sh(["dvc", "repro"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-q", "-m", f"build {version}"], root, env)
    sh(["git", "tag", version], root, env)
    return out


@pytest.fixture(scope="module")
def project(tiny_base, s3, tmp_path_factory):
    """origin: v1 and v2 built, committed, tagged, and both pushed to S3."""
    endpoint, env = s3
    origin = tmp_path_factory.mktemp("versions") / "origin"
    make_project(origin, tiny_base, endpoint, env)
    logs = {"v1": build_version(origin, "v1", V1, env)}
    logs["v2"] = build_version(origin, "v2", V2, env)
    sh(["dvc", "push", "--all-tags"], origin, env)
    return origin, env, logs


def clone(origin: Path, dest: Path, env: dict) -> Path:
    sh(["git", "clone", "-q", str(origin), str(dest)], dest.parent, env)
    return dest


# ---------------------------------------------------------------- versions

def test_both_versions_ran_the_whole_pipeline(project):
    origin, env, logs = project
    stages = ("backfill", "evidence", "score", "export", "base", "train", "merge", "convert", "quantize",
              "eval", "register")
    def ran(stage: str, log: str) -> bool:
        return f"Running stage '{stage if stage == 'base' else f'{stage}@{TASK}'}'" in log

    for stage in stages:
        assert ran(stage, logs["v1"]), stage
    # v2 changes evidence/export knobs only: backfill and base are skipped, export and the
    # model half from train on rerun
    assert not ran("backfill", logs["v2"]) and not ran("base", logs["v2"])
    for stage in ("evidence", "export", *stages[5:]):
        assert ran(stage, logs["v2"]), stage
    status = sh(["dvc", "status"], origin, env)
    assert "up to date" in status, status


def test_metrics_diff_lists_every_figure(project):
    origin, env, _ = project
    old = {f: json.loads(sh(["git", "show", f"v1:{f}"], origin, env))
           for f in ("reports/changelog-actions/metrics.json", "reports/changelog-actions/train/metrics.json")}
    new = {f: json.loads((origin / f).read_text()) for f in old}
    eval_figures = leaves(new["reports/changelog-actions/metrics.json"])
    assert {f"Q8_0.{k}" for k in ("kind_agreement", "severity_agreement", "parse_rate",
                                  "macro_f1")} <= set(eval_figures)

    # --all: figures equal in both versions are listed too (a random model often ties)
    diff = dvc_json(["metrics", "diff", "v1", "v2", "--all", "--json"], origin, env)
    for f in old:
        want, was = leaves(new[f]), leaves(old[f])
        assert set(want) <= set(diff[f]), (f, sorted(set(want) - set(diff[f])))
        for key, value in want.items():
            assert diff[f][key]["new"] == value, (f, key)
            assert diff[f][key]["old"] == was.get(key), (f, key)
    for model in ("base", *DECODED, "f16", "merged_hf"):
        assert f"{model}.kind_agreement" in diff["reports/changelog-actions/metrics.json"], model
    # the training data changed between versions, so the loss did
    train = diff["reports/changelog-actions/train/metrics.json"]["train_loss"]
    assert train["old"] != train["new"] and train["diff"] != 0

    # the plain command (what the README shows) prints the changed figures in a table
    table = sh(["dvc", "metrics", "diff", "v1", "v2"], origin, env)
    assert "reports/changelog-actions/train/metrics.json" in table and "train_loss" in table
    changed = [k for k, v in diff["reports/changelog-actions/metrics.json"].items() if v.get("diff")]
    for key in changed:
        assert key in table, key
    table_all = sh(["dvc", "metrics", "diff", "v1", "v2", "--all"], origin, env)
    for key in (*(f"{q}.kind_agreement" for q in DECODED), "base.kind_agreement",
                "Q8_0.parse_rate", "Q8_0.macro_f1", "Q8_0.severity_agreement"):
        assert key in table_all, key


def test_plots_diff_renders_every_declared_plot(project, tmp_path):
    origin, env, _ = project
    declared = {"reports/changelog-actions/train/loss.csv", "reports/changelog-actions/eval/confusion.json",
                "reports/changelog-actions/eval/per_kind.csv", "reports/changelog-actions/eval/ladder.csv",
                "reports/changelog-actions/fidelity/kl_size.csv"}
    pipeline = yaml.safe_load((origin / "dvc.yaml").read_text())
    params = yaml.safe_load((origin / "params.yaml").read_text())
    from_yaml = set()
    for stage in pipeline["stages"].values():
        for p in stage.get("do", stage).get("plots", []):
            path = next(iter(p)) if isinstance(p, dict) else p
            from_yaml |= {path.replace("${key}", task) for task in params["tasks"]}
    assert from_yaml == declared

    rendered = dvc_json(["plots", "diff", "v1", "v2", "--json"], origin, env)
    assert not rendered.get("errors"), rendered.get("errors")
    data = rendered["data"]
    assert set(data) == declared, sorted(data)
    for plot in declared:
        (spec,) = data[plot]  # one vega spec per plot, both revisions in it
        assert spec["type"] == "vega" and spec["revisions"] == ["v1", "v2"], (plot, spec["revisions"])
        values = spec["content"]["data"]["values"]
        for rev in ("v1", "v2"):
            text = sh(["git", "show", f"{rev}:{plot}"], origin, env)
            rows = json.loads(text) if plot.endswith(".json") else list(csv.DictReader(io.StringIO(text)))
            points = [v for v in values if v["rev"] == rev]
            assert rows and len(points) == len(rows), (plot, rev, len(points), len(rows))
    # the loss curve's points are each version's own loss.csv
    for rev in ("v1", "v2"):
        loss_csv = sh(["git", "show", f"{rev}:reports/changelog-actions/train/loss.csv"], origin, env)
        rows = csv.DictReader(io.StringIO(loss_csv))
        points = [v for v in data["reports/changelog-actions/train/loss.csv"][0]["content"]["data"]["values"]
                  if v["rev"] == rev]
        assert [float(r["loss"]) for r in rows] == [float(v["loss"]) for v in points], rev

    out = tmp_path / "plots"
    sh(["dvc", "plots", "diff", "v1", "v2", "-o", str(out)], origin, env)
    html = (out / "index.html").read_text()
    for plot in declared:
        assert plot in html, plot


# ---------------------------------------------------------------- the remote round trip

def test_fresh_clone_pulls_clean_rebuilds_nothing_and_matches_pins(project, tmp_path):
    origin, env, _ = project
    work = clone(origin, tmp_path / "clone", env)
    for rel in GGUFS:
        assert not (work / rel).exists()
    sh(["dvc", "pull"], work, env)
    status = sh(["dvc", "status"], work, env)
    assert "up to date" in status, status
    cloud = sh(["dvc", "status", "--cloud"], work, env)
    assert "in sync" in cloud, cloud
    repro = sh(["dvc", "repro"], work, env)
    assert "Running stage" not in repro, repro

    # every GGUF equals its pin, and the same bytes origin built
    from tuneforge.gguf_tools import read_sums

    sums = read_sums(work / "models/changelog-actions/gguf")
    assert set(sums) == {Path(g).name for g in GGUFS}
    for rel in GGUFS:
        digest = sha256(work / rel)
        assert digest == sums[Path(rel).name] == sha256(origin / rel), rel
    registry = json.loads((work / "models/changelog-actions/registry.json").read_text())
    assert [e["quantization"] for e in registry["models"]] == list(QUANTS)
    for entry in registry["models"]:
        assert entry["sha256"] == sha256(work / entry["gguf"]), entry["gguf"]

    # the other version comes back from the remote too
    sh(["git", "checkout", "-q", "v1"], work, env)
    sh(["dvc", "pull"], work, env)
    status = sh(["dvc", "status"], work, env)
    assert "up to date" in status, status
    v1_sums = read_sums(work / "models/changelog-actions/gguf")
    assert v1_sums != sums  # different training data, different weights
    for rel in GGUFS:
        assert sha256(work / rel) == v1_sums[Path(rel).name], rel

    # credentials never reached a tracked file
    for rel in sh(["git", "ls-files"], work, env).split():
        text = (work / rel).read_bytes()
        assert MOTO_SIG.encode() not in text and MOTO_ID.encode() not in text, rel


def test_consumer_pulls_only_the_model(project, tmp_path):
    origin, env, _ = project
    work = clone(origin, tmp_path / "consumer", env)
    cached = dvc_outs(work)
    want = f"models/changelog-actions/gguf/{NAME}-Q8_0.gguf"
    assert want in cached and f"models/{TASK}/merged" in cached and f"data/{TASK}/entries.jsonl" in cached
    sh(["dvc", "pull", want], work, env)
    assert sha256(work / want) == sha256(origin / want)
    from tuneforge.gguf_tools import verify_pin

    verify_pin(work / want)  # SHA256SUMS is git-tracked, so the clone has the pin
    assert [p for p in cached if p != want and (work / p).exists()] == []
    objects = [p for p in (work / ".dvc/cache").rglob("*") if p.is_file()]
    assert len(objects) == 1, objects  # one object fetched: the GGUF's


# ---------------------------------------------------------------- experiments

def test_exp_run_with_a_param_and_exp_show_lists_it(project, tmp_path):
    """An eval param: the experiment reruns eval and register only (answers come from the
    memo), which keeps this test cheap; v2's build above is the one that retrains."""
    origin, env, _ = project
    work = clone(origin, tmp_path / "exp", env)
    sh(["dvc", "pull"], work, env)
    out = sh(["dvc", "exp", "run", "-n", "support2", "-S", "eval.min_support=2"], work, env)
    for stage in ("eval", "register"):
        assert f"Running stage '{stage}@{TASK}'" in out, stage
    for stage in ("export", "train", "quantize"):
        assert f"Running stage '{stage}@" not in out, stage  # upstream of the param: untouched
    assert "Running stage 'base'" not in out

    shown = dvc_json(["exp", "show", "--json"], work, env)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    runs = {r["name"]: r for e in exps for r in (e.get("revs") or [])}
    assert "support2" in runs, json.dumps(shown)[:2000]
    data = runs["support2"]["data"]
    assert data["params"]["params.yaml"]["data"]["eval"]["min_support"] == 2
    metrics = data["metrics"]
    assert "kind_agreement" in metrics["reports/changelog-actions/metrics.json"]["data"]["Q8_0"]
    assert "kl_mean" in metrics["reports/changelog-actions/fidelity.json"]["data"]["models"]["Q8_0"]

    table = sh(["dvc", "exp", "show", "--csv"], work, env)
    rows = list(csv.DictReader(io.StringIO(table)))
    named = [r for r in rows if r.get("Experiment") == "support2"]
    assert named, table[:2000]
    assert named[0]["eval.min_support"] == "2" and named[0]["Q8_0.kind_agreement"] != ""
    assert named[0]["train_loss"] != ""
    baseline = [r for r in rows if r.get("rev") == "main"]
    assert baseline and baseline[0]["eval.min_support"] == "1"
