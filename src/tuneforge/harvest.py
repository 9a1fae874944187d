"""Harvest real release notes into the committed, deterministic snapshot.

Run: python -m tuneforge.harvest --src /usr/share/doc --out data/snapshot/release-notes.tar.gz

The walk is sorted; candidates are picked by file name, decompressed, decoded and
kept only when a registered parser (``tuneforge.sources``) accepts them and finds
entries.  Quotas keep the snapshot small but varied: each format gets a share of
``--max-bytes`` (decoded bytes), big files are skipped rather than cut, and a
product contributes only a few files per format.  The archive is byte-for-byte
reproducible: sorted members, zeroed metadata, gzip header without name or time.

``iter_snapshot`` reads a snapshot back, from the tar.gz or from a plain directory
of changelogs (backfill accepts either; the tests use a directory of fixtures).
Members are UTF-8: the few Latin-1 changelogs are transcoded on the way in.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import sys
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tuneforge.cli import ArgumentParser, run
from tuneforge.io import atomic_path
from tuneforge.sources import FORMATS, UnknownFormatError, detect_format
from tuneforge.sources.debian_changelog import DebianChangelog

DEFAULT_MAX_BYTES = 8_000_000


class SnapshotError(ValueError):
    """A snapshot (or a file in a snapshot directory) cannot be read."""


@dataclass(frozen=True)
class Quota:
    share: float  # fraction of --max-bytes this format may use
    max_file_bytes: int  # larger files are skipped, never cut: a member is always a whole file
    max_files_per_product: int


# Debian changelogs are plentiful and repetitive (every binary package ships one), so they
# get small files only, at most two per product (changelog + NEWS.Debian).  git's RelNotes
# are all kept (about 1.6 MB).  Node ships ~20 huge changelogs: a few smaller ones suffice.
QUOTAS: dict[str, Quota] = {
    "debian_changelog": Quota(0.08, 24_000, 2),
    "git_relnotes": Quota(0.22, 200_000, 10_000),
    "gnu_news": Quota(0.20, 250_000, 3),
    "keepachangelog": Quota(0.03, 450_000, 3),
    "markdown_bullets": Quota(0.15, 300_000, 4),
    "rst_changes": Quota(0.32, 250_000, 3),
}
# The release-note formats; verbatim ones (patches, the commit-messages task) have their own harvest.
RELEASE_NOTE_FORMATS = tuple(sorted(name for name, cls in FORMATS.items() if not cls.verbatim))
if set(QUOTAS) != set(RELEASE_NOTE_FORMATS):
    raise RuntimeError(f"harvest quotas {sorted(QUOTAS)} do not match the release-note formats "
                       f"{list(RELEASE_NOTE_FORMATS)}")

_CANDIDATE = re.compile(r"^(news|changes|changelog)", re.IGNORECASE)


def is_candidate(rel: str) -> bool:
    """Release-note file names: NEWS*, CHANGES*, CHANGELOG*, RelNotes/*.txt, history.rst, *news*.md."""
    p = PurePosixPath(rel)
    low = p.name.lower().removesuffix(".gz")
    if _CANDIDATE.match(low) or low in ("history.rst", "history.md"):
        return True
    if p.parent.name.lower() == "relnotes" and low.endswith(".txt"):
        return True
    return low.endswith(".md") and ("change" in low or "news" in low)


def member_name(rel: str) -> str:
    """Snapshot member for a path relative to --src: "<product>/<rest>" without ".gz"."""
    parts = PurePosixPath(rel).parts
    name = "/".join((parts[0].lower(), *parts[1:]))
    return name.removesuffix(".gz")


def decode(raw: bytes) -> tuple[str, bool]:
    """Text of a file and whether it had to be read as Latin-1 (old changelogs are)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


@dataclass
class Picked:
    member: str
    fmt: str
    data: bytes  # UTF-8
    entries: int


@dataclass
class Summary:
    files: Counter = field(default_factory=Counter)
    entries: Counter = field(default_factory=Counter)
    raw_bytes: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    transcoded: int = 0
    products: set[str] = field(default_factory=set)


def walk_sorted(root: Path) -> list[str]:
    """Relative POSIX paths of the files under ``root``, sorted; symlinked dirs are not entered."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for fname in filenames:
            found.append(Path(dirpath, fname).relative_to(root).as_posix())
    return sorted(found)


def _read(path: Path, summary: Summary) -> bytes | None:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            print(f"harvest: skipping {path}: not readable gzip ({exc})", file=sys.stderr)
            summary.skipped["bad gzip"] += 1
            return None
    return raw


def select(src: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[Picked], Summary]:
    """Walk ``src`` (sorted) and pick the files that go into the snapshot."""
    summary = Summary()
    picked: list[Picked] = []
    seen_content: set[str] = set()
    seen_members: set[str] = set()
    seen_debian_heads: set[str] = set()
    per_product: Counter = Counter()
    for rel in walk_sorted(src):
        path = src / rel
        if len(PurePosixPath(rel).parts) < 2 or not is_candidate(rel) or path.is_symlink():
            continue
        member = member_name(rel)
        if member in seen_members:  # NEWS next to NEWS.gz
            summary.skipped["duplicate name"] += 1
            continue
        raw = _read(path, summary)
        if raw is None:
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen_content:  # the same file shipped by several binary packages
            summary.skipped["duplicate content"] += 1
            continue
        seen_content.add(digest)
        text, latin1 = decode(raw)
        try:
            fmt = detect_format(member, text, among=RELEASE_NOTE_FORMATS)
        except UnknownFormatError:
            summary.skipped["unknown format"] += 1
            continue
        quota = QUOTAS[fmt.name]
        product = member.split("/", 1)[0]
        data = text.encode("utf-8")
        if len(data) > quota.max_file_bytes:
            summary.skipped[f"{fmt.name} over file cap"] += 1
            continue
        if per_product[(fmt.name, product)] >= quota.max_files_per_product:
            summary.skipped[f"{fmt.name} over product cap"] += 1
            continue
        if summary.raw_bytes[fmt.name] + len(data) > quota.share * max_bytes:
            summary.skipped[f"{fmt.name} over budget"] += 1
            continue
        if fmt.name == DebianChangelog.name:
            # Binary packages built from one source ship near-identical changelogs.
            head = text.lstrip().split("\n", 1)[0]
            if head in seen_debian_heads:
                summary.skipped["duplicate content"] += 1
                continue
            seen_debian_heads.add(head)
        entries = sum(1 for _ in fmt.parse(member, text))
        if not entries:
            summary.skipped["no entries"] += 1
            continue
        seen_members.add(member)
        per_product[(fmt.name, product)] += 1
        picked.append(Picked(member, fmt.name, data, entries))
        summary.files[fmt.name] += 1
        summary.entries[fmt.name] += entries
        summary.raw_bytes[fmt.name] += len(data)
        summary.transcoded += latin1
        summary.products.add(product)
    return picked, summary


def write_snapshot(files: list[tuple[str, bytes]], out: Path) -> None:
    """Write a reproducible tar.gz of (member, bytes), atomically."""
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        # No name and mtime 0 in the gzip header; zeroed, sorted tar members.
        with (gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="", compresslevel=9) as gz,
              tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar):
            for name, data in sorted(files):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.type = tarfile.REGTYPE
                tar.addfile(info, io.BytesIO(data))
        fh.flush()
        os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would survive the rename


def iter_snapshot(path: str | Path, on_error: Callable[[str, SnapshotError], None] | None = None,
                  ) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, raw bytes) from a snapshot tar.gz, or from a directory's files.

    Directory files come in sorted order; ``.gz`` files are decompressed and named
    without the suffix.  Corrupt or truncated archives raise ``SnapshotError``; so does a
    corrupt ``.gz`` file in a directory, unless ``on_error(name, error)`` is given: then
    that one file is reported to it and skipped (backfill quarantines it).
    """
    path = Path(path)
    if path.is_dir():
        for rel in walk_sorted(path):
            raw = (path / rel).read_bytes()
            if rel.endswith(".gz"):
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError, zlib.error) as exc:
                    err = SnapshotError(f"{path / rel}: corrupt or truncated gzip ({exc})")
                    if on_error is None:
                        raise err from exc
                    on_error(rel, err)
                    continue
                rel = rel.removesuffix(".gz")
            yield rel, raw
        return
    if not path.exists():
        raise SnapshotError(f"{path}: snapshot not found (expected a .tar.gz or a directory)")
    member = None
    try:
        with gzip.open(path, "rb") as gz:
            with tarfile.open(fileobj=gz, mode="r:") as tar:
                for info in tar:
                    member = info.name
                    if not info.isfile():
                        continue
                    fh = tar.extractfile(info)
                    data = fh.read() if fh is not None else b""
                    if len(data) != info.size:
                        raise EOFError(f"member is {len(data)} of {info.size} bytes")
                    yield info.name, data
            # tarfile stops at the end-of-archive blocks; reading on checks the gzip CRC.
            while gz.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        where = f" (at member {member})" if member else ""
        raise SnapshotError(f"{path}: corrupt or truncated snapshot{where}: {exc}") from exc


def _format_summary(summary: Summary, out: Path, digest: str) -> str:
    lines = [f"{'format':18} {'files':>6} {'entries':>8} {'bytes':>11}"]
    for name in RELEASE_NOTE_FORMATS:
        lines.append(f"{name:18} {summary.files[name]:6d} {summary.entries[name]:8d} "
                     f"{summary.raw_bytes[name]:11,d}")
    lines.append(f"{'total':18} {sum(summary.files.values()):6d} "
                 f"{sum(summary.entries.values()):8d} {sum(summary.raw_bytes.values()):11,d}")
    lines.append(f"products: {len(summary.products)}; read as Latin-1: {summary.transcoded}")
    lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items())))
    lines.append(f"wrote {out} ({out.stat().st_size:,d} bytes compressed, sha256 {digest})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m tuneforge.harvest", description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, type=Path, help="directory to walk, e.g. /usr/share/doc")
    ap.add_argument("--out", required=True, type=Path, help="snapshot to write (.tar.gz)")
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                    help="decoded bytes the snapshot may hold, split between formats "
                         f"(default {DEFAULT_MAX_BYTES:,d})")
    args = ap.parse_args(argv)
    if not args.src.is_dir():
        ap.error(f"--src {args.src} is not a directory; name the directory of changelogs to walk "
                 "(e.g. /usr/share/doc)")
    if args.max_bytes <= 0:
        ap.error(f"--max-bytes {args.max_bytes} must be positive (default {DEFAULT_MAX_BYTES:,d})")
    if args.out.is_dir():
        ap.error(f"--out {args.out}: is a directory; name the .tar.gz file to write")
    if not args.out.name.endswith(".tar.gz"):
        ap.error(f"--out {args.out}: the snapshot is a .tar.gz; name one ending in .tar.gz")
    picked, summary = select(args.src, args.max_bytes)
    if not picked:
        print(f"python -m tuneforge.harvest: error: no release-note files under {args.src}; point --src at "
              "a directory holding changelogs, NEWS or release notes", file=sys.stderr)
        return 1
    write_snapshot([(p.member, p.data) for p in picked], args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(_format_summary(summary, args.out, digest))
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.harvest"))
