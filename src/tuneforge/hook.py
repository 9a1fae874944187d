"""A git prepare-commit-msg hook that fills a plain `git commit`'s message from the promoted
commit-messages model.

Run: python -m tuneforge.hook install --repo PATH [--force] [--product NAME] [--command CMD]
     (make install-hook REPO=path [FORCE=1])

install writes REPO's prepare-commit-msg hook (where git looks for it: .git/hooks, or
core.hooksPath): a small POSIX sh script with this project's directory and Python baked in as
absolute paths. On a plain `git commit` (no -m/-F/-t, merge, squash, amend: git's second hook
argument is empty) it pipes `git diff --cached` to
    <this project's python> -m tuneforge.predict --task commit-messages --format git --product NAME
run in this project's directory (so predict runs the task's promoted model, as it always does),
and writes the message above what the message file holds (git's comment lines); predict's
`predict: note: ` lines (the staged junk paths the answer's `ignore` names) go to stderr, where
git shows them. With nothing staged, or when predict fails, it leaves the file as it was, says
why in one line on stderr and exits 0: the hook never blocks a commit. --command replaces the
predict command (any program that reads the diff on stdin and prints the message); tests use it.

A hook already there that is not tuneforge's is refused unless --force (it is kept beside, as
prepare-commit-msg.tuneforge-backup); tuneforge's own is replaced, so installing twice gives the
same file. A REPO that is not a git work tree is refused.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tuneforge.cli import ArgumentParser, UserError, run
from tuneforge.io import atomic_path

HOOK = "prepare-commit-msg"
MARKER = "# tuneforge prepare-commit-msg hook"  # how install knows a hook is its own
TASK = "commit-messages"

SCRIPT = """#!/bin/sh
{marker} (python -m tuneforge.hook install; installing again replaces it).
# Fills the message of a plain `git commit` from the promoted {task} model, above git's comment
# lines. It never blocks a commit: whatever fails, the message file is left as it was.
[ -z "$2" ] || exit 0  # -m, -F, -t, merge, squash, amend, -c/-C: the message is someone's already
msg=$1
say() {{ echo "tuneforge hook: $1; the message is left as it was" >&2; exit 0; }}
tmp=$(mktemp -d "${{TMPDIR:-/tmp}}/tuneforge-hook.XXXXXX") || say "no temporary directory"
trap 'rm -rf "$tmp"' EXIT
# the diff as the model was trained on it, whatever this repository's diff settings (noprefix, color)
git diff --cached --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/ >"$tmp/diff" 2>"$tmp/err" \\
  || say "git diff --cached failed ($(tail -n 1 "$tmp/err"))"
[ -s "$tmp/diff" ] || say "nothing staged to describe"
# the command runs in the tuneforge project, outside this repository's git environment
(unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX; cd {project} && exec {command}) \\
  <"$tmp/diff" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || say "no message: the command exited $rc ($(tail -n 1 "$tmp/err"))"
[ -s "$tmp/out" ] || say "no message: the command printed nothing"
cat "$tmp/out" "$msg" >"$tmp/msg" && cat "$tmp/msg" >"$msg" || say "could not write $msg"
# what the message cannot say (staged junk to unstage), as predict noted it
sed -n 's/^predict: note: /tuneforge hook: /p' "$tmp/err" >&2
exit 0
"""


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def hook_path(repo: Path) -> Path:
    """Where git runs REPO's prepare-commit-msg from; a UserError when REPO is not a work tree."""
    if not repo.is_dir():
        raise UserError(f"--repo {repo}: no such directory; name a git repository's work tree")
    inside = git(repo, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise UserError(f"--repo {repo}: not a git work tree (git rev-parse --is-inside-work-tree: "
                        f"{(inside.stdout + inside.stderr).strip().splitlines()[0]}); name a repository "
                        "you commit in")
    path = git(repo, "rev-parse", "--path-format=absolute", "--git-path", f"hooks/{HOOK}")
    if path.returncode != 0:
        raise UserError(f"--repo {repo}: git cannot say where its hooks are ({path.stderr.strip()})")
    return Path(path.stdout.strip())


def predict_command(product: str | None) -> str:
    """This project's predict on the task, by absolute path: the hook runs from another repository.
    sys.executable is not resolved: a venv's python is a link that must stay the venv's."""
    argv = [os.path.abspath(sys.executable), "-m", "tuneforge.predict", "--task", TASK, "--format", "git"]
    return shlex.join(argv + (["--product", product] if product else []))


def script(project: Path, command: str) -> str:
    return SCRIPT.format(marker=MARKER, task=TASK, project=shlex.quote(str(project)), command=command)


def install(repo: Path, project: Path, command: str, force: bool = False) -> Path:
    """Write REPO's hook; a foreign hook there is refused unless `force` (then kept beside)."""
    hook = hook_path(repo)
    if hook.exists() or hook.is_symlink():
        ours = hook.is_file() and MARKER in hook.read_text(encoding="utf-8", errors="replace")
        if not ours and not force:
            raise UserError(f"{hook}: a {HOOK} hook is there already and it is not tuneforge's; keep it, "
                            "or replace it with FORCE=1 (make) / --force (it is kept as "
                            f"{hook.name}.tuneforge-backup)")
        if not ours:
            os.replace(hook, hook.with_name(f"{hook.name}.tuneforge-backup"))
    with atomic_path(hook) as tmp:
        tmp.write_text(script(project, command), encoding="utf-8")
        tmp.chmod(0o755)
    return hook


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m tuneforge.hook", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    ins = sub.add_parser("install", help=f"install the {HOOK} hook in a repository")
    ins.add_argument("--repo", required=True, help="the git work tree to install the hook in")
    ins.add_argument("--force", action="store_true", help="replace a hook that is not tuneforge's (kept beside)")
    ins.add_argument("--product", help="the product predict is told (default: the repository's directory name; "
                     "'' for none)")
    ins.add_argument("--command", help="run this shell command instead of predict (diff on stdin, message on "
                     "stdout); for tests")
    ins.add_argument("--project", default=".", help="this tuneforge project's directory (default: the current "
                     "one)")
    args = ap.parse_args(argv)
    project = Path(args.project).resolve()
    if not (project / "params.yaml").is_file():
        ap.error(f"--project {args.project}: no params.yaml there; run from the tuneforge project's root "
                 "(make install-hook does) or pass --project DIR")
    repo = Path(args.repo).absolute()
    hook_path(repo)  # a bad --repo fails before --product asks git anything else
    if args.product is None:
        args.product = Path(git(repo, "rev-parse", "--show-toplevel").stdout.strip()).name
    hook = install(repo, project, args.command or predict_command(args.product), args.force)
    print(f"installed {hook}: a plain `git commit` in {repo} now starts from the {TASK} model's message "
          f"(predict run in {project})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.hook"))
