"""What git tracks: no symlinks, and never the local environment. Session 28 committed a
scratch worktree's `.venv` symlink (`.gitignore` said `.venv/`, which matches directories
only); the fast-forward in the main checkout then replaced the real venv with that link."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(repo: Path, *args: str) -> str:
    # no global or system config: a user's core.excludesFile must not decide what is ignored
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def tracked_links(repo: Path) -> list[str]:
    """Tracked paths git stores as symlinks (mode 120000)."""
    return [line.split("\t", 1)[1] for line in git(repo, "ls-files", "-s").splitlines()
            if line.startswith("120000 ")]


def test_no_tracked_path_is_a_symlink():
    assert tracked_links(ROOT) == []


def test_the_gitignore_keeps_a_venv_link_out_of_git_add_all(tmp_path):
    """A worktree's `.venv` linked to the main venv is ignored like the directory itself."""
    git(tmp_path, "init", "-q")
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    (tmp_path / "venv-elsewhere").mkdir()
    (tmp_path / ".venv").symlink_to(tmp_path / "venv-elsewhere")
    (tmp_path / "venv-elsewhere" / "keep.txt").write_text("x")
    git(tmp_path, "add", "-A")
    assert ".venv" not in git(tmp_path, "ls-files").split()
    assert tracked_links(tmp_path) == []


def test_tracked_links_sees_a_staged_link(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "link").symlink_to("somewhere")
    git(tmp_path, "add", "link")
    assert tracked_links(tmp_path) == ["link"]
