"""Debian's package registry through apt's own client, without touching the system's apt state.

Used by ``tuneforge.harvest_patches``.  Every apt call gets private ``Dir::*`` options: a
sources list of our own (one ``deb-src`` line for the machine's mirror and suite, read from
its existing ``deb`` entries), an empty parts directory, and private lists and cache
directories under the work dir; ``/etc/apt`` and ``/var/lib/apt`` are only read.

Downloads go through ``apt-helper download-file`` (apt's own downloader, shipped with apt):
it honours the machine's apt proxy and retry settings like ``apt-get`` does and checks the
SHA256 itself; we check it again on every read of the cache.  ``apt-get source
--download-only`` would also fetch the upstream tarballs, which we never want.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneforge.cli import UserError

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_HELPER = "/usr/lib/apt/apt-helper"
# apt's own words; we run it under LC_ALL=C so they are stable
_C_ENV = {**os.environ, "LC_ALL": "C", "LANGUAGE": ""}

# apt-get source --print-uris: 'URI' file-name size HASH:hex  (apt 2.6 prints one, the best hash)
_URI_LINE = re.compile(r"^'(?P<uri>[^']+)' (?P<name>\S+) (?P<size>\d+) (?P<algo>[A-Za-z0-9]+):(?P<hex>[0-9a-fA-F]+)$")
_DEBIAN_TARBALL = re.compile(r"\.debian\.tar\.(xz|gz|bz2|lzma)$")
_SKIP_NAMES = {"series", "00list"}  # quilt's and dpatch's patch lists (and series.<arch>), not patches


class ChecksumError(ValueError):
    """A downloaded file does not match the SHA256 apt printed for it."""


@dataclass(frozen=True)
class UriLine:
    uri: str
    name: str
    size: int
    sha256: str


def parse_print_uris(text: str, where: str) -> list[UriLine]:
    """The file lines of ``apt-get source --print-uris`` output (others are apt's chatter)."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("'"):
            continue
        m = _URI_LINE.match(line)
        if not m:
            raise ValueError(f"{where}: line {lineno}: not a 'URI' name size HASH:hex line: {line[:120]!r}")
        if m["algo"].upper() != "SHA256":
            raise ValueError(f"{where}: line {lineno}: apt printed a {m['algo']} checksum for {m['name']}, "
                             "not SHA256; cannot verify the download")
        if "/" in m["name"] or m["name"].startswith("."):
            raise ValueError(f"{where}: line {lineno}: file name {m['name']!r} is not a plain file name")
        found.append(UriLine(m["uri"], m["name"], int(m["size"]), m["hex"].lower()))
    return found


def debian_tarball(lines: list[UriLine]) -> UriLine | None:
    """The ``.debian.tar.*`` among a source package's files; native and 1.0 packages have none."""
    hits = [u for u in lines if _DEBIAN_TARBALL.search(u.name)]
    if len(hits) > 1:
        raise ValueError(f"several debian tarballs: {', '.join(u.name for u in hits)}")
    return hits[0] if hits else None


def version_of(lines: list[UriLine], package: str) -> str | None:
    """The version apt chose, read from the .dsc name (``pkg_version.dsc``, no epoch)."""
    for u in lines:
        if u.name.startswith(f"{package}_") and u.name.endswith(".dsc"):
            return u.name[len(package) + 1:-len(".dsc")]
    return None


@dataclass
class Resolved:
    package: str
    installed: str  # the installed source version
    used: str | None = None  # the version whose files apt printed
    fallback: bool = False  # the installed version is gone: the suite's current one was used
    tarball: UriLine | None = None
    error: str | None = None


def _apt_error(stderr: str) -> str:
    errors = [ln[3:].strip() for ln in stderr.splitlines() if ln.startswith("E: ")]
    return "; ".join(errors) or (stderr.strip().splitlines() or ["apt-get failed without a message"])[-1]


PrintUris = Callable[[str], tuple[int, str, str]]  # spec -> (returncode, stdout, stderr)


def resolve(package: str, version: str, print_uris: PrintUris) -> Resolved:
    """Ask apt for ``package=version``; when that version is gone, for the suite's current one."""
    res = Resolved(package, version)
    rc, out, err = print_uris(f"{package}={version}")
    if rc != 0:
        rc, out, err2 = print_uris(package)
        if rc != 0:
            res.error = f"not in the archive: {_apt_error(err2 or err)}"
            return res
        res.fallback = True
    where = f"apt-get source --print-uris {package}"
    lines = parse_print_uris(out, where)
    res.used = version_of(lines, package) or (None if res.fallback else version)
    try:
        res.tarball = debian_tarball(lines)
    except ValueError as e:
        res.error = str(e)
    return res


def extract_patches(data: bytes, name: str) -> list[tuple[str, bytes]]:
    """(path under debian/patches, bytes) of each patch in a debian tarball, sorted."""
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for info in tar:
                path = info.name.removeprefix("./")
                if not info.isfile() or not path.startswith("debian/patches/"):
                    continue
                rel = path.removeprefix("debian/patches/")
                parts = rel.split("/")
                if parts[-1].split(".")[0] in _SKIP_NAMES or ".." in parts or "" in parts:
                    continue
                fh = tar.extractfile(info)
                out.append((rel, fh.read() if fh is not None else b""))
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:  # lzma/zlib errors are OSError/ValueError
        raise ValueError(f"unreadable tarball: {name}: {e}") from e
    return sorted(out)


def read_mirror(suite: str, etc: Path = Path("/etc/apt")) -> str:
    """The URI of the machine's first enabled ``deb`` entry for ``suite`` with component main."""
    files = [etc / "sources.list"] if (etc / "sources.list").is_file() else []
    parts = etc / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        for types, uri, suites, comps in _entries(path):
            if "deb" in types and suite in suites and "main" in comps:
                return uri.rstrip("/")
    raise UserError(f"no enabled 'deb' entry for suite {suite} (component main) in {etc}/sources.list or "
                    f"{etc}/sources.list.d/; name the mirror with --mirror")


def _entries(path: Path):
    """(types, uri, suites, components) of a one-line .list or a deb822 .sources file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".sources":
        for para in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            key = None
            for line in para.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0] in " \t" and key:  # continuation line
                    fields[key] += " " + line.strip()
                elif ":" in line:
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                yield fields.get("types", "").split(), uri, fields.get("suites", "").split(), \
                    fields.get("components", "").split()
        return
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
        if len(words) >= 3:
            yield [words[0]], words[1], [words[2]], words[3:]


class Apt:
    """apt-get and apt-helper with private state under ``workdir``."""

    def __init__(self, workdir: Path, mirror: str, suite: str):
        self.root = (workdir / "apt").resolve()
        self.files = (workdir / "debian").resolve()  # the download cache: a rerun reads it
        for d in ("parts", "lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.files.mkdir(parents=True, exist_ok=True)
        self.sources = self.root / "sources.list"
        line = f"deb-src [signed-by={KEYRING}] {mirror} {suite} main\n"
        if not self.sources.exists() or self.sources.read_text() != line:
            self.sources.write_text(line)
        self.options = ["-o", f"Dir::Etc::SourceList={self.sources}", "-o", f"Dir::Etc::SourceParts={self.root}/parts",
                        "-o", f"Dir::State::Lists={self.root}/lists", "-o", f"Dir::Cache={self.root}/cache"]

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, env=_C_ENV, check=False)

    def update(self) -> None:
        p = self._run(["apt-get", *self.options, "-q", "update"])
        # apt-get update exits 0 on some fetch errors and says so with W:/E: lines
        if p.returncode != 0 or re.search(r"^(E:|W: Failed to fetch)", p.stderr, re.M):
            raise UserError(f"apt-get update with {self.sources} failed: {_apt_error(p.stderr)}")

    def print_uris(self, spec: str) -> tuple[int, str, str]:
        p = self._run(["apt-get", *self.options, "-qq", "--only-source", "source", "--print-uris", spec])
        return p.returncode, p.stdout, p.stderr

    def fetch(self, u: UriLine) -> bytes:
        """The file's bytes from the cache, or downloaded once; SHA256-checked either way."""
        path = self.files / u.name
        if path.exists():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == u.sha256:
                return data
            path.unlink()  # a stale or damaged cache entry: download again
        part = path.with_name(path.name + ".part")
        p = self._run([APT_HELPER, *self.options, "-o", "Acquire::Retries=3", "download-file", u.uri, str(part),
                       f"SHA256:{u.sha256}"])
        for leftover in (part.with_name(part.name + ".FAILED"),):
            leftover.unlink(missing_ok=True)
        if p.returncode != 0:
            part.unlink(missing_ok=True)
            if "Hash Sum mismatch" in p.stderr + p.stdout:
                raise ChecksumError(f"{u.name}: SHA256 mismatch against apt's {u.sha256} (from {u.uri})")
            # the reason without the URL (the name is in the report already) and the server's IP
            reason = re.sub(r"\s*\[IP: [^]]*\]|Failed to fetch \S+\s*|; Download Failed$", "", _apt_error(p.stderr))
            raise OSError(f"download failed: {' '.join(reason.split())}")
        data = part.read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != u.sha256:
            part.unlink()
            raise ChecksumError(f"{u.name}: SHA256 {got} does not match apt's {u.sha256} (from {u.uri})")
        os.replace(part, path)
        return data


def installed_sources(runner=subprocess.run) -> list[tuple[str, str]]:
    """(source package, source version) of every installed binary package, deduplicated, sorted.

    A source installed at two versions (a partial upgrade) keeps the higher one."""
    p = runner(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${source:Package}\t${source:Version}\n"],
               capture_output=True, text=True, env=_C_ENV, check=False)
    if p.returncode != 0:
        raise UserError(f"dpkg-query failed: {p.stderr.strip()[:200]}")
    return pick_installed(p.stdout)


def pick_installed(text: str) -> list[tuple[str, str]]:
    versions: dict[str, set[str]] = {}
    for line in text.splitlines():
        status, _, rest = line.partition("\t")
        src, _, version = rest.partition("\t")
        if len(status) >= 2 and status[1] == "i" and src and version:  # ii, hi: unpacked and configured
            versions.setdefault(src, set()).add(version)
    return [(src, max(vs, key=functools.cmp_to_key(_dpkg_cmp)) if len(vs) > 1 else next(iter(vs)))
            for src, vs in sorted(versions.items())]


def _dpkg_cmp(a: str, b: str) -> int:
    if a == b:
        return 0
    gt = subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0
    return 1 if gt else -1
