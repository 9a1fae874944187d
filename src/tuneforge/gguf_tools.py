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
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from tuneforge.fetch import PinMismatch, extract_tar_members, pip_download
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


# ---------------------------------------------------------------- inference

def grammar_schema(schema: Any) -> Any:
    """The JSON schema as llama.cpp's schema-to-grammar converter needs it: it copies an
    escaped literal like `\\.` from a regex `pattern` into the grammar, whose parser then
    rejects it ("unknown escape"), so escaped punctuation outside character classes is
    rewritten as a one-character class (`[.]`), which means the same. The converter drops
    `maxLength` where there is a `pattern`, so a kebab-case pattern with a maxLength becomes
    a placeholder literal that json_gbnf replaces with a rule bounding both."""
    if isinstance(schema, dict):
        kebab = _bounded_kebab(schema)
        if kebab:
            rest = {k: v for k, v in schema.items() if k not in ("pattern", "maxLength")}
            return {**grammar_schema(rest), "pattern": f"^{kebab[0]}$"}
        return {k: _class_escapes(v) if k == "pattern" and isinstance(v, str) else grammar_schema(v)
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [grammar_schema(v) for v in schema]
    return schema


# `^[class]+(SEP[class]+)*$` (tags: `^[a-z0-9]+(-[a-z0-9]+)*$`)
_KEBAB_RE = re.compile(r"\^\[([^\]\\]+)\]\+\(([^\w\\\[\]()])\[\1\]\+\)\*\$")


def _bounded_kebab(schema: dict) -> tuple[str, str, str, int] | None:
    """(rule name, class, separator, max length) for a kebab-pattern string with a maxLength."""
    kebab = _KEBAB_RE.fullmatch(str(schema.get("pattern", "")))
    if not kebab or not isinstance(schema.get("maxLength"), int):
        return None
    cls, sep, n = kebab.group(1), kebab.group(2), schema["maxLength"]
    return f"kebab-{hashlib.sha256((cls + sep).encode()).hexdigest()[:8]}-{n}", cls, sep, n


def _bounded_kebabs(schema: Any) -> dict[str, tuple[str, str, int]]:
    found = {}
    if isinstance(schema, dict):
        kebab = _bounded_kebab(schema)
        if kebab:
            found[kebab[0]] = kebab[1:]
        for v in schema.values():
            found.update(_bounded_kebabs(v))
    elif isinstance(schema, list):
        for v in schema:
            found.update(_bounded_kebabs(v))
    return found


def bounded_kebab_rules(name: str, cls: str, sep: str, n: int) -> list[str]:
    """GBNF for `[cls]+(sep[cls]+)*` at most `n` characters long: `name-k` is what may follow
    a class character when k characters are left (another one, or sep and one)."""
    c, s = f"[{cls}]", json.dumps(sep)
    lines = [f"{name} ::= {c}" + (f" {name}-{n - 1}" if n > 1 else "")]
    for k in range(n - 1, 0, -1):
        one = f"{c} {name}-{k - 1}" if k > 1 else c
        two = f" | {s} {c}" + (f" {name}-{k - 2}" if k > 2 else "") if k > 1 else ""
        lines.append(f"{name}-{k} ::= ({one}{two})?")
    return lines


def _class_escapes(pattern: str) -> str:
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(f"[{nxt}]" if not in_class and not nxt.isalnum() and nxt not in "[]^\\"
                       else c + nxt)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


def open_gguf(path: str | Path, *, n_ctx: int, n_threads: int, verbose: bool = False):
    """A llama.cpp model that decodes greedily with the grammar checked first on the argmax."""
    return _grammar_first_class()(str(path), n_ctx=n_ctx, n_threads=n_threads or None, seed=0,
                                  verbose=verbose)


def load_llama(path: str | Path, **kwargs: Any):
    """llama_cpp.Llama(path, **kwargs) with its own sampler chain (a baseline to compare
    open_gguf's decoder with), loaded into plain CPU buffers like every model opened here."""
    return _plain_llama_class()(str(path), **kwargs)


# ---------------------------------------------------------------- loading without extra buffers
#
# llama-cpp-python is built from its sdist with GGML_NATIVE, so on an Intel Xeon with AMX
# (Sapphire Rapids and later: AMX_INT8 = 1 in llama_print_system_info()) llama.cpp's AMX
# "extra" buffer type is compiled in. Quantised weights (Q4_0, Q8_0, Q4_K, ...) are then
# repacked into it at load and the first llama_decode segfaults in ggml_backend_amx_mul_mat
# (llama.cpp issue #20824; dspy PR #10079 dropped its AMX build for the same crash on CI). So
# every model this module opens is loaded with use_extra_bufts off (llama.cpp's
# --no-extra-bufts): weights stay in plain CPU buffers. It is off on every machine, not only
# AMX ones: the CPU_REPACK buffer it also turns off reorders the arithmetic too, so this keeps
# the same kernels, and greedy answers, on CI and dev machines; decode speed barely moves on
# our small models (see tests/test_llama_runtime.py). Llama() has no keyword for it, hence the
# hook below, written against llama-cpp-python 0.3.36, whose Llama.__init__ assigns
# `self.model_params = llama_model_default_params()` and fills it in before it loads the
# model: the class catches that assignment. Both things it relies on (the field, the
# assignment) are checked on every load, so a llama-cpp-python that changes either fails at
# load with a clear error instead of decoding on AMX.

def without_extra_bufts(params):
    """`params` (a llama_model_params) with use_extra_bufts off."""
    # a setattr on a ctypes Structure without that field would add a Python attribute and
    # change nothing in what llama.cpp reads
    if "use_extra_bufts" not in {name for name, *_ in type(params)._fields_}:
        raise RuntimeError("llama_cpp's llama_model_params has no use_extra_bufts field: cannot keep "
                           "weights out of llama.cpp's AMX buffer (a segfault on AMX CPUs); update "
                           "gguf_tools.without_extra_bufts for this llama-cpp-python version")
    params.use_extra_bufts = False
    return params


_PLAIN_LLAMA = None


def _plain_llama_class():
    """llama_cpp.Llama loading its weights into plain CPU buffers (see above). Built lazily:
    llama_cpp is an optional import."""
    global _PLAIN_LLAMA
    if _PLAIN_LLAMA is not None:
        return _PLAIN_LLAMA
    from llama_cpp import Llama

    class PlainBuffersLlama(Llama):
        @property
        def model_params(self):
            return self.__dict__["model_params"]

        @model_params.setter
        def model_params(self, params) -> None:  # Llama.__init__'s assignment, before the load
            self.__dict__["model_params"] = without_extra_bufts(params)

        def __init__(self, model_path: str, *args: Any, **kwargs: Any):
            super().__init__(model_path, *args, **kwargs)
            if "model_params" not in self.__dict__:
                self.close()
                raise RuntimeError("llama_cpp.Llama.__init__ no longer assigns self.model_params: "
                                   f"{model_path} may have loaded into llama.cpp's AMX buffer (a "
                                   "segfault on AMX CPUs); update gguf_tools._plain_llama_class")

    _PLAIN_LLAMA = PlainBuffersLlama
    return _PLAIN_LLAMA


# llama-cpp-python's Python converter lets any character but '"' and '\\' into a string,
# raw newlines and other control characters included, which strict JSON then rejects;
# llama.cpp's own C++ converter excludes them. Its rule, byte for byte:
LOOSE_CHAR = r'char ::= [^"\\] | '
STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | '


def json_gbnf(schema: dict) -> str:
    """The GBNF grammar eval decodes under: the task's output schema through llama.cpp's
    schema converter, with JSON strings held to what a strict JSON parser accepts."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(grammar_schema(schema)))
    lines = gbnf.splitlines()
    loose = [i for i, line in enumerate(lines) if line.startswith("char ::= ")]
    if len(loose) > 1 or (loose and not lines[loose[0]].startswith(LOOSE_CHAR)):
        raise RuntimeError(f"llama_cpp's json_schema_to_gbnf wrote an unexpected char rule "
                           f"{[lines[i] for i in loose]}: check the control-character fix in "
                           "gguf_tools.json_gbnf against this llama_cpp version")
    for i in loose:
        lines[i] = STRICT_CHAR + lines[i][len(LOOSE_CHAR):]
    for name, (cls, sep, n) in sorted(_bounded_kebabs(schema).items()):
        placeholder = json.dumps(name)
        if any(placeholder in line for line in lines):
            lines = [line.replace(placeholder, name) for line in lines] + bounded_kebab_rules(name, cls, sep, n)
    unbounded = [line for line in lines if _UNBOUNDED_RE.search(_rule_body(line))]
    if unbounded:
        raise ValueError(f"the output schema leaves a string unbounded (give it a maxLength or a bounded "
                         f"pattern): {unbounded[0][:160]}")
    return "\n".join(lines) + "\n"


_UNBOUNDED_RE = re.compile(r"[+*]|\{\d+,\}")


def _rule_body(line: str) -> str:
    """A GBNF rule's right-hand side without its quoted literals and character classes."""
    body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line.partition("::=")[2])
    return re.sub(r"\[(?:[^\]\\]|\\.)*\]", "[]", body)


def compile_gbnf(gbnf: str):
    from llama_cpp import LlamaGrammar
    return LlamaGrammar.from_string(gbnf, verbose=False)


def json_grammar(schema: dict):
    return compile_gbnf(json_gbnf(schema))


# Tokens an answer still open at max_tokens gets to close in. Closing takes the grammar's
# shortest way out (GrammarFirstLlama._closing_token): at worst about a token per character
# of the remaining keys and shortest values, 99 tokens from the changelog answer's first
# token on tiny byte-level models; tests/test_grammar.py holds every closing to this bound.
CLOSE_RESERVE = 192


def chat_greedy(llm, messages: list[dict], grammar, max_tokens: int, *, close: bool = False) -> dict:
    """One greedy chat completion (the GGUF's own chat template); temperature 0, no repeat
    penalty: the same file and prompt give the same text. With `close` (and a grammar) an
    answer still open after `max_tokens` tokens is closed within CLOSE_RESERVE more, the
    shortest way the grammar allows, so it always parses; an answer that ends within
    `max_tokens` is the same either way."""
    llm.close_after = max_tokens if close and grammar is not None else None
    if llm.close_after is not None:
        max_tokens += CLOSE_RESERVE
    try:
        return llm.create_chat_completion(messages, temperature=0.0, top_k=1, repeat_penalty=1.0,
                                          max_tokens=max_tokens, grammar=grammar, seed=0)
    finally:
        llm.close_after = None


class Answer(NamedTuple):
    """One decoded answer. `closed_by_decoder`: it was still open at max_tokens (or near the
    end of the context) and the decoder closed it the shortest way the grammar allows, so
    it parses, but its end is the decoder's, not the model's (a loop, usually)."""
    text: str
    closed_by_decoder: bool = False


def gguf_answers(path: str | Path, prompts: list[list[dict]], gbnf: str | None, *,
                 max_tokens: int, n_ctx: int, n_threads: int, desc: str = "generate"
                 ) -> list[Answer]:
    """Greedy chat completions with llama.cpp, constrained by the GBNF grammar (compiled
    once; e.g. json_gbnf(schema)) when given. Under a grammar every answer is complete: one
    still open at `max_tokens` (a model looping inside a string) is closed (chat_greedy),
    and its Answer says so."""
    from tqdm import tqdm

    llm = open_gguf(path, n_ctx=n_ctx, n_threads=n_threads)
    grammar = compile_gbnf(gbnf) if gbnf is not None else None
    outs, cut = [], 0
    for messages in tqdm(prompts, desc=desc, unit="ex"):
        res = chat_greedy(llm, messages, grammar, max_tokens, close=True)
        outs.append(Answer(res["choices"][0]["message"]["content"] or "", bool(llm.closed_at_cap)))
        cut += grammar is not None and res["choices"][0]["finish_reason"] != "stop"
    llm.close()
    closed = sum(a.closed_by_decoder for a in outs)
    if closed:
        log.warning("%s: %d of %d answers were still open at max_tokens=%d or near the end of the "
                    "context (a loop, usually) and were closed the shortest way the grammar allows",
                    desc, closed, len(prompts), max_tokens)
    if cut:  # only a prompt that leaves less than CLOSE_RESERVE tokens of n_ctx gets here
        log.warning("%s: %d answers ran out of context (n_ctx=%d) before they closed: those entries "
                    "are too long for n_ctx", desc, cut, n_ctx)
    return outs


def gguf_generate(path: str | Path, prompts: list[list[dict]], gbnf: str | None, **kwargs: Any) -> list[str]:
    """gguf_answers' texts alone."""
    return [a.text for a in gguf_answers(path, prompts, gbnf, **kwargs)]


_GRAMMAR_FIRST = None


def _grammar_first_class():
    """llama-cpp-python applies a grammar to every vocabulary entry (49k strings matched
    against the grammar's stacks) before picking a token, at every step. For greedy decoding
    that is wasted work whenever the argmax is allowed, and then it is also the allowed argmax.
    So, as llama.cpp's own common sampler does: check the argmax alone, and mask the whole
    vocabulary only when the grammar rejects it. Same tokens (ties go to the lowest id either
    way), ~2x faster under the JSON grammar. Built lazily: llama_cpp is an optional import."""
    global _GRAMMAR_FIRST
    if _GRAMMAR_FIRST is not None:
        return _GRAMMAR_FIRST
    import numpy as np
    from llama_cpp import llama_cpp as C

    token_dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)],
                           align=True)

    class GrammarFirstLlama(_plain_llama_class()):
        _grammar_sampler = None
        _vocab_buffer = None  # the full-vocabulary array, allocated at the first rejection
        _closers: list[int] | None = None
        rejected_argmax = 0  # since the last completion started: how often the full mask ran
        close_after: int | None = None  # set by chat_greedy(close=True)
        closed_at_cap = False  # the last completion reached close_after and was closed
        _sampled = 0

        def _init_sampler(self, *, temp: float = 0.8, grammar=None, repeat_penalty: float = 1.0,
                          frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                          logits_processor=None, **_: Any):
            # Called once per completion by Llama.generate: a fresh grammar state each time.
            if temp != 0.0 or logits_processor or (repeat_penalty, frequency_penalty,
                                                   presence_penalty) != (1.0, 0.0, 0.0):
                raise ValueError("GrammarFirstLlama decodes greedily only (temperature 0, no "
                                 "penalties, no logits processors)")
            self._free_grammar()
            self.rejected_argmax, self._sampled, self.closed_at_cap = 0, 0, False
            if grammar is not None:
                self._grammar_sampler = C.llama_sampler_init_grammar(
                    self._model.vocab, grammar._grammar.encode(), grammar._root.encode())
            return self  # Llama.sample only needs a non-None sampler; ours is self.sample

        def sample(self, *, idx: int | None = None, **_: Any) -> int:
            ridx = idx - self.n_tokens if idx is not None else -1
            logits = np.ctypeslib.as_array(C.llama_get_logits_ith(self._ctx.ctx, ridx),
                                           shape=(self._n_vocab,))
            token = int(np.argmax(logits))
            if self._grammar_sampler is not None:
                # close at the token budget, or where what is left of the context could only
                # just hold the way out (a long entry)
                if self.close_after is not None and (self._sampled >= self.close_after or
                                                     self.n_tokens + CLOSE_RESERVE >= self.n_ctx()):
                    self.closed_at_cap = True
                    token = self._closing_token(logits)
                elif not self._allowed(token, float(logits[token])):
                    self.rejected_argmax += 1
                    token = self._allowed_argmax(logits)
                C.llama_sampler_accept(self._grammar_sampler, token)
            self._sampled += 1
            return token

        def _closing_token(self, logits) -> int:
            """The way out of a JSON answer: end it if the grammar is done, else close the
            string, array or object it is in, else the separator towards the next key; where
            none of those fits (a key's name, an enum value, an escape, a string's first
            character) the best token the grammar allows. Strings are closed as soon as they
            may be, so what remains is the keys and the shortest values the grammar takes."""
            if self._closers is None:
                singles = [self.tokenize(c.encode(), add_bos=False, special=False) for c in '"]},:']
                self._closers = [self.token_eos()] + [t[0] for t in singles if len(t) == 1]
            for token in self._closers:
                if self._allowed(token, 0.0):
                    return token
            return self._allowed_argmax(logits)

        def _allowed(self, token: int, logit: float) -> bool:
            one = (C.llama_token_data * 1)(C.llama_token_data(token, logit, 0.0))
            arr = C.llama_token_data_array(one, 1, -1, False)
            C.llama_sampler_apply(self._grammar_sampler, ctypes.byref(arr))
            return one[0].logit != float("-inf")

        def _allowed_argmax(self, logits) -> int:
            if self._vocab_buffer is None:  # one buffer per model, refilled at every rejection
                self._vocab_buffer = (C.llama_token_data * self._n_vocab)()
                self._token_ids = np.arange(self._n_vocab, dtype=np.int32)
            data = self._vocab_buffer
            view = np.frombuffer(data, dtype=token_dtype)
            view["id"], view["logit"], view["p"] = self._token_ids, logits, 0.0
            arr = C.llama_token_data_array(data, self._n_vocab, -1, False)
            C.llama_sampler_apply(self._grammar_sampler, ctypes.byref(arr))
            return int(view["id"][np.argmax(view["logit"][:arr.size])])

        def _free_grammar(self) -> None:
            if self._grammar_sampler is not None:
                C.llama_sampler_free(self._grammar_sampler)
                self._grammar_sampler = None

        def close(self) -> None:
            self._free_grammar()
            super().close()

    _GRAMMAR_FIRST = GrammarFirstLlama
    return _GRAMMAR_FIRST
