"""tuneforge.recover: what a killed `dvc repro` leaves half-written (DVC writes its rwlock and
dvc.lock in place) no longer stops the next one. The kill suite (tests/test_faults.py) meets
both under load; here each is planted in a scratch repository and DVC is shown to fail on it
first."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge import recover

DVC = str(Path(sys.executable).with_name("dvc"))


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """git + DVC, one stage built and committed with its dvc.lock."""
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"]):
        assert run(cmd, tmp_path).returncode == 0
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n"
                                       "    outs: [out.txt]\n")
    assert run([DVC, "repro", "-q"], tmp_path).returncode == 0
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                                       "commit", "-qm", "build"]):
        assert run(cmd, tmp_path).returncode == 0, cmd
    return tmp_path


def test_a_truncated_rwlock_is_removed_and_dvc_runs_again(repo):
    (repo / recover.RWLOCK).write_text('{"read": {"in.txt": [{"pid": 1, "cm')  # killed mid-write
    assert "JSON structure is corrupted" in run([DVC, "repro"], repo).stderr
    done = recover.recover(repo)
    assert len(done) == 1 and done[0].startswith(f"removed {recover.RWLOCK}: not JSON")
    assert run([DVC, "status"], repo).returncode == 0


def test_a_truncated_dvc_lock_is_restored_from_git(repo):
    committed = (repo / "dvc.lock").read_text()
    (repo / "dvc.lock").write_text("")  # opened for writing, killed before a byte (the kill suite's case)
    assert run([DVC, "status"], repo).returncode != 0
    done = recover.recover(repo)
    assert len(done) == 1 and done[0].startswith("restored dvc.lock from git HEAD")
    assert (repo / "dvc.lock").read_text() == committed
    assert "up to date" in run([DVC, "status"], repo).stdout


def test_an_empty_uncommitted_dvc_lock_is_removed(repo):
    assert run(["git", "rm", "-q", "--cached", "dvc.lock"], repo).returncode == 0
    assert run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "no lock"],
               repo).returncode == 0
    (repo / "dvc.lock").write_text("")
    assert run([DVC, "status"], repo).returncode != 0
    assert recover.recover(repo)[0].startswith("removed dvc.lock: it was unreadable")
    assert not (repo / "dvc.lock").exists()
    assert run([DVC, "repro", "-q"], repo).returncode == 0


def test_readable_files_are_left_alone(repo):
    (repo / recover.RWLOCK).write_text('{"read": {}, "write": {}}')
    before = {p: (repo / p).read_bytes() for p in (recover.RWLOCK, recover.LOCKFILE)}
    assert recover.recover(repo) == []
    assert {p: (repo / p).read_bytes() for p in before} == before


def test_it_waits_for_no_one_while_a_dvc_command_holds_the_repo(repo):
    from dvc.lock import LockError
    from dvc.repo import Repo

    (repo / recover.RWLOCK).write_text("")
    with Repo(str(repo)).lock, pytest.raises(LockError):
        recover.recover(repo)
    assert (repo / recover.RWLOCK).exists()  # untouched while another command held the lock
