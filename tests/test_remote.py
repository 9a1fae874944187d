"""The remote round trip against a real S3 protocol server on loopback (moto).

Builds the data half in a scratch git+DVC repo, pushes to S3, clones fresh, pulls,
and checks: `dvc status` is clean, `dvc repro` runs nothing, and no credential
lands in a tracked file. Also: a consumer can pull a single artifact.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import FIXTURES, ROOT

moto_server = pytest.importorskip("moto.server")
DATA_STAGES = ("backfill", "evidence", "score", "export")
MOTO_ID, MOTO_SIG = "moto-access-key-id", "-".join(["moto", "secret", "access", "key", "value"])


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


@pytest.fixture
def s3(monkeypatch):
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    # Credentials live in the environment only: nothing below writes them anywhere.
    env = dict(os.environ, DVC_NO_ANALYTICS="1", TQDM_DISABLE="1", AWS_DEFAULT_REGION="us-east-1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update({"AWS_ACCESS_KEY_ID": MOTO_ID, "AWS_SECRET_ACCESS_KEY": MOTO_SIG})
    import boto3
    boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id=MOTO_ID,
                 aws_secret_access_key=MOTO_SIG, region_name="us-east-1").create_bucket(Bucket="tuneforge")
    yield f"http://{host}:{port}", env
    server.stop()


def make_project(root: Path, endpoint: str, env: dict) -> None:
    """A copy of the project reduced to the data stages, on the fixture snapshot."""
    root.mkdir()
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(FIXTURES / "sources", root / "snapshot")
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in DATA_STAGES}
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"] = {"changelog-actions": params["tasks"]["changelog-actions"]}  # one task: the fixtures'
    params["tasks"]["changelog-actions"]["snapshot"] = "snapshot"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for rel in ("data/gold/holdout.jsonl", "data/labeled/train.jsonl"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, root / rel)
    (root / "data/replay").mkdir(parents=True)
    (root / "data/replay/changelog-actions.jsonl").write_text("")  # the fixtures' entries were never replayed
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(["git", "config", "user.email", "ci@example.invalid"], root, env)
    sh(["git", "config", "user.name", "ci"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["dvc", "remote", "add", "-d", "s3", "s3://tuneforge/cache"], root, env)
    sh(["dvc", "remote", "modify", "s3", "endpointurl", endpoint], root, env)


def test_push_clone_pull_is_clean_and_rebuilds_nothing(s3, tmp_path):
    endpoint, env = s3
    origin = tmp_path / "origin"
    make_project(origin, endpoint, env)
    sh(["dvc", "repro"], origin, env)
    sh(["git", "add", "-A"], origin, env)
    sh(["git", "commit", "-q", "-m", "build"], origin, env)
    sh(["dvc", "push"], origin, env)

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    assert not (clone / "data/changelog-actions/entries.jsonl").exists()
    sh(["dvc", "pull"], clone, env)
    entries = "data/changelog-actions/entries.jsonl"
    assert (clone / entries).read_bytes() == (origin / entries).read_bytes()
    status = sh(["dvc", "status"], clone, env)
    assert "up to date" in status, status
    repro = sh(["dvc", "repro"], clone, env)
    assert "Running stage" not in repro, repro

    # credentials never reached a tracked file
    tracked = sh(["git", "ls-files"], clone, env).split()
    for rel in tracked:
        text = (clone / rel).read_bytes()
        assert MOTO_SIG.encode() not in text and MOTO_ID.encode() not in text, rel

    # a consumer who wants one artifact pulls only that
    consumer = tmp_path / "consumer"
    sh(["git", "clone", "-q", str(origin), str(consumer)], tmp_path, env)
    sh(["dvc", "pull", "data/changelog-actions/exports/sft"], consumer, env)
    assert (consumer / "data/changelog-actions/exports/sft/train.jsonl").exists()
    assert not (consumer / "data/changelog-actions/entries.jsonl").exists()


def test_no_tracked_file_holds_a_credential():
    from tuneforge.redact import find_secrets

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    assert files
    leaks = {}
    for rel in files:
        path = ROOT / rel
        if not path.is_file() or path.stat().st_size > 5_000_000 or path.suffix == ".gz":
            continue
        found = find_secrets(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            leaks[rel] = found
    assert leaks == {}


def test_default_remote_verifies_what_it_pulls():
    """DVC trusts remote objects unless the remote says `verify = true`; the faults suite
    showed a corrupt object then reaches the workspace. The tracked default remote verifies."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    default = config["core"]["remote"]
    assert config[f"'remote \"{default}\"'"].get("verify") == "true"  # DVC quotes the name
