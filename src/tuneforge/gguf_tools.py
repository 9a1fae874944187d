"""GGUF plumbing: llama.cpp's own converter, quantisation, SHA256SUMS pins, metadata.

The converter is `convert_hf_to_gguf.py` from the llama-cpp-python sdist (the same
llama.cpp revision as the runtime that loads the files). It needs its sibling
`conversion/` package and `gguf-py/`, so those are extracted together into a cache
directory and the script runs as a subprocess with that directory's Python path.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tuneforge.fetch import PinMismatch, _dist_stem, extract_tar_members, pip_download
from tuneforge.io import atomic_path, sha256_file, write_text

log = logging.getLogger(__name__)

SUMS_NAME = "SHA256SUMS"
# What the converter needs from the sdist, relative to its vendored llama.cpp checkout.
CONVERTER_PARTS = ["convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/"]
CONVERTER_OUTTYPES = ("f32", "f16", "bf16", "q8_0")


# ---------------------------------------------------------------- converter

def ensure_converter(requirement: str, cache_dir: str | Path, sha256: str | None = None) -> Path:
    """Path to `convert_hf_to_gguf.py` extracted (once) from the pinned llama-cpp-python sdist."""
    cache_dir = Path(cache_dir)
    extracted = cache_dir / "llama.cpp" / "-".join(_dist_stem(requirement))
    # An extraction whose marker names the pinned sdist's sha256 stands in for the sdist: a
    # cache that holds only it (tools/gpu_bundle.py carries one to a machine that cannot reach
    # a registry) converts without the 76 MB download.
    if (sha256 and (extracted / ".extracted").is_file() and (extracted / "convert_hf_to_gguf.py").is_file()
            and (extracted / ".extracted").read_text().strip() == sha256):
        return extracted / "convert_hf_to_gguf.py"
    sdist = pip_download(requirement, cache_dir / "sdists", sdist=True, sha256=sha256)
    top = sdist.name.removesuffix(".tar.gz")
    dest = cache_dir / "llama.cpp" / top
    marker = dest / ".extracted"
    if not marker.exists():
        vendored = f"{top}/vendor/llama.cpp/"
        extract_tar_members(sdist, [vendored + p for p in CONVERTER_PARTS], dest, strip=vendored)
        write_text(marker, sha256_file(sdist) + "\n")
    script = dest / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} missing after extracting {sdist.name}")
    return script


def provenance_override(model_name: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The converter's `--metadata` override file: GGUF `general.*` keys only (the
    converter ignores anything else), so provenance goes into `general.description`
    as compact JSON plus the standard dataset/base-model arrays."""
    desc = json.dumps({"tuneforge": provenance}, sort_keys=True, separators=(",", ":"))
    override: dict[str, Any] = {
        "general.description": desc,
        "general.tags": ["tuneforge", provenance.get("task", "unknown")],
    }
    if provenance.get("dataset_sha256"):
        override["general.datasets"] = [{
            "name": provenance.get("dataset_name", "tuneforge-sft"),
            "version": provenance["dataset_sha256"][:16],
            "description": f"sha256:{provenance['dataset_sha256']}",
        }]
    if provenance.get("base_model"):
        override["general.base_models"] = [{"name": provenance["base_model"]}]
    if model_name:
        override["general.name"] = model_name
    return override


def staged_with_licence(model_dir: Path, licence: str, td: Path) -> Path:
    """`model_dir` seen through symlinks, plus a README.md whose YAML front matter states
    the licence. The converter takes `general.license` only from a model card: its
    `--metadata` override reads license_name and license_link but not license."""
    if (model_dir / "README.md").exists():
        raise RuntimeError(f"{model_dir}/README.md exists; convert writes the model card the "
                           "converter reads, and will not silently replace one")
    stage = td / "model" / model_dir.name  # same leaf name: the converter's name heuristics
    stage.mkdir(parents=True)
    for f in sorted(model_dir.iterdir()):
        (stage / f.name).symlink_to(f.resolve())
    card = yaml.safe_dump({"license": licence}, sort_keys=True)
    (stage / "README.md").write_text(f"---\n{card}---\n", encoding="utf-8")
    return stage


def convert_hf_to_gguf(converter: Path, model_dir: Path, out_path: Path, *, outtype: str,
                       model_name: str, metadata: dict[str, Any] | None = None,
                       licence: str | None = None) -> Path:
    """Run llama.cpp's converter on an HF model dir; the GGUF appears atomically at `out_path`.
    `licence`, when given, becomes `general.license`."""
    if outtype not in CONVERTER_OUTTYPES:
        raise ValueError(f"unknown outtype {outtype!r}; known: {', '.join(CONVERTER_OUTTYPES)}")
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, tempfile.TemporaryDirectory() as td:
        override = Path(td) / "metadata.json"
        override.write_text(json.dumps(metadata or {}, sort_keys=True, indent=1), encoding="utf-8")
        if licence:
            model_dir = staged_with_licence(Path(model_dir), licence, Path(td))
        cmd = [sys.executable, str(converter), str(model_dir), "--outfile", str(tmp),
               "--outtype", outtype, "--model-name", model_name, "--metadata", str(override)]
        # NO_LOCAL_GGUF would make the script import the installed gguf, not the sdist's gguf-py
        env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
        log.info("convert: %s", " ".join(cmd[1:]))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0 or not tmp.stat().st_size:
            raise RuntimeError(f"convert_hf_to_gguf failed (rc={proc.returncode}) on {model_dir}:\n"
                               f"{proc.stderr[-3000:]}")
    return out_path


# ---------------------------------------------------------------- quantize

def quant_ftype(name: str) -> int:
    """Registry of llama.cpp file types by name (`Q8_0`, `Q4_K_M`, ...)."""
    import llama_cpp

    const = f"LLAMA_FTYPE_MOSTLY_{name}"
    if not hasattr(llama_cpp, const):
        known = sorted(n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp)
                       if n.startswith("LLAMA_FTYPE_MOSTLY_"))
        raise ValueError(f"unknown quantisation type {name!r}; known: {', '.join(known)}")
    return int(getattr(llama_cpp, const))


def quantize(src: Path, dst: Path, qtype: str, nthread: int = 0) -> Path:
    """`llama_model_quantize` with default params and the given type, atomically."""
    import llama_cpp

    ftype = quant_ftype(qtype)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = nthread
    with atomic_path(dst) as tmp:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(),
                                            ctypes.byref(params))
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize({src.name} -> {qtype}) returned {rc}")
    return Path(dst)


# ---------------------------------------------------------------- pins

def write_sums(directory: Path, files: list[Path]) -> Path:
    """`sha256sum -c`-compatible SHA256SUMS over `files` (names relative to `directory`)."""
    lines = []
    for f in sorted(files, key=lambda p: p.name):
        if Path(f).parent.resolve() != Path(directory).resolve():
            raise ValueError(f"{f} is not directly inside {directory}")
        lines.append(f"{sha256_file(f)}  {Path(f).name}\n")
    path = Path(directory) / SUMS_NAME
    write_text(path, "".join(lines))
    return path


def read_sums(directory: Path) -> dict[str, str]:
    path = Path(directory) / SUMS_NAME
    if not path.is_file():
        raise PinMismatch(f"no {SUMS_NAME} in {directory}: run the quantize stage first")
    sums = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise PinMismatch(f"{path}:{lineno}: malformed line {line!r}")
        sums[name.lstrip("*")] = digest
    return sums


def verify_pin(path: str | Path) -> str:
    """Check a GGUF against the SHA256SUMS beside it before using it; return its sha256.
    A missing pin or a mismatch is an error that names both digests."""
    path = Path(path)
    sums = read_sums(path.parent)
    if path.name not in sums:
        raise PinMismatch(f"{path.name} is not pinned in {path.parent / SUMS_NAME} "
                          f"(pinned: {', '.join(sorted(sums)) or 'nothing'})")
    actual = sha256_file(path)
    if actual != sums[path.name]:
        raise PinMismatch(f"{path}: sha256 {actual} does not match its pin {sums[path.name]}; "
                          "the file changed after quantize wrote SHA256SUMS - refusing to use it")
    return actual


# ---------------------------------------------------------------- metadata

def read_metadata(path: str | Path, keys: list[str] | None = None) -> dict[str, Any]:
    """GGUF key/values (strings, numbers, arrays of those) without loading tensors.
    Token arrays are big; pass `keys` to read only the ones needed."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(path), "r")
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if keys is not None and name not in keys:
            continue
        if not field.types:
            continue
        if field.types[0] == GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == GGUFValueType.STRING:
                out[name] = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
            else:
                out[name] = [field.parts[i].tolist()[0] for i in field.data]
        elif field.types[0] == GGUFValueType.STRING:
            out[name] = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        else:
            out[name] = field.parts[field.data[0]].tolist()[0]
    return out


def provenance_of(path: str | Path) -> dict[str, Any]:
    """The tuneforge provenance written at conversion (general.description)."""
    desc = read_metadata(path, ["general.description"]).get("general.description", "")
    try:
        return json.loads(desc)["tuneforge"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path}: no tuneforge provenance in general.description") from None


MODEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")


def check_model_name(name: str) -> str:
    """A name that is at once a GGUF general.name, a file-name stem and a valid Ollama
    model part: lowercase letters, digits, '.', '_', '-', starting alphanumeric, <= 80
    characters, no '..'."""
    if not MODEL_NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(f"model name {name!r} is not valid: use [a-z0-9][a-z0-9._-]*, at most 80 "
                         "characters, no '..'")
    return name
