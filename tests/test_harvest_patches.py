"""harvest_patches: git mode on a scratch repository, apt's output parsed from recorded samples,
the size cap, and Debian mode wired end to end through a fake apt. No network."""
from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import tarfile
from pathlib import Path

import pytest

from tuneforge import harvest_patches
from tuneforge.harvest import iter_snapshot, write_snapshot
from tuneforge.harvest_apt import (
    Apt,
    ChecksumError,
    UriLine,
    debian_tarball,
    extract_patches,
    parse_print_uris,
    pick_installed,
    read_mirror,
    resolve,
)
from tuneforge.harvest_patches import kind, select

# --- git mode ---------------------------------------------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "Ann Author", "GIT_AUTHOR_EMAIL": "ann@example.org",
           "GIT_COMMITTER_NAME": "Ann Author", "GIT_COMMITTER_EMAIL": "ann@example.org",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str, date: str = "2024-01-02T03:04:05+0100") -> str:
    env = {**GIT_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture
def scratch_repo(tmp_path) -> tuple[Path, list[str]]:
    """first-parent history: add f / empty commit / merge of side / change f (multi-line body)."""
    repo = tmp_path / "myproj"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "f.c").write_text("int a;\n")
    git(repo, "add", "f.c")
    git(repo, "commit", "-q", "-m", "Add f.c")
    git(repo, "commit", "-q", "--allow-empty", "-m", "Nothing changes here")
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "g.c").write_text("int g;\n")
    git(repo, "add", "g.c")
    git(repo, "commit", "-q", "-m", "side: add g.c")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "side", "-m", "Merge branch side")
    (repo / "f.c").write_text("int a;\nint b;\n")
    git(repo, "commit", "-q", "-am", "f: d\u00e9clare b\n\nThe first body line.\nFrom here on b exists.")
    shas = git(repo, "rev-list", "--first-parent", "--reverse", "HEAD").split()
    return repo, shas


def harvest_repo(repo: Path, out: Path, summary: Path) -> dict:
    assert harvest_patches.main(["--repo", str(repo), "--out", str(out), "--summary", str(summary)]) == 0
    return json.loads(summary.read_text())


def test_git_mode_members_headers_and_reproducible(scratch_repo, tmp_path):
    repo, shas = scratch_repo
    s1 = harvest_repo(repo, tmp_path / "a.tar.gz", tmp_path / "a.json")
    s2 = harvest_repo(repo, tmp_path / "b.tar.gz", tmp_path / "b.json")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert s1["snapshot"]["sha256"] == s2["snapshot"]["sha256"]
    assert (s1["commits"], s1["merges_skipped"], s1["empty_skipped"]) == (4, 1, 1)
    assert s1["patches"]["kept"] == 2 and s1["repo"] == "myproj"
    members = dict(iter_snapshot(tmp_path / "a.tar.gz"))
    assert sorted(members) == [f"myproj/0001-{shas[0][:12]}.patch", f"myproj/0004-{shas[3][:12]}.patch"]
    first = members[f"myproj/0001-{shas[0][:12]}.patch"].decode()
    assert first.startswith(f"From {shas[0]} Mon Sep 17 00:00:00 2001\nFrom: Ann Author <ann@example.org>\n"
                            "Date: Tue, 2 Jan 2024 03:04:05 +0100\nSubject: [PATCH] Add f.c\n\n---\n")
    assert "diff --git a/f.c b/f.c\nnew file mode 100644\n" in first
    body = members[f"myproj/0004-{shas[3][:12]}.patch"].decode()
    head, _, diff = body.partition("\n---\n")
    assert "Subject: [PATCH] =?UTF-8?q?f:=20d=C3=A9clare=20b?=" in head  # MIME-encoded, as format-patch does
    assert head.endswith("\n\nThe first body line.\nFrom here on b exists.")
    assert "+int b;" in diff and "g.c" not in body
    assert kind(members[f"myproj/0001-{shas[0][:12]}.patch"]) == "format-patch"


def test_git_mode_bad_repo_is_one_clear_error(tmp_path, capsys):
    argv = ["--repo", str(tmp_path), "--out", str(tmp_path / "x.tar.gz")]
    rc = harvest_patches.run(lambda: harvest_patches.main(argv), "harvest_patches")
    assert rc == 2
    assert "git rev-parse failed" in capsys.readouterr().err


# --- apt output, recorded from `apt-get source --print-uris` (apt 2.6.1, bookworm) ------------

ZLIB = """Reading package lists...
NOTICE: 'zlib' packaging is maintained in the 'Git' version control system at:
https://salsa.debian.org/debian/zlib.git
Need to get 1258 kB of source archives.
'http://deb.debian.org/debian/pool/main/z/zlib/zlib_1.2.13.dfsg-1.dsc' zlib_1.2.13.dfsg-1.dsc 2399 SHA256:3fa1e6b2fc525062aa88207dda52fed8e045373c809d362fe8a2bfbf7cf515a8
'http://deb.debian.org/debian/pool/main/z/zlib/zlib_1.2.13.dfsg.orig.tar.bz2' zlib_1.2.13.dfsg.orig.tar.bz2 1239825 SHA256:71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1
'http://deb.debian.org/debian/pool/main/z/zlib/zlib_1.2.13.dfsg-1.debian.tar.xz' zlib_1.2.13.dfsg-1.debian.tar.xz 15700 SHA256:f66cf3d4f2d7defcd4d1fd1fb0a11ee39f1e01b42ec7d059c9dc5c1695133c44
"""  # noqa: E501
BASE_FILES = """'http://deb.debian.org/debian/pool/main/b/base-files/base-files_12.4%2bdeb12u15.dsc' base-files_12.4+deb12u15.dsc 1137 SHA256:e531274d0c3916dacfe55bbd27148d775b004e1836bc2fbb01549f142d524e8c
'http://deb.debian.org/debian/pool/main/b/base-files/base-files_12.4%2bdeb12u15.tar.xz' base-files_12.4+deb12u15.tar.xz 66280 SHA256:9fb369194365fe9da74621da247ea70884fc3d1d9c063db310764ef0e43c02c5
"""  # noqa: E501
NO_VERSION = "E: Can not find version '12.4+deb12u11' of package 'base-files'\nE: Unable to find a source package for base-files\n"  # noqa: E501
NO_SOURCE = "E: Unable to find a source package for google-cloud-cli\n"


def test_parse_print_uris_picks_only_the_debian_tarball():
    lines = parse_print_uris(ZLIB, "zlib")
    assert [u.name for u in lines] == ["zlib_1.2.13.dfsg-1.dsc", "zlib_1.2.13.dfsg.orig.tar.bz2",
                                       "zlib_1.2.13.dfsg-1.debian.tar.xz"]
    tb = debian_tarball(lines)
    assert tb == UriLine("http://deb.debian.org/debian/pool/main/z/zlib/zlib_1.2.13.dfsg-1.debian.tar.xz",
                         "zlib_1.2.13.dfsg-1.debian.tar.xz", 15700,
                         "f66cf3d4f2d7defcd4d1fd1fb0a11ee39f1e01b42ec7d059c9dc5c1695133c44")
    assert debian_tarball(parse_print_uris(BASE_FILES, "base-files")) is None  # native: no debian tarball


@pytest.mark.parametrize("line, reason", [
    ("'http://x/a.dsc' a.dsc 12 MD5Sum:0123abcd", "MD5Sum checksum"),
    ("'http://x/a.dsc' a.dsc twelve SHA256:0123abcd", "line 1: not a 'URI'"),
    ("'http://x/a.dsc' ../a.dsc 12 SHA256:0123abcd", "not a plain file name"),
])
def test_parse_print_uris_rejects_what_it_cannot_verify(line, reason):
    with pytest.raises(ValueError, match=reason):
        parse_print_uris(line + "\n", "pkg")


def fake_print_uris(answers: dict[str, tuple[int, str, str]], calls: list[str]):
    def print_uris(spec: str):
        calls.append(spec)
        return answers.get(spec, (100, "", f"E: Unable to find a source package for {spec}\n"))
    return print_uris


def test_resolve_installed_version_then_fallback_then_failure():
    calls: list[str] = []
    answers = {"zlib=1:1.2.13.dfsg-1": (0, ZLIB, ""), "base-files=12.4+deb12u11": (100, "", NO_VERSION),
               "base-files": (0, BASE_FILES, ""), "google-cloud-cli=528.0.0-0": (100, "", NO_SOURCE)}
    pu = fake_print_uris(answers, calls)
    z = resolve("zlib", "1:1.2.13.dfsg-1", pu)
    assert (z.fallback, z.used, z.error, z.tarball.name) == (False, "1.2.13.dfsg-1", None,
                                                             "zlib_1.2.13.dfsg-1.debian.tar.xz")
    assert calls == ["zlib=1:1.2.13.dfsg-1"]  # no second call when the installed version is there
    b = resolve("base-files", "12.4+deb12u11", pu)
    assert (b.fallback, b.used, b.tarball, b.error) == (True, "12.4+deb12u15", None, None)
    g = resolve("google-cloud-cli", "528.0.0-0", pu)
    assert g.error == "not in the archive: Unable to find a source package for google-cloud-cli"
    assert not g.fallback and calls[-2:] == ["google-cloud-cli=528.0.0-0", "google-cloud-cli"]


def test_pick_installed_keeps_installed_deduplicated_sorted():
    text = ("ii \tzlib\t1:1.2.13.dfsg-1\nii \tbash\t5.2.15-2\nii \tzlib\t1:1.2.13.dfsg-1\n"
            "rc \tgone\t1.0-1\nhi \theld\t2.0-1\nun \t\t\n")
    assert pick_installed(text) == [("bash", "5.2.15-2"), ("held", "2.0-1"), ("zlib", "1:1.2.13.dfsg-1")]
    # two installed versions of one source (a partial upgrade): the higher, as dpkg compares them
    assert pick_installed("ii \tx\t1.0~rc1-1\nii \tx\t1.0-1\n") == [("x", "1.0-1")]


def test_read_mirror_from_deb822_and_one_line_lists(tmp_path):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text("deb https://other.example/apt cloud-sdk-bookworm main\n")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/x.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    (etc / "sources.list.d" / "a-off.sources").write_text(  # read before debian.sources: must be skipped
        "Enabled: no\nTypes: deb\nURIs: http://wrong.example/\nSuites: bookworm\nComponents: main\n")
    assert read_mirror("bookworm", etc) == "http://mirror.example/debian"
    assert read_mirror("bookworm-security", etc) == "http://mirror.example/debian-security"
    with pytest.raises(ValueError, match="no enabled 'deb' entry for suite trixie"):
        read_mirror("trixie", etc)


def debian_tar(files: dict[str, bytes], mode: str = "w:xz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        d = tarfile.TarInfo("debian/patches/sub")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["w:xz", "w:gz", "w:bz2"])
def test_extract_patches_keeps_patches_only(mode):
    data = debian_tar({"./debian/patches/series": b"a.patch\n", "./debian/patches/b.patch": b"bb",
                       "debian/patches/sub/a.patch": b"aa", "debian/control": b"Source: x\n",
                       "debian/patches/sub/series": b"x\n", "debian/patches/series.hurd-i386": b"a.patch\n"}, mode)
    assert extract_patches(data, "x.debian.tar") == [("b.patch", b"bb"), ("sub/a.patch", b"aa")]
    with pytest.raises(ValueError, match="unreadable tarball: x.debian.tar.xz"):
        extract_patches(data[: len(data) // 2], "x.debian.tar.xz")


def test_fetch_checks_sha256_of_download_and_cache(tmp_path, monkeypatch):
    apt = Apt(tmp_path / "work", "http://mirror.example/debian", "bookworm")
    assert apt.sources.read_text() == ("deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                                       "http://mirror.example/debian bookworm main\n")
    good = b"the real tarball"
    u = UriLine("http://mirror.example/x.debian.tar.xz", "x.debian.tar.xz", len(good),
                hashlib.sha256(good).hexdigest())
    served = {"data": b"tampered bytes"}

    def fake_run(argv):
        assert "Dir::Etc::SourceList=" + str(apt.sources) in argv
        Path(argv[argv.index("download-file") + 2]).write_bytes(served["data"])
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(apt, "_run", fake_run)
    with pytest.raises(ChecksumError, match="x.debian.tar.xz: SHA256 .* does not match"):
        apt.fetch(u)
    assert not (apt.files / u.name).exists()
    served["data"] = good
    assert apt.fetch(u) == good
    monkeypatch.setattr(apt, "_run", lambda argv: pytest.fail("a cached, verified file is not downloaded again"))
    assert apt.fetch(u) == good


# --- the cap ----------------------------------------------------------------------------

def sample_patches() -> list[tuple[str, str, bytes]]:
    rng = random.Random(7)
    out = []
    for p in range(30):
        for k in range(rng.randint(1, 5)):
            out.append((f"pkg{p}", f"pkg{p}/{k:02d}.patch", bytes([97 + k]) * rng.randint(10, 400)))
    out.append(("pkg3", "pkg3/huge.patch", b"x" * 5000))
    return out


def test_select_caps_whole_groups_deterministically(tmp_path):
    patches = sample_patches()
    kept, stats = select(patches, max_bytes=10_000, max_patch_bytes=1000)
    assert stats["skipped_over_patch_cap"] == 1 and "pkg3/huge.patch" not in dict(kept)
    assert stats["kept_bytes"] == sum(len(d) for _, d in kept) <= 10_000
    assert stats["groups_dropped_over_total_cap"]  # the cap bit
    by_group: dict[str, set[str]] = {}
    for g, m, d in patches:
        if len(d) <= 1000:
            by_group.setdefault(g, set()).add(m)
    kept_members = {m for m, _ in kept}
    for g, members in by_group.items():  # each package all in or all out
        assert members <= kept_members or not (members & kept_members), g
        assert (g in stats["groups_dropped_over_total_cap"]) == (not members & kept_members)
    assert stats["kept"] + stats["dropped_over_total_cap"] + 1 == len(patches)
    shuffled = patches[:]
    random.Random(1).shuffle(shuffled)
    assert select(shuffled, 10_000, 1000) == (kept, stats)
    assert kept == sorted(kept)
    write_snapshot(kept, tmp_path / "a.tar.gz")
    write_snapshot(select(shuffled, 10_000, 1000)[0], tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    # under the cap nothing is dropped
    assert select(patches, 10**9, 1000)[1]["dropped_over_total_cap"] == 0


def test_kind_tells_format_patch_dep3_bare():
    fp = b"From: A <a@x>\nDate: Mon, 1 Jan 2024\nSubject: [PATCH] x\n\n---\n--- a/f\n+++ b/f\n"
    assert kind(fp) == "format-patch"
    assert kind(b"Description: fix x\n continued\nAuthor: A\n\n--- a/f\n+++ b/f\n") == "dep3"
    assert kind(b"Subject: fix x\nFrom: A\n---\n--- a/f\n+++ b/f\n") == "dep3"  # DEP-3 uses From: too
    assert kind(b"# DP: fix\n--- a/f\n+++ b/f\n") == "bare"


# --- Debian mode end to end, apt faked --------------------------------------------------------

class FakeApt:
    tarballs: dict[str, bytes] = {}

    def __init__(self, workdir, mirror, suite):
        self.fetched: list[str] = []

    def update(self):
        pass

    def print_uris(self, spec):
        pkg, _, version = spec.partition("=")
        if pkg == "gone" and version:
            return 100, "", "E: Can not find version '1.0-1' of package 'gone'\n"
        if pkg not in ("zlib", "gone", "native"):
            return 100, "", f"E: Unable to find a source package for {pkg}\n"
        v = {"gone": "1.1-1"}.get(pkg, version or "9")
        name = f"{pkg}_{v}.debian.tar.xz" if pkg != "native" else f"{pkg}_{v}.tar.xz"
        data = self.tarballs.get(pkg, b"")
        return 0, (f"'http://m/{pkg}_{v}.dsc' {pkg}_{v}.dsc 1 SHA256:{'0' * 64}\n"
                   f"'http://m/{name}' {name} {len(data)} SHA256:{hashlib.sha256(data).hexdigest()}\n"), ""

    def fetch(self, u):
        return self.tarballs[u.name.split("_")[0]]


def test_debian_mode_end_to_end_with_fake_apt(tmp_path, monkeypatch):
    FakeApt.tarballs = {
        "zlib": debian_tar({"debian/patches/series": b"", "debian/patches/a.patch": b"Subject: a\n\n--- a/x\n",
                            "debian/patches/big.patch": b"+" * 200}),
        "gone": debian_tar({"debian/patches/fix.diff": b"Description: fix\n--- a/y\n"}),
    }
    monkeypatch.setattr(harvest_patches, "Apt", FakeApt)
    monkeypatch.setattr(harvest_patches, "installed_sources", lambda: [
        ("gone", "1.0-1"), ("native", "3"), ("other", "2"), ("zlib", "1:1.2-1")])
    monkeypatch.setattr(harvest_patches, "read_mirror", lambda suite: "http://m")
    args = ["--suite", "bookworm", "--max-patch-bytes", "100", "--workdir", str(tmp_path / "w")]
    for run in ("a", "b"):
        out = ["--out", str(tmp_path / f"{run}.tar.gz"), "--summary", str(tmp_path / f"{run}.json")]
        assert harvest_patches.main([*args, *out]) == 0
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    s = json.loads((tmp_path / "a.json").read_text())
    assert sorted(dict(iter_snapshot(tmp_path / "a.tar.gz"))) == ["gone/fix.diff", "zlib/a.patch"]
    assert s["fallbacks"] == [{"package": "gone", "installed": "1.0-1", "used": "1.1-1"}]
    assert s["no_debian_tarball"] == ["native"] and s["debian_tarballs"] == 2
    assert s["failures"] == [{"package": "other", "version": "2",
                              "reason": "not in the archive: Unable to find a source package for other"}]
    assert s["patches"]["skipped_over_patch_cap"] == 1
    assert s["patches"]["kinds_kept"] == {"dep3": 2}
    # a subset names installed source packages only
    with pytest.raises(SystemExit) as exc:
        harvest_patches.main([*args, "--packages", "zlib,nope"])
    assert exc.value.code == 2


def test_checksum_mismatch_is_fatal_and_names_the_file(tmp_path, monkeypatch):
    class Tampered(FakeApt):
        def fetch(self, u):
            raise ChecksumError(f"{u.name}: SHA256 0 does not match apt's 1")

    FakeApt.tarballs = {"zlib": debian_tar({"debian/patches/a.patch": b"x"})}
    monkeypatch.setattr(harvest_patches, "Apt", Tampered)
    monkeypatch.setattr(harvest_patches, "installed_sources", lambda: [("zlib", "1")])
    monkeypatch.setattr(harvest_patches, "read_mirror", lambda suite: "http://m")
    with pytest.raises(ChecksumError, match="zlib_1.debian.tar.xz"):
        harvest_patches.main(["--suite", "bookworm", "--out", str(tmp_path / "a.tar.gz"),
                              "--summary", str(tmp_path / "a.json")])
    assert not (tmp_path / "a.tar.gz").exists()

