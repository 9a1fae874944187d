"""GGUF plumbing: llama.cpp's own converter, quantisation, SHA256SUMS pins, metadata.

The converter is `convert_hf_to_gguf.py` from the llama-cpp-python sdist (the same
llama.cpp revision as the runtime that loads the files). It needs its sibling
`conversion/` package and `gguf-py/`, so those are extracted together into a cache
directory and the script runs as a subprocess with that directory's Python path.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import mmap
import os
import re
import shutil
import struct
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
    """Path to `convert_hf_to_gguf.py` extracted (once) from the pinned llama-cpp-python sdist.
    The extraction's marker names the sha256 of the sdist it came from. With a pin, a marker
    that names it stands in for the sdist: a cache that holds only the extraction
    (tools/gpu_bundle.py carries one to a machine that cannot reach a registry) converts
    without the 76 MB download. Otherwise the sdist decides: an extraction whose marker names
    other bytes is replaced, not reused."""
    cache_dir = Path(cache_dir)
    dest = cache_dir / "llama.cpp" / "-".join(_dist_stem(requirement))
    marker, script = dest / ".extracted", dest / "convert_hf_to_gguf.py"

    def extracted_from(digest: str) -> bool:
        return marker.is_file() and script.is_file() and marker.read_text().strip() == digest

    if sha256 and extracted_from(sha256):
        return script
    sdist = pip_download(requirement, cache_dir / "sdists", sdist=True, sha256=sha256)
    digest = sha256_file(sdist)
    if not extracted_from(digest):
        shutil.rmtree(dest, ignore_errors=True)
        vendored = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        extract_tar_members(sdist, [vendored + p for p in CONVERTER_PARTS], dest, strip=vendored)
        write_text(marker, digest + "\n")
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
#
# Our own reader of the GGUF header, not gguf-py's GGUFReader. GGUFReader builds a numpy
# memmap view for every part of every field (each of a 49k-token vocabulary's strings, twice:
# length and bytes) and every tensor record: ~10 s a file on these machines, 145 of register's
# 163 s on the tiny test model (15 reads). The header is a flat little-endian list (the GGUF
# spec: magic, version, tensor count, key/value count, then each key, its type and its value),
# so a walk that slices bytes reads one in ~0.1 s. Only the metadata is read; tensors are
# llama.cpp's business.

# GGUF value types (gguf-py's GGUFValueType) with their struct formats; 8 is a string (u64
# length + bytes), 9 an array (element type u32, count u64, elements)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _string_spans(m: mmap.mmap | bytes, pos: int, count: int):
    """(start, end) of the bytes of each of `count` strings stored from m[pos:] (u64 length +
    bytes each); the walk skips them by it and _decode reads them by it."""
    for _ in range(count):
        start = pos + 8
        pos = start + struct.unpack_from("<Q", m, pos)[0]
        yield start, pos


def _value_end(m: mmap.mmap, pos: int, vtype: int) -> int:
    """Where the value stored at m[pos:] (after its type tag) ends."""
    if vtype == _ARRAY:
        etype, count = struct.unpack_from("<IQ", m, pos)
        if etype == _STRING:
            end = pos + 12
            for _, end in _string_spans(m, pos + 12, count):  # noqa: B007 (the last end is the array's)
                pass
            return end
        return pos + 12 + struct.calcsize(_SCALAR[etype]) * count
    if vtype == _STRING:
        return next(_string_spans(m, pos, 1))[1]
    return pos + struct.calcsize(_SCALAR[vtype])


def _walk(path: str | Path, visit) -> tuple[int, int, int]:
    """Call visit(key, vtype, memory, start, end) for every metadata entry, where
    memory[start:end] is its value as stored (type tag first); returns (version, tensor
    count, key/value count). A malformed header is a ValueError naming the file and entry."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return _walk_mapped(path, m, visit)


def _walk_mapped(path: str | Path, m: mmap.mmap, visit) -> tuple[int, int, int]:
    """_walk over a file already mapped (`path` names it in errors)."""
    if m[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file (magic {m[:4]!r})")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", m, 4)
    if version not in (2, 3):
        raise ValueError(f"{path}: GGUF version {version} (little-endian 2 or 3 expected)")
    pos, done = 24, 0
    try:
        for done in range(n_kv):  # noqa: B007 (`done` names the entry in the error below)
            size = struct.unpack_from("<Q", m, pos)[0]
            key = m[pos + 8: pos + 8 + size].decode("utf-8")
            start = pos + 8 + size
            vtype = struct.unpack_from("<I", m, start)[0]
            pos = _value_end(m, start + 4, vtype)
            if pos > len(m):
                raise struct.error("past the end of the file")
            visit(key, vtype, m, start, pos)
    except (struct.error, KeyError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: metadata entry {done + 1} of {n_kv} at byte {pos} is malformed "
                         f"({type(e).__name__}: {e})") from None
    return version, n_tensors, n_kv


def _decode(vtype: int, m: mmap.mmap | bytes, pos: int) -> Any:
    """The value at m[pos:] (after its type tag): a number, bool, str or list of those."""
    if vtype == _STRING:
        ((start, end),) = _string_spans(m, pos, 1)
        return m[start:end].decode("utf-8", "replace")
    if vtype == _ARRAY:
        etype, count = struct.unpack_from("<IQ", m, pos)
        if etype == _STRING:
            return [m[start:end].decode("utf-8", "replace") for start, end in _string_spans(m, pos + 12, count)]
        return list(struct.unpack_from(f"<{count}{_SCALAR[etype][1]}", m, pos + 12))
    return struct.unpack_from(_SCALAR[vtype], m, pos)[0]


def read_metadata(path: str | Path, keys: list[str] | None = None) -> dict[str, Any]:
    """GGUF key/values (strings, numbers, arrays of those) without loading tensors, plus
    gguf-py's GGUF.version / GGUF.tensor_count / GGUF.kv_count. `keys`: only those are
    decoded (a 49k-entry token array is not, unless asked for)."""
    out: dict[str, Any] = {}

    def visit(key: str, vtype: int, m: mmap.mmap, start: int, end: int) -> None:
        if keys is None or key in keys:
            out[key] = _decode(vtype, m, start + 4)

    version, n_tensors, n_kv = _walk(path, visit)
    header = {"GGUF.version": version, "GGUF.tensor_count": n_tensors, "GGUF.kv_count": n_kv}
    return {**{k: v for k, v in header.items() if keys is None or k in keys}, **out}


def raw_metadata(path: str | Path) -> dict[str, bytes]:
    """Each metadata key's value as the file stores it (type tag, lengths and bytes)."""
    out: dict[str, bytes] = {}
    _walk(path, lambda key, vtype, m, start, end: out.__setitem__(key, m[start:end]))
    return out


def behaviour_sha256(path: str | Path) -> str:
    """SHA-256 over what a GGUF's answers depend on: every metadata entry but
    general.description (convert's provenance, which llama.cpp never reads), in file order,
    then the tensor records and the tensor data, byte for byte. The alignment padding between
    them is left out: its length moves with the description's. Two files that differ only in
    their provenance (a param convert declares, v19 against v18) decode alike, so eval's
    memo keys answers on this and such a change costs no decoding."""
    h = hashlib.sha256()
    kv_end, align = [24], [32]  # GGUF's default alignment, unless general.alignment says otherwise

    def visit(key: str, vtype: int, m: mmap.mmap, start: int, end: int) -> None:
        kv_end[0] = end
        if key == "general.alignment":
            align[0] = _decode(vtype, m, start + 4)
        if key != "general.description":
            h.update(len(key).to_bytes(8, "little") + key.encode() + (end - start).to_bytes(8, "little") + m[start:end])

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        version, n_tensors, _ = _walk_mapped(path, m, visit)
        h.update(struct.pack("<IQ", version, n_tensors))
        pos = kv_end[0]
        for _ in range(n_tensors):  # name (u64 length + bytes), n_dims u32, dims u64 each, type u32, offset u64
            pos = next(_string_spans(m, pos, 1))[1]
            pos += 4 + 8 * struct.unpack_from("<I", m, pos)[0] + 4 + 8
        if pos > len(m):
            raise ValueError(f"{path}: its {n_tensors} tensor records run past the end of the file")
        h.update(m[kv_end[0]:pos])
        data = -(-pos // align[0]) * align[0]
        for at in range(data, len(m), 1 << 24):
            h.update(m[at: min(at + (1 << 24), len(m))])
    return h.hexdigest()


def tokenizer_digest(path: str | Path) -> str:
    """SHA-256 over what llama.cpp builds a GGUF's tokenizer from: every `tokenizer.*` entry
    (model, pre-tokenizer, tokens, token types, merges, special ids and flags, the chat
    template), the architecture and its vocab_size, byte for byte. Two GGUFs with the same
    digest tokenise every text the same (fidelity's round trip tokenises once per digest)."""
    meta = raw_metadata(path)
    arch = _decode(_STRING, meta["general.architecture"], 4) if "general.architecture" in meta else ""
    h = hashlib.sha256()
    for key in sorted(k for k in meta if k.startswith("tokenizer.") or k in ("general.architecture",
                                                                             f"{arch}.vocab_size")):
        h.update(len(key).to_bytes(8, "little") + key.encode() + len(meta[key]).to_bytes(8, "little") + meta[key])
    return h.hexdigest()


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
