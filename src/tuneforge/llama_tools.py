"""llama.cpp's own command-line tools, built from the pinned llama-cpp-python sdist.

quantize's importance matrix needs two of them: `llama-imatrix` (activation statistics of the
f16 GGUF over our own SFT text) and `llama-quantize --imatrix`. The Python bindings cannot do
either: they expose `llama_model_quantize`, whose `imatrix` field is a pointer to a C++
`unordered_map`, and no imatrix collector. So both tools are compiled once, from the same
vendored llama.cpp the converter and the runtime come from, into the cache under a key of the
sdist's sha256, the cmake flags and the compiler (any of them changing builds afresh).

A file lock serialises the build (tests' workers, two stages at once); a finished build has a
marker file, so one cut short is built again rather than used.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from filelock import FileLock

from tuneforge.fetch import extract_tar_members, pip_download
from tuneforge.io import atomic_path, sha256_file, write_text

log = logging.getLogger(__name__)

TOOLS = ("llama-imatrix", "llama-quantize")
# Static binaries (no rpath into a temp build dir), CPU only, no network, no server or tests:
# the smallest build that holds the two tools. GGML_NATIVE stays on, as in the runtime's wheel.
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
               "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_BUILD_SERVER=OFF", "-DGGML_OPENMP=OFF")


def _compiler() -> str:
    out = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


def build_key(sdist_sha256: str) -> str:
    text = "\n".join([sdist_sha256, *CMAKE_FLAGS, _compiler()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_tools(requirement: str, cache_dir: str | Path, sha256: str | None = None) -> dict[str, Path]:
    """Paths of the built tools, building them (several minutes on 2 cores) when not cached."""
    for prog in ("cmake", "ninja", "c++"):
        if shutil.which(prog) is None:
            raise RuntimeError(f"building llama.cpp's tools needs `{prog}` on PATH "
                               "(apt-get install cmake ninja-build g++)")
    cache_dir = Path(cache_dir).resolve()   # absolute: the tools run from scratch directories
    sdist = pip_download(requirement, cache_dir / "sdists", sdist=True, sha256=sha256)
    digest = sha256_file(sdist)
    top = sdist.name.removesuffix(".tar.gz")
    dest = cache_dir / "llama-tools" / f"{top}-{build_key(digest)}"
    bins = {t: dest / "bin" / t for t in TOOLS}
    marker = dest / ".built"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if marker.is_file() and all(p.is_file() for p in bins.values()):
            return bins
        with tempfile.TemporaryDirectory(prefix="llama-tools-", dir=dest.parent) as td:
            src, build = Path(td) / "src", Path(td) / "build"
            vendored = f"{top}/vendor/llama.cpp/"
            extract_tar_members(sdist, [vendored], src, strip=vendored)  # its CMakeLists reads most of it
            log.info("building %s from %s (once per sdist; minutes)", ", ".join(TOOLS), sdist.name)
            _run(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja", *CMAKE_FLAGS], "cmake")
            _run(["ninja", "-C", str(build), f"-j{os.cpu_count() or 2}", *TOOLS], "ninja")
            (dest / "bin").mkdir(parents=True, exist_ok=True)
            for tool, path in bins.items():
                with atomic_path(path) as tmp:
                    shutil.copy2(build / "bin" / tool, tmp)
                path.chmod(0o755)
        write_text(marker, f"{digest}\n")
    return bins


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (rc={proc.returncode}): {' '.join(cmd)}\n"
                           f"{(proc.stderr or proc.stdout)[-3000:]}")
    return proc.stdout + proc.stderr


def compute_imatrix(tool: Path, gguf: Path, text: str, out: Path, *, ctx: int, chunks: int,
                    threads: int) -> Path:
    """`llama-imatrix` over `text` (chat-rendered SFT rows, special tokens parsed as such):
    squared activations of every matrix multiply's input, `chunks` windows of `ctx` tokens.

    It runs in a scratch directory under fixed file names, because the tool records the
    dataset's path in the imatrix and llama-quantize records the imatrix's path in every
    GGUF it writes: a temp path there would make two builds differ.
    """
    with tempfile.TemporaryDirectory(prefix="imatrix-") as td:
        work = Path(td)
        (work / "calibration.txt").write_text(text, encoding="utf-8")
        os.symlink(Path(gguf).resolve(), work / "model.gguf")
        cmd = [str(tool), "-m", "model.gguf", "-f", "calibration.txt", "-o", "imatrix.gguf",
               "-c", str(ctx), "-b", str(ctx), "--chunks", str(chunks), "--parse-special", "--no-ppl",
               "-t", str(threads or os.cpu_count() or 1), "-ngl", "0"]
        log_text = _run(cmd, "llama-imatrix", cwd=work)
        made = work / "imatrix.gguf"
        if not made.is_file():
            raise RuntimeError(f"llama-imatrix wrote no imatrix:\n{log_text[-2000:]}")
        with atomic_path(out) as tmp:
            shutil.copyfile(made, tmp)
    return Path(out)


def quantize_with_imatrix(tool: Path, src: Path, dst: Path, qtype: str, imatrix: Path,
                          nthread: int = 0) -> Path:
    """`llama-quantize --imatrix` (run from a scratch directory, see compute_imatrix)."""
    with tempfile.TemporaryDirectory(prefix="quantize-") as td:
        work = Path(td)
        os.symlink(Path(imatrix).resolve(), work / "imatrix.gguf")
        os.symlink(Path(src).resolve(), work / "model.gguf")
        cmd = [str(tool), "--imatrix", "imatrix.gguf", "model.gguf", "out.gguf", qtype,
               str(nthread or os.cpu_count() or 1)]
        log_text = _run(cmd, "llama-quantize", cwd=work)
        made = work / "out.gguf"
        if not made.is_file() or not made.stat().st_size:
            raise RuntimeError(f"llama-quantize wrote nothing:\n{log_text[-2000:]}")
        with atomic_path(dst) as tmp:
            shutil.copyfile(made, tmp)
    return Path(dst)


def main() -> int:
    """`python -m tuneforge.llama_tools`: build (or find) the tools for params.yaml's pins;
    `make setup` runs it so that no stage or test waits for the build."""
    from tuneforge import config, names

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.load(config.PARAMS)
    tools = ensure_tools(f"llama-cpp-python=={params.toolchain.llama_cpp_python}", names.CACHE,
                         params.convert.sdist_sha256)
    for name, path in tools.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
