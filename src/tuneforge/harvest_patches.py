"""Harvest real (diff, message) pairs into a committed, deterministic patch snapshot.

Debian mode (default): python -m tuneforge.harvest_patches [--packages a,b] [--out data/snapshot/debian-patches.tar.gz]
  Lists the source packages of every installed binary package, asks apt (private state,
  ``tuneforge.harvest_apt``) for each one's ``.debian.tar.*``, downloads only those,
  checks their SHA256 and keeps ``debian/patches/*`` as ``<source package>/<path>``.
Git mode: python -m tuneforge.harvest_patches --repo PATH
  One ``git format-patch`` file per first-parent commit of PATH, as
  ``<repo dir name>/<NNNN>-<sha12>.patch``: the same form Debian's patches mostly have, so
  one parser reads both.

The snapshot is size-capped and reproducible: a patch over ``--max-patch-bytes`` is skipped,
never cut; if the rest exceeds ``--max-bytes`` whole groups (packages; commits in git mode)
are dropped in the order of their name's SHA-256, so a package is all in or all out and the
choice depends only on the package set.  Members are sorted, metadata zeroed, gzip mtime 0
(``harvest.write_snapshot``).  Author names and e-mails stay in the snapshot, as the
patches carry them: the parser must drop them before anything reaches a prompt or model.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tuneforge.cli import ArgumentParser, UserError, run
from tuneforge.harvest import write_snapshot
from tuneforge.harvest_apt import Apt, ChecksumError, extract_patches, installed_sources, read_mirror, resolve
from tuneforge.io import write_json

DEFAULT_OUT = Path("data/snapshot/debian-patches.tar.gz")
DEFAULT_SUMMARY = Path("reports/harvest-patches.json")
DEFAULT_WORKDIR = Path(".cache/harvest-patches")
DEFAULT_MAX_BYTES = 8_000_000  # uncompressed patch bytes; the tar.gz comes out far smaller
DEFAULT_MAX_PATCH_BYTES = 16_000
BIG_PATCH = 8_000  # reported only: how many kept patches are over 8 KB

Patch = tuple[str, str, bytes]  # (group, member, bytes); group: source package, or commit in git mode


def select(patches: list[Patch], max_bytes: int, max_patch_bytes: int) -> tuple[list[tuple[str, bytes]], dict]:
    """The (member, bytes) kept under the caps, sorted, and what was left out."""
    skipped_big = 0
    groups: dict[str, list[tuple[str, bytes]]] = {}
    for group, member, data in sorted(patches):
        if len(data) > max_patch_bytes:
            skipped_big += 1
            continue
        groups.setdefault(group, []).append((member, data))
    size = {g: sum(len(d) for _, d in files) for g, files in groups.items()}
    dropped: list[str] = []
    if sum(size.values()) > max_bytes:
        used = 0
        # a fixed pseudo-random order: not "alphabetically first wins", and no package's
        # fate depends on when its download finished
        for g in sorted(groups, key=lambda g: (hashlib.sha256(g.encode()).hexdigest(), g)):
            if used + size[g] <= max_bytes:
                used += size[g]
            else:
                dropped.append(g)
    kept = [f for g in sorted(set(groups) - set(dropped)) for f in groups[g]]
    return kept, {
        "found": len(patches),
        "kept": len(kept),
        "kept_bytes": sum(len(d) for _, d in kept),
        "skipped_over_patch_cap": skipped_big,
        "dropped_over_total_cap": sum(len(groups[g]) for g in dropped),
        "groups_dropped_over_total_cap": sorted(dropped),
        "kept_over_8kb": sum(len(d) > BIG_PATCH for _, d in kept),
    }


_DIFF_START = re.compile(rb"^(--- |\+\+\+ |diff |Index: )", re.M)


def kind(data: bytes) -> str:
    """format-patch, dep3 or bare, from the headers before the first diff line (figures only)."""
    m = _DIFF_START.search(data)
    head = data[:m.start()] if m else data

    def has(field: bytes) -> bool:
        return re.search(rb"^" + field + rb":", head, re.M | re.I) is not None

    if re.match(rb"From [0-9a-f]{40} ", data) or (has(b"From") and has(b"Subject") and has(b"Date")
                                                  and not has(b"Description")):
        return "format-patch"
    if has(b"Description") or has(b"Subject"):
        return "dep3"
    return "bare"


def harvest_debian(apt: Apt, sources: list[tuple[str, str]], jobs: int) -> tuple[list[Patch], dict]:
    """Resolve, fetch and unpack each source package's debian tarball, a few at a time."""

    def one(pkg_version):
        res = resolve(*pkg_version, apt.print_uris)
        files, bad = None, None
        if res.error is None and res.tarball is not None:
            try:
                files = extract_patches(apt.fetch(res.tarball), res.tarball.name)
            except ChecksumError as e:
                bad = e
            except (OSError, ValueError) as e:  # a failed download, an unreadable tarball
                res.error = str(e)
        return res, files, bad

    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(one, sources))  # in input order, whatever finished first
    mismatches = [bad for _, _, bad in results if bad is not None]
    if mismatches:
        for bad in mismatches:
            print(f"harvest-patches: CHECKSUM MISMATCH: {bad}", file=sys.stderr)
        raise ChecksumError(f"{len(mismatches)} download(s) failed the SHA256 check, first: {mismatches[0]}; "
                            "nothing written")
    patches: list[Patch] = []
    tarballs = []
    for res, files, _ in results:
        if files is not None:
            tarballs.append(res.tarball)
            patches += [(res.package, f"{res.package}/{rel}", data) for rel, data in files]
    summary = {
        "packages": len(sources),
        "debian_tarballs": len(tarballs),
        "debian_tarball_bytes": sum(t.size for t in tarballs),
        "packages_with_patches": len({g for g, _, _ in patches}),
        "fallbacks": [{"package": r.package, "installed": r.installed, "used": r.used}
                      for r, _, _ in results if r.fallback and r.error is None],
        "no_debian_tarball": [r.package for r, _, _ in results if r.error is None and r.tarball is None],
        "failures": [{"package": r.package, "version": r.installed, "reason": r.error}
                     for r, _, _ in results if r.error is not None],
    }
    summary["failure_counts"] = dict(sorted(Counter(f["reason"].split(":", 1)[0]
                                                    for f in summary["failures"]).items()))
    return patches, summary


def _git(repo: Path, *args: str, fix: str = "") -> str:
    # -c: keep a user's diff/format settings from changing the snapshot's bytes
    p = subprocess.run(["git", "-C", str(repo), "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false",
                        "-c", "format.from=false", *args], capture_output=True, text=True,
                       env={**os.environ, "LC_ALL": "C"}, check=False)
    if p.returncode != 0:
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        raise UserError(f"{repo}: git {args[0]} failed: {why}{fix}")
    return p.stdout


def harvest_git(repo: Path) -> tuple[str, list[Patch], dict]:
    """One format-patch member per first-parent commit; merges and empty commits skipped.

    ``git format-patch`` rather than ``git log -p --format=email``: it writes exactly the
    format Debian's patches are in (MIME-encoded non-ASCII headers, ``---``, diffstat), and
    with ``-o DIR --numbered-files`` one file per commit, so nothing has to split an mbox
    (a commit body may itself hold a line starting with "From ")."""
    if not repo.is_dir():
        raise UserError(f"--repo {repo}: not a directory; name a local git repository")
    top = Path(_git(repo, "rev-parse", "--show-toplevel", fix="; --repo must name a local git repository").strip())
    name = top.name
    revs = _git(top, "rev-list", "--first-parent", "--reverse", "--parents", "HEAD",
                fix="; --repo needs a repository with commits on HEAD").split("\n")
    commits = [line.split() for line in revs if line.strip()]
    width = max(4, len(str(len(commits))))
    nonmerge = [(i, c[0]) for i, c in enumerate(commits, 1) if len(c) <= 2]
    patches: list[Patch] = []
    empty = 0
    with tempfile.TemporaryDirectory(prefix="harvest-patches-") as tmp:
        _git(top, "format-patch", "--root", "--first-parent", "--numbered-files", "--no-numbered",
             "--no-signature", "--no-thread", "--no-binary", "-q", "-o", tmp, "HEAD")
        written = sorted(int(p.name) for p in Path(tmp).iterdir())
        if written != list(range(1, len(nonmerge) + 1)):
            raise ValueError(f"{top}: git format-patch wrote {len(written)} files for {len(nonmerge)} "
                             "non-merge commits; cannot line them up")
        for k, (seq, sha) in enumerate(nonmerge, 1):
            data = (Path(tmp) / str(k)).read_bytes()
            if not data:  # format-patch leaves a commit without a diff empty
                empty += 1
                continue
            if not data.startswith(f"From {sha} ".encode()):
                raise ValueError(f"{top}: git format-patch file {k} is not commit {sha}")
            patches.append((f"{seq:0{width}d}", f"{name}/{seq:0{width}d}-{sha[:12]}.patch", data))
    return name, patches, {"commits": len(commits), "merges_skipped": len(commits) - len(nonmerge),
                           "empty_skipped": empty}


def _suite() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError as e:
        raise UserError(f"/etc/os-release: {e.strerror}; name the suite with --suite") from None
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    if not m:
        raise UserError("/etc/os-release: no VERSION_CODENAME; name the suite with --suite")
    return m.group(1)


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m tuneforge.harvest_patches", description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, help="git mode: harvest this local repository's history")
    ap.add_argument("--out", type=Path, help=f"snapshot (.tar.gz); default {DEFAULT_OUT}, in git mode "
                    "data/snapshot/<repo dir name>-commits.tar.gz")
    ap.add_argument("--summary", type=Path, help=f"JSON summary; default {DEFAULT_SUMMARY}, in git mode "
                    "reports/harvest-patches-<repo dir name>.json")
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                    help=f"patch bytes (uncompressed) the snapshot may hold (default {DEFAULT_MAX_BYTES:,d})")
    ap.add_argument("--max-patch-bytes", type=int, default=DEFAULT_MAX_PATCH_BYTES,
                    help=f"a larger patch is skipped, never cut (default {DEFAULT_MAX_PATCH_BYTES:,d})")
    ap.add_argument("--packages", help="Debian mode: only these installed source packages (a,b,c)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                    help=f"private apt state and download cache (default {DEFAULT_WORKDIR})")
    ap.add_argument("--suite", help="Debian suite (default: VERSION_CODENAME of /etc/os-release)")
    ap.add_argument("--mirror", help="Debian mirror (default: the machine's apt 'deb' entry for the suite)")
    ap.add_argument("--jobs", type=int, default=4, help="downloads in flight (default 4)")
    args = ap.parse_args(argv)
    for opt in ("max_bytes", "max_patch_bytes", "jobs"):
        if getattr(args, opt) <= 0:
            ap.error(f"--{opt.replace('_', '-')} {getattr(args, opt)} must be positive")
    if args.out is not None and not args.out.name.endswith(".tar.gz"):
        ap.error(f"--out {args.out}: the snapshot is a .tar.gz; name one ending in .tar.gz")
    if args.repo is not None and args.packages:
        ap.error("--packages is for Debian mode; git mode (--repo) harvests the whole first-parent history")

    if args.repo is not None:
        name, patches, summary = harvest_git(args.repo)
        summary = {"mode": "git", "repo": name, **summary}
        out = args.out or Path(f"data/snapshot/{name}-commits.tar.gz")
        summary_path = args.summary or Path(f"reports/harvest-patches-{name}.json")
    else:
        suite = args.suite or _suite()
        mirror = args.mirror or read_mirror(suite)
        sources = installed_sources()
        if args.packages:
            wanted = sorted({p.strip() for p in args.packages.split(",") if p.strip()})
            have = dict(sources)
            unknown = [p for p in wanted if p not in have]
            if unknown:
                ap.error(f"--packages: {', '.join(unknown)}: not the source of any installed package")
            sources = [(p, have[p]) for p in wanted]
        apt = Apt(args.workdir, mirror, suite)
        apt.update()
        patches, summary = harvest_debian(apt, sources, args.jobs)
        summary = {"mode": "debian", "suite": suite, "mirror": mirror, **summary}
        out = args.out or DEFAULT_OUT
        summary_path = args.summary or DEFAULT_SUMMARY

    kept, stats = select(patches, args.max_bytes, args.max_patch_bytes)
    if not kept:
        print(f"python -m tuneforge.harvest_patches: error: no patches to keep ({stats['found']} found, "
              f"{stats['skipped_over_patch_cap']} over --max-patch-bytes)", file=sys.stderr)
        return 1
    kept_names = {m for m, _ in kept}
    stats["kinds_found"] = dict(sorted(Counter(kind(d) for _, _, d in patches).items()))
    stats["kinds_kept"] = dict(sorted(Counter(kind(d) for _, m, d in patches if m in kept_names).items()))
    write_snapshot(kept, out)
    summary.update({"max_bytes": args.max_bytes, "max_patch_bytes": args.max_patch_bytes, "patches": stats,
                    "snapshot": {"path": out.as_posix(), "bytes": out.stat().st_size,
                                 "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}})
    write_json(summary_path, summary)
    print(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False))
    print(f"wrote {out} and {summary_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.harvest_patches"))
