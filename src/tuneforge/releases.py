"""Release names: RELEASES, the committed `<version> <commit>` list that `make release`
appends to. Git tags are not in every clone (a fresh machine's work tree came without them;
`make tags` recreates them from this file), so anything a stage reads "at a release" resolves
the name here first: the build's outputs cannot depend on whether this clone has the tag."""
from __future__ import annotations

import subprocess
from pathlib import Path

RELEASES = Path("RELEASES")


def release_commits(root: str | Path = ".") -> dict[str, str]:
    """Every release named in root/RELEASES, version -> full commit; {} without the file.
    A line that is not `<version> <40-hex commit>` is an error naming the file and line."""
    path = Path(root) / RELEASES
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) != 40 or any(c not in "0123456789abcdef" for c in parts[1]):
            raise ValueError(f"{path}:{i}: not '<version> <40-hex commit>': {line!r}")
        if parts[0] in out and out[parts[0]] != parts[1]:
            raise ValueError(f"{path}:{i}: {parts[0]} listed twice, at two commits")
        out[parts[0]] = parts[1]
    return out


def resolve(rev: str, root: str | Path = ".") -> str:
    """The commit RELEASES records for the release `rev`; any other revision as given
    (a commit, or a tag RELEASES does not list, for git to resolve)."""
    return release_commits(root).get(rev, rev)


def read_at(rev: str, path: str | Path, root: str | Path = ".") -> tuple[str | None, str]:
    """The text of `path` as committed at `rev` (a release RELEASES lists, read at its commit;
    any other revision as git resolves it), with `git show`: no checkout and no tag needed.
    Returns (text, rev), or (None, why not) where there is no git, no such revision or no such
    file there; `why` starts with `rev` as given, so a message names the release, not its hash."""
    try:
        out = subprocess.run(["git", "show", f"{resolve(rev, root)}:{Path(path).as_posix()}"], cwd=root,
                             capture_output=True, text=True, check=False)
    except OSError as e:  # no git on this machine
        return None, f"{rev}: not read ({e})"
    if out.returncode != 0:
        why = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"git show exited {out.returncode}"
        return None, f"{rev}: not read ({why})"
    return out.stdout, rev
