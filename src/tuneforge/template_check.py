"""Chat-template round trip: the three renderings a shipped model meets must be one string.

For each conversation (system + user turns, generation prompt on):
  hf      the merged model's tokenizer, `apply_chat_template` (what training and the HF eval saw)
  gguf    the GGUF's embedded `tokenizer.chat_template`, rendered the way llama-cpp-python does
          (the named built-in format when its guess matches the template exactly, else its
          Jinja2ChatFormatter with the GGUF's bos/eos token texts)
  ollama  the Modelfile's TEMPLATE under Go text/template semantics, with the data Ollama's chat
          handler passes (.System, .Messages after its collate); and once more with the system
          turn dropped, as `ollama run` sends it, so the Modelfile's SYSTEM is the one prepended
and the stop tokens agree (see `stop_problems`).

Entry point: `check_templates(...)`. With strict=True (the default) a mismatch raises
TemplateMismatch (a ValueError: the caller's stage fails with its message); with strict=False the
same report comes back with ok False and the message under "error". A template this module
cannot render (a Go construct outside its subset, a Modelfile it cannot read) raises
GoTemplateError/ValueError either way: that is not a verdict, it is a check that could not run.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.gguf_tools import read_metadata

TOKEN_KEYS = ["tokenizer.chat_template", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
              "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
CONTROL = 3  # gguf TokenType.CONTROL: a token plain text never tokenizes to


class TemplateMismatch(ValueError):
    """The renderings or the stop tokens disagree."""


class GoTemplateError(ValueError):
    """A Go template construct outside the subset rendered here."""


# ---------------------------------------------------------------- Go text/template subset
#
# Our own renderer, because there is no Go toolchain or Ollama here and PyPI has no kept
# Python port of text/template (the one wrapper found, cognihub-pygotemplate 0.0.2, calls Go
# through CGo). It renders exactly what ollama.go_template emits plus Ollama's documented
# top-level fields: literal text, {{ .Field }}, {{ if P }} / {{ else if P }} / {{ else }} /
# {{ end }}, {{ range .Messages }}, P = a field or `eq` of fields and "plain strings", and
# the {{- / -}} trim markers. Anything else raises GoTemplateError naming it.

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_ARG = re.compile(r'\s*(\.[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|"[^"\\]*"|[A-Za-z_]\w*|\S+)')
TOP_FIELDS = {"System", "Messages", "Response"}  # Ollama's chat data (Response is "")
MESSAGE_FIELDS = {"Role", "Content"}
_FIELD = re.compile(r"\.[A-Za-z_]\w*")
_STRING = re.compile(r'"[^"\\]*"')


@dataclass
class _If:
    branches: list[tuple[list[str], list]] = field(default_factory=list)
    other: list | None = None


@dataclass
class _Range:
    pipe: list[str]
    body: list = field(default_factory=list)


def _pipe(body: str, where: str, top: bool) -> list[str]:
    """A pipe of the subset, its fields checked against the data where it runs (top level, or
    a message inside range .Messages), taken branch or not."""
    for bad, what in (("|", "a pipeline '|'"), ("(", "parentheses"), ("$", "a $variable"),
                      (":=", "an assignment"), ("`", "a raw string"), ("/*", "a comment")):
        if bad in body:
            raise GoTemplateError(f"{where}: {what} in {{{{{body}}}}} is outside the rendered subset")
    args = _ARG.findall(body)
    known = TOP_FIELDS if top else MESSAGE_FIELDS
    for a in args[1:] if args[:1] == ["eq"] else args:
        if _FIELD.fullmatch(a) and a[1:] not in known:
            raise GoTemplateError(f"{where}: field {a} in {{{{{body}}}}} is outside the rendered subset "
                                  f"{'at top level' if top else 'inside range .Messages'} (known: "
                                  f"{', '.join('.' + n for n in sorted(known))})")
    if len(args) == 1 and _FIELD.fullmatch(args[0]):
        return args
    if args[:1] == ["eq"] and len(args) >= 3 and all(_FIELD.fullmatch(a) or _STRING.fullmatch(a) for a in args[1:]):
        return args
    raise GoTemplateError(f"{where}: {{{{{body}}}}} is outside the rendered subset "
                          "(a .Field, or eq of .Fields and \"plain strings\")")


def parse_go(template: str) -> list:
    """The template as nested nodes: str (text), list (a pipe to print), _If, _Range."""
    root: list = []
    stack: list[tuple[Any, list]] = [(None, root)]
    pos, pending_trim = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if pending_trim:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            stack[-1][1].append(text)
        pos, pending_trim = m.end(), bool(m.group(3))
        body = m.group(2).strip()
        where = f"template offset {m.start()}"
        if body.startswith("/*"):
            raise GoTemplateError(f"{where}: a comment {{{{{body}}}}} is outside the rendered subset")
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word):].strip()
        node, out = stack[-1]
        top = not any(isinstance(n, _Range) for n, _ in stack)
        if word in ("if", "range"):
            if word == "range" and _pipe(rest, where, top) != [".Messages"]:
                raise GoTemplateError(f"{where}: only {{{{ range .Messages }}}} is rendered, not {{{{{body}}}}}")
            new = _If([(_pipe(rest, where, top), [])]) if word == "if" else _Range([".Messages"])
            out.append(new)
            stack.append((new, new.branches[0][1] if word == "if" else new.body))
        elif word == "else":
            if not isinstance(node, _If) or node.other is not None:
                raise GoTemplateError(f"{where}: {{{{{body}}}}} outside an if (or after its else)")
            stack.pop()
            if rest.startswith("if ") or rest == "if":
                node.branches.append((_pipe(rest[2:].strip(), where, top), []))
                stack.append((node, node.branches[-1][1]))
            elif rest:
                raise GoTemplateError(f"{where}: {{{{{body}}}}} is outside the rendered subset")
            else:
                node.other = []
                stack.append((node, node.other))
        elif word == "end":
            if node is None or rest:
                raise GoTemplateError(f"{where}: unexpected {{{{{body}}}}}")
            stack.pop()
        elif word in ("with", "define", "template", "block", "break", "continue", "nil") or not body.startswith(
                (".", "eq ")):
            raise GoTemplateError(f"{where}: {{{{{body}}}}} ({word or 'empty action'}) is outside the rendered subset")
        else:
            out.append(_pipe(body, where, top))
    if len(stack) != 1:
        raise GoTemplateError("template: an if or range has no {{ end }}")
    text = template[pos:]
    text = text.lstrip(" \t\r\n") if pending_trim else text
    if "{{" in text:
        raise GoTemplateError(f"template offset {pos}: an unclosed '{{{{'")
    if text:
        root.append(text)
    return root


def _value(arg: str, dot: dict) -> Any:  # fields were checked against `dot`'s kind at parse time
    return arg[1:-1] if arg.startswith('"') else dot[arg[1:]]


def _eval(pipe: list[str], dot: dict) -> Any:
    if len(pipe) == 1:
        return _value(pipe[0], dot)
    return any(_value(pipe[1], dot) == _value(a, dot) for a in pipe[2:])  # Go's eq: equal to any


def _render(nodes: list, dot: dict, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _If):
            chosen = next((body for pipe, body in node.branches if _eval(pipe, dot)), node.other)
            _render(chosen or [], dot, out)
        elif isinstance(node, _Range):
            for item in dot["Messages"]:
                _render(node.body, item, out)
        else:
            value = _eval(node, dot)
            if not isinstance(value, str):
                raise GoTemplateError(f"{{{{ {' '.join(node)} }}}} prints a {type(value).__name__}, not a string")
            out.append(value)


def ollama_render(template: str, messages: list[dict]) -> str:
    """The prompt Ollama's chat handler builds from `messages` (Template.Execute's .Messages
    path: collate merges consecutive same-role turns with a blank line, and .System joins every
    system turn). A template without .Messages (the legacy .Prompt/.Response form) is refused."""
    nodes = parse_go(template)
    if ".Messages" not in template:
        raise GoTemplateError("template has no .Messages: the legacy .Prompt/.Response form is not rendered here")
    collated: list[dict] = []
    for m in messages:
        if collated and collated[-1]["Role"] == m["role"] and m["role"] != "tool":
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    out: list[str] = []
    _render(nodes, {"System": system, "Messages": collated, "Response": ""}, out)
    return "".join(out)


# ---------------------------------------------------------------- Modelfile

def _unquote(value: str, where: str) -> str:
    # Ollama's parser strips the quotes and nothing else: no backslash escapes
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise ValueError(f"{where}: unterminated quoted value {value!r}")
        return value[1:-1]
    return value


def parse_modelfile(text: str) -> dict:
    """TEMPLATE, SYSTEM (None when absent) and PARAMETER stop values of a Modelfile, read as
    Ollama's parser reads them: a \"\"\" value verbatim up to the next \"\"\", across lines."""
    out: dict[str, Any] = {"template": None, "system": None, "stops": []}
    lines, i = text.split("\n"), 0
    while i < len(lines):
        where, raw = f"Modelfile line {i + 1}", lines[i].lstrip(" \t")
        i += 1
        if not raw.strip() or raw.startswith("#"):
            continue
        m = re.match(r"([A-Za-z]+)[ \t]+(.*)", raw, re.S)
        if not m:
            raise ValueError(f"{where}: not a Modelfile command: {raw[:60]!r}")
        cmd, rest = m.group(1).upper(), m.group(2)
        triple = rest.startswith('"""')
        if triple:
            body = "\n".join([rest[3:], *lines[i:]])
            end = body.find('"""')
            if end < 0:
                raise ValueError(f"{where}: {cmd} \"\"\" is never closed")
            value = body[:end]
            i += value.count("\n")
            if body[end + 3:].split("\n", 1)[0].strip():
                raise ValueError(f"{where}: text after the closing \"\"\" of {cmd}")
        else:
            value = rest.strip()
        if cmd in ("TEMPLATE", "SYSTEM"):
            key = cmd.lower()
            if out[key] is not None:
                raise ValueError(f"{where}: a second {cmd}")
            out[key] = value if triple else _unquote(value, where)
        elif cmd == "PARAMETER":
            name, _, arg = value.partition(" ")
            if name.lower() == "stop":
                out["stops"].append(_unquote(arg.strip(), where))
        elif cmd in ("MESSAGE", "RENDERER", "PARSER"):
            raise ValueError(f"{where}: {cmd} is outside what this check models (it changes the prompt)")
        elif cmd not in ("FROM", "LICENSE", "ADAPTER", "REQUIRES", "DRAFT"):
            raise ValueError(f"{where}: unknown Modelfile command {cmd!r}")
    if out["template"] is None:
        raise ValueError("Modelfile has no TEMPLATE")
    return out


# ---------------------------------------------------------------- the check

def gguf_formatter(meta: dict) -> tuple[str, Any]:
    """(format name, messages -> prompt) as llama_cpp.Llama picks it for this GGUF's metadata."""
    from llama_cpp import llama_chat_format as lcf

    if "tokenizer.chat_template" not in meta:
        raise ValueError("the GGUF has no tokenizer.chat_template")
    tokens = meta["tokenizer.ggml.tokens"]

    def text(key: str) -> str:
        return tokens[meta[key]] if key in meta else ""

    guessed = lcf.guess_chat_format_from_gguf_metadata({"tokenizer.chat_template": meta["tokenizer.chat_template"]})
    if guessed is not None:  # Llama() then ignores the template and uses its built-in format
        fn = {"chatml": lcf.format_chatml, "mistral-instruct": lcf.format_mistral_instruct,
              "llama-3": lcf.format_llama3}[guessed]
        return guessed, lambda msgs: fn(messages=msgs).prompt
    fmt = lcf.Jinja2ChatFormatter(template=meta["tokenizer.chat_template"],
                                  eos_token=text("tokenizer.ggml.eos_token_id"),
                                  bos_token=text("tokenizer.ggml.bos_token_id"),
                                  stop_token_ids=[meta.get("tokenizer.ggml.eos_token_id", -1)])
    return "chat_template.default", lambda msgs: fmt(messages=msgs).prompt


def first_difference(a: str, b: str, width: int = 40) -> dict:
    pos = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, pos - width)
    return {"position": pos, "expected": a[lo:pos + width], "got": b[lo:pos + width]}


def hf_eos(merged_dir: Path, tok) -> list[str]:
    """End tokens of the HF model: generation_config.json's eos_token_id(s) and the tokenizer's."""
    ids: list[int] = []
    gen = merged_dir / "generation_config.json"
    if gen.is_file():
        value = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
        ids = [value] if isinstance(value, int) else list(value or [])
    names = [tok.convert_ids_to_tokens(i) for i in ids] + [tok.eos_token or ""]
    return list(dict.fromkeys(n for n in names if n))


def stop_problems(hf: list[str], gguf: list[str], modelfile: list[str], control: set[str]) -> list[str]:
    """The GGUF ends where the HF model ends; the Modelfile stops on every one of those ends;
    and no Modelfile stop is plain text (a stop string that text can contain cuts answers)."""
    problems = []
    if not set(hf) <= set(gguf) or not gguf or gguf[0] not in hf:
        problems.append(f"HF end tokens {hf} are not the GGUF's eos/eot {gguf}")
    problems += [f"Modelfile has no PARAMETER stop {s!r} (an HF/GGUF end token)"
                 for s in dict.fromkeys(hf + gguf) if s not in modelfile]
    problems += [f"Modelfile PARAMETER stop {s!r} is not a control token of the GGUF vocabulary"
                 for s in modelfile if s not in control]
    return problems


def check_templates(merged_dir: str | Path, gguf_path: str | Path, modelfile_text: str,
                    conversations: list[list[dict]], *, strict: bool = True) -> dict:
    """Render every conversation three ways (and the Modelfile's SYSTEM way) and compare the
    stop tokens; the report is JSON-able. strict: raise TemplateMismatch on any disagreement."""
    from transformers import AutoTokenizer

    start = time.perf_counter()
    merged_dir = Path(merged_dir)
    if not conversations:
        raise ValueError("check_templates: no conversations to render")
    tok = AutoTokenizer.from_pretrained(merged_dir)
    meta = read_metadata(gguf_path, TOKEN_KEYS)
    chat_format, gguf_render = gguf_formatter(meta)
    mf = parse_modelfile(modelfile_text)
    per_prompt, first = [], None
    for i, conv in enumerate(conversations):
        hf = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        got = {"gguf": gguf_render(conv), "ollama": ollama_render(mf["template"], conv)}
        if conv and conv[0]["role"] == "system" and mf["system"] is not None:
            # Ollama prepends the Modelfile's SYSTEM when a request starts without one
            got["ollama_default_system"] = ollama_render(
                mf["template"], [{"role": "system", "content": mf["system"]}, *conv[1:]])
        row = {name: text == hf for name, text in got.items()}
        per_prompt.append(row)
        for name, text in got.items():
            if text != hf and first is None:
                first = {"prompt": i, "renderer": name, **first_difference(hf, text)}
    tokens, types = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type", [])
    gguf_eos = [tokens[meta[k]] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in meta]
    control = {t for t, kind in zip(tokens, types, strict=False) if kind == CONTROL}
    stops = {"hf": hf_eos(merged_dir, tok), "gguf": list(dict.fromkeys(gguf_eos)), "modelfile": mf["stops"]}
    stops["problems"] = stop_problems(stops["hf"], stops["gguf"], stops["modelfile"], control)
    renderers = sorted({k for row in per_prompt for k in row})
    report = {"ok": first is None and not stops["problems"], "prompts": len(conversations),
              "gguf_chat_format": chat_format,
              "equal": {k: sum(row.get(k, False) for row in per_prompt) for k in renderers},
              "per_prompt": per_prompt, "first_mismatch": first, "stops": stops,
              "seconds": round(time.perf_counter() - start, 3)}
    if not report["ok"]:
        msgs = []
        if first:
            msgs.append(f"prompt {first['prompt']}: the {first['renderer']} rendering differs from HF "
                        f"apply_chat_template at character {first['position']}: expected "
                        f"{first['expected']!r}, got {first['got']!r}")
        msgs += stops["problems"]
        report["error"] = f"chat template round trip ({gguf_path}): " + "; ".join(msgs)
        if strict:
            raise TemplateMismatch(report["error"])
    return report
