"""Pack what `make gpu-check` needs for a CUDA machine that has a CUDA torch but cannot reach a
package registry (this workplace's lent GPU machine: its image holds torch with CUDA, no
network). `make gpu-check` itself builds .venv-gpu from PyPI; where that cannot be done, the
bundle brings the rest:

- site.tar.xz: the project's pinned packages that such an image lacks or holds at another
  version (versions read from requirements.lock / requirements-gpu.lock, the one source of
  truth), installed here for the image's Python and platform with pip's own --target; the
  bitsandbytes wheel cut down to its one CUDA library (the full wheel carries eleven CUDA and
  ROCm builds, 43 MB, over the device's carry limit); the llama_cpp package from .venv (its
  CPU build: the fallback when the CUDA build below fails) and its dist-info.
- llama-src.tar.xz: llama.cpp's sources from the pinned llama-cpp-python sdist, only what a
  shared-library build with the CUDA backend reads; run.sh compiles them there with nvcc, so
  the offload test runs the same llama.cpp version as the converter.
- tokenizer/ (in site.tar.xz): the base's tokenizer, saved (the tiny test model is built from it there:
  tests/conftest.py reads TUNEFORGE_BASE_TOKENIZER instead of fetching the base wheel).
- cache/ (in site.tar.xz): the converter's extraction from the sdist, marked with its sha256,
  as TUNEFORGE_CACHE there (the convert stage takes it for the 76 MB sdist).
- run.sh: run there from the repository root with the image's python3.

    python -m tools.gpu_bundle [--python 3.12] [--cuda 130]     # -> .cache/gpu-bundle
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tuneforge.fetch import extract_tar_members

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "gpu-bundle"
CACHE = ROOT / ".cache"

# What a CUDA image with torch, numpy and the usual scientific stack lacks, or holds at a version
# the project's code was not written against (transformers, peft, trl, tokenizers, the hub).
# torch, numpy, accelerate, safetensors, jinja2 and the other pins come from the image: the
# run records the versions it had (run.sh prints them, the adapter sidecar keeps them).
# jsonschema-rs is left out (15 MB; only the export stage, which the GPU tests do not run,
# imports it).
PACKAGES = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "duckdb", "tqdm",
            "tenacity", "filelock", "google-re2", "transformers", "huggingface-hub",
            "httpx2", "httpcore2", "truststore", "peft", "trl", "datasets", "multiprocess", "dill",
            "tokenizers", "gguf", "diskcache", "pydot"]
GPU_PACKAGES = ["bitsandbytes"]
# llama.cpp sources a shared-library build with the CPU and CUDA backends reads (the sdist's
# vendor tree is 170 MB, mostly models/ and docs/): these prefixes, with ggml/src's other
# backends left out
LLAMA_PATHS = ["CMakeLists.txt", "cmake/", "include/", "src/", "vendor/", "ggml/CMakeLists.txt", "ggml/cmake/",
               "ggml/include/", "ggml/src/"]
GGML_BACKENDS = {"ggml-cpu", "ggml-cuda", "ggml-blas"}


def pins(lock: Path) -> dict[str, str]:
    """`name==version` lines of a uv/pip-compile lock -> {normalised name: version}."""
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", lock.read_text(), flags=re.M)
    return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in found}


def pip_target(target: Path, reqs: list[str], python: str) -> None:
    """Install `reqs` (no dependencies: the list is the closure) for CPython `python` on
    manylinux x86_64 into `target`, as binary wheels only."""
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                              "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                                              "manylinux2014_x86_64")]
    abi = "cp" + python.replace(".", "")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:",
                    "--target", str(target), "--python-version", python, "--implementation", "cp",
                    "--abi", abi, "--abi", "abi3", "--abi", "none", *platforms, *reqs], check=True)


def bitsandbytes(site: Path, version: str, python: str, cuda: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pip_target(Path(tmp), [f"bitsandbytes=={version}"], python)
        keep = f"libbitsandbytes_cuda{cuda}.so"
        libs = sorted(Path(tmp, "bitsandbytes").glob("libbitsandbytes_*.so"))
        if keep not in {p.name for p in libs}:
            raise SystemExit(f"gpu_bundle: bitsandbytes {version} has no {keep}; it has "
                             + ", ".join(p.name for p in libs))
        for lib in libs:
            if lib.name != keep:
                lib.unlink()
        for entry in Path(tmp).iterdir():
            shutil.move(str(entry), site / entry.name)


def llama_cpp_package(site: Path) -> str:
    import llama_cpp

    pkg = Path(llama_cpp.__file__).parent
    shutil.copytree(pkg, site / "llama_cpp", ignore=shutil.ignore_patterns("__pycache__"))
    # the build installs each library three times (libx.so, .so.0, .so.0.25.3), as copies: link
    # the two soname aliases to the versioned file, 5 MB less to carry
    for lib in sorted((site / "llama_cpp" / "lib").glob("*.so*")):
        versioned = max(lib.parent.glob(lib.name.split(".so")[0] + ".so*"), key=lambda p: len(p.name))
        if lib != versioned and lib.read_bytes() == versioned.read_bytes():
            lib.unlink()
            lib.symlink_to(versioned.name)
    dist = next(pkg.parent.glob("llama_cpp_python-*.dist-info"))
    shutil.copytree(dist, site / dist.name)
    return llama_cpp.__version__


def llama_sources(out: Path, version: str) -> None:
    sdist = CACHE / "sdists" / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.exists():
        raise SystemExit(f"gpu_bundle: {sdist} is missing (make setup downloads it)")
    vendored = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tempfile.TemporaryDirectory() as tmp:
        # fetch's extractor (prefix match, path checks); ggml/src whole, then only the CPU, CUDA
        # and BLAS backends of it kept
        extract_tar_members(sdist, [vendored + p for p in LLAMA_PATHS], Path(tmp), strip=vendored)
        for entry in Path(tmp, "ggml", "src").iterdir():
            if entry.is_dir() and entry.name not in GGML_BACKENDS:
                shutil.rmtree(entry)
        subprocess.run(["tar", "-C", tmp, "-I", "xz -T0", "-cf", str(out), *sorted(os.listdir(tmp))], check=True)


def tokenizer(out: Path, params: dict) -> None:
    from tuneforge.base_models import load_tokenizer, resolve_base

    load_tokenizer(resolve_base(params["base"], CACHE)).save_pretrained(out)


def converter(cache: Path, version: str, params: dict) -> None:
    """The converter's extraction with its sha256 marker: gguf_tools.ensure_converter takes it
    for the pinned sdist, so the convert stage runs there without the sdist."""
    from tuneforge.gguf_tools import ensure_converter

    script = ensure_converter(f"llama-cpp-python=={version}", CACHE, params["convert"]["sdist_sha256"])
    shutil.copytree(script.parent, cache / "llama.cpp" / script.parent.name,
                    ignore=shutil.ignore_patterns("__pycache__"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default="3.12", help="the CUDA image's Python (major.minor)")
    ap.add_argument("--cuda", default="130", help="bitsandbytes library to keep (the image's CUDA, e.g. 130)")
    args = ap.parse_args(argv)

    locked = pins(ROOT / "requirements.lock") | {
        k: v for k, v in pins(ROOT / "requirements-gpu.lock").items() if k in GPU_PACKAGES}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp, "site")
        pip_target(site, [f"{p}=={locked[p]}" for p in PACKAGES], args.python)
        bitsandbytes(site, locked["bitsandbytes"], args.python, args.cuda)
        version = llama_cpp_package(site)
        tokenizer(Path(tmp, "tokenizer"), params)
        converter(Path(tmp, "cache"), version, params)
        # tar with xz on every core: tarfile's xz is single-threaded (~250 MB here)
        subprocess.run(["tar", "-C", tmp, "-I", "xz -T0", "-cf", str(OUT / "site.tar.xz"),
                        "site", "tokenizer", "cache"], check=True)
    llama_sources(OUT / "llama-src.tar.xz", version)
    shutil.copy(ROOT / "tools" / "gpu_check_device.sh", OUT / "run.sh")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"gpu_bundle: {OUT.relative_to(ROOT)} ({size / 2**20:.1f} MiB): python {args.python}, "
          f"bitsandbytes {locked['bitsandbytes']} (cuda{args.cuda}), llama.cpp {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
