"""harvest: deterministic snapshot from a doc tree; iter_snapshot over tar.gz and directories."""
from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from tuneforge import harvest
from tuneforge.harvest import (
    QUOTAS,
    RELEASE_NOTE_FORMATS,
    SnapshotError,
    is_candidate,
    iter_snapshot,
    member_name,
    select,
    write_snapshot,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sources"


def gz(data: bytes, mtime: int = 1_700_000_000) -> bytes:
    return gzip.compress(data, mtime=mtime)


@pytest.fixture
def doc(tmp_path) -> Path:
    """A small /usr/share/doc look-alike built from the real fixture excerpts."""
    src = tmp_path / "doc"

    def put(rel: str, data: bytes) -> None:
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    fx = {rel: (FIXTURES / rel).read_bytes() for rel in (
        "coreutils/NEWS", "git/RelNotes/2.39.0.txt", "apt/changelog", "libavif15/changelog",
        "nodejs/changelogs/CHANGELOG_V21.md", "python3-setuptools/changelog")}
    put("coreutils/NEWS.gz", gz(fx["coreutils/NEWS"]))
    put("git/RelNotes/2.39.0.txt", fx["git/RelNotes/2.39.0.txt"])
    put("apt/changelog.gz", gz(fx["apt/changelog"]))
    put("apt2/changelog.gz", gz(fx["apt/changelog"], mtime=5))  # same text, another package
    put("libavif15/changelog.gz", gz(fx["libavif15/changelog"]))
    put("nodejs/changelogs/CHANGELOG_V21.md", fx["nodejs/changelogs/CHANGELOG_V21.md"])
    put("python3-setuptools/changelog.gz", gz(fx["python3-setuptools/changelog"]))
    # a Latin-1 Debian changelog (old ones are), a README, prose NEWS, a broken .gz
    put("oldpkg/changelog.Debian.gz", gz(
        "oldpkg (1.0-1) unstable; urgency=low\n\n  * Initial release, thanks Ren\u00e9.\n\n"
        " -- Ren\u00e9 <r@example.org>  Mon, 01 Jan 2001 00:00:00 +0000\n".encode("latin-1")))
    put("zstd/README.md", b"# Zstandard\n\n* fast\n* lossless\n")
    put("ed/NEWS", b"Reading a non-existent file with commands 'e' or 'E' did set the flag.\n")
    put("broken/NEWS.gz", b"\x1f\x8b\x08\x00garbage")
    return src


def run(src: Path, out: Path, *extra: str) -> int:
    return harvest.main(["--src", str(src), "--out", str(out), *extra])


EXPECTED_MEMBERS = [
    "apt/changelog", "coreutils/NEWS", "git/RelNotes/2.39.0.txt", "libavif15/changelog",
    "nodejs/changelogs/CHANGELOG_V21.md", "oldpkg/changelog.Debian", "python3-setuptools/changelog",
]


def test_two_runs_give_identical_bytes(doc, tmp_path, capsys):
    a, b = tmp_path / "out" / "a.tar.gz", tmp_path / "b.tar.gz"
    assert run(doc, a) == 0
    for p in doc.rglob("*"):  # newer mtimes on the sources must not matter
        os.utime(p, (2_000_000_000, 2_000_000_000))
    assert run(doc, b) == 0
    assert a.read_bytes() == b.read_bytes()
    data = a.read_bytes()
    assert data[:3] == b"\x1f\x8b\x08" and data[3] == 0  # gzip, no FNAME/FEXTRA flags
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    out = capsys.readouterr().out
    for name in RELEASE_NOTE_FORMATS:
        assert name in out
    assert "sha256" in out and "compressed" in out
    assert not [p for p in a.parent.iterdir() if p.name != "a.tar.gz"]  # no temp files left


def test_members_are_sorted_zeroed_and_decompressed(doc, tmp_path):
    out = tmp_path / "snap.tar.gz"
    assert run(doc, out) == 0
    with tarfile.open(out, "r:gz") as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == EXPECTED_MEMBERS
        for info in infos:
            assert info.isfile()
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == \
                (0, 0, 0, "", "", 0o644)
    got = dict(iter_snapshot(out))
    assert got["coreutils/NEWS"] == (FIXTURES / "coreutils/NEWS").read_bytes()
    assert got["apt/changelog"] == (FIXTURES / "apt/changelog").read_bytes()
    # Latin-1 input is stored as UTF-8 so every member decodes the same way
    assert "thanks Ren\u00e9." in got["oldpkg/changelog.Debian"].decode("utf-8")


def test_selection_skips_duplicates_unknown_formats_and_bad_gzip(doc, capsys):
    picked, summary = select(doc)
    assert [p.member for p in picked] == EXPECTED_MEMBERS
    assert summary.skipped["duplicate content"] == 1  # apt2
    assert summary.skipped["unknown format"] == 1  # ed/NEWS prose
    assert summary.skipped["bad gzip"] == 1
    assert "broken/NEWS.gz" in capsys.readouterr().err
    assert set(summary.files) == set(RELEASE_NOTE_FORMATS)  # every format is represented
    assert sum(summary.entries.values()) == sum(p.entries for p in picked) > 90


def test_near_identical_debian_changelogs_of_one_source_are_kept_once(tmp_path):
    apt = (FIXTURES / "apt/changelog").read_bytes()
    for pkg, extra in (("apt", b""), ("libapt-pkg6.0", b"\n")):  # differ by a byte
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "changelog.gz").write_bytes(gz(apt + extra))
    picked, summary = select(tmp_path)
    assert [p.member for p in picked] == ["apt/changelog"]
    assert summary.skipped["duplicate content"] == 1


def test_budget_is_split_between_formats(doc):
    max_bytes = 12_000
    picked, summary = select(doc, max_bytes)
    assert summary.skipped and any("over budget" in k for k in summary.skipped)
    for name, used in summary.raw_bytes.items():
        assert used <= QUOTAS[name].share * max_bytes
    assert len(picked) < len(EXPECTED_MEMBERS)


def test_no_candidates_is_an_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "doc" / "pkg").mkdir(parents=True)
    (tmp_path / "doc" / "pkg" / "README").write_text("hello\n")
    out = tmp_path / "snap.tar.gz"
    assert run(tmp_path / "doc", out) == 1
    assert not out.exists()
    assert "no release-note files" in capsys.readouterr().err


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        run(tmp_path / "missing", tmp_path / "x.tar.gz")
    with pytest.raises(SystemExit):
        run(tmp_path, tmp_path / "x.tar.gz", "--max-bytes", "0")


def test_failed_write_leaves_no_output(tmp_path, monkeypatch):
    out = tmp_path / "snap.tar.gz"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tarfile.TarFile, "addfile", boom)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot([("a/NEWS", b"x")], out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("rel", "ok"), [
    ("coreutils/NEWS.gz", True), ("gpg/NEWS.Debian.gz", True), ("bash/CHANGES.gz", True),
    ("x/CHANGELOG.md", True), ("x/changelog.Debian.gz", True), ("git/RelNotes/2.39.0.txt", True),
    ("python3-setuptools/history.rst", True), ("openssl/NEWS.md.gz", True),
    ("iso-codes/CHANGELOG-PRE-4.0.md.gz", True), ("x/release-news.md", True),
    ("x/README.md", False), ("x/copyright", False), ("git/RelNotes/notes.html", False),
    ("x/TODO.txt", False),
])
def test_candidate_names(rel, ok):
    assert is_candidate(rel) is ok


def test_member_name_drops_gz_and_lowercases_the_product():
    assert member_name("Coreutils/NEWS.gz") == "coreutils/NEWS"
    assert member_name("git/RelNotes/2.39.0.txt") == "git/RelNotes/2.39.0.txt"


# ----------------------------------------------------------------------------- iter_snapshot


def test_iter_snapshot_over_a_directory(tmp_path):
    root = tmp_path / "snap"
    (root / "b" / "sub").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "b" / "sub" / "NEWS.gz").write_bytes(gz(b"zipped"))
    (root / "b" / "CHANGES").write_bytes(b"plain")
    (root / "a" / "NEWS").write_bytes(b"first")
    assert list(iter_snapshot(root)) == [
        ("a/NEWS", b"first"), ("b/CHANGES", b"plain"), ("b/sub/NEWS", b"zipped")]


def test_iter_snapshot_over_the_fixture_tree_matches_the_files():
    got = dict(iter_snapshot(FIXTURES))
    assert got["git/RelNotes/2.39.0.txt"] == (FIXTURES / "git/RelNotes/2.39.0.txt").read_bytes()
    assert list(got) == sorted(got)


def test_iter_snapshot_tar_roundtrip(tmp_path):
    out = tmp_path / "snap.tar.gz"
    files = [("b/NEWS", b"two\n"), ("a/CHANGES", "caf\u00e9\n".encode())]
    write_snapshot(files, out)
    assert list(iter_snapshot(out)) == sorted(files)


@pytest.fixture
def snapshot(tmp_path) -> Path:
    out = tmp_path / "snap.tar.gz"
    files = [(f"pkg{i}/NEWS", (f"entry {i} " * 2000).encode()) for i in range(5)]
    write_snapshot(files, out)
    return out


@pytest.mark.parametrize("damage", ["truncate", "half", "garbage", "flip", "empty"])
def test_corrupt_or_truncated_snapshot_is_a_clear_error(snapshot, damage):
    data = bytearray(snapshot.read_bytes())
    if damage == "truncate":
        data = data[:-6]  # loses part of the gzip trailer (CRC/size)
    elif damage == "half":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"this is not a tarball at all" * 10)
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray()
    snapshot.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match=r"snap\.tar\.gz: corrupt or truncated snapshot"):
        list(iter_snapshot(snapshot))


def test_corrupt_gz_inside_a_directory_names_the_file(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "NEWS.gz").write_bytes(gz(b"x" * 1000)[:20])
    with pytest.raises(SnapshotError, match=r"pkg/NEWS\.gz: corrupt or truncated gzip"):
        list(iter_snapshot(tmp_path))


def test_missing_snapshot(tmp_path):
    with pytest.raises(SnapshotError, match="nope.tar.gz: snapshot not found"):
        list(iter_snapshot(tmp_path / "nope.tar.gz"))


def test_committed_snapshot_reads_back_if_present():
    snap = Path(__file__).resolve().parents[1] / "data" / "snapshot" / "release-notes.tar.gz"
    if not snap.exists():
        pytest.skip("no committed snapshot in this checkout")
    names = [name for name, _ in iter_snapshot(snap)]
    assert names == sorted(names) and len(names) > 100
    assert snap.stat().st_size < 4_000_000
