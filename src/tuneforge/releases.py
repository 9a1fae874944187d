"""Release names: RELEASES, the committed `<version> <commit>` list that `make release`
appends to. Git tags are not in every clone (a fresh machine's work tree came without them;
`make tags` recreates them from this file), so anything a stage reads "at a release" resolves
the name here first: the build's outputs cannot depend on whether this clone has the tag."""
from __future__ import annotations

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
