"""Ollama Modelfiles derived from a GGUF's own chat template and stop tokens.

Ollama templates are Go templates, not Jinja. The Jinja chat template in the GGUF is
rendered with sentinel messages to recover, per role, the text before and after the
message content, and the generation prompt; the Go template is rebuilt from those
pieces and checked by re-rendering a conversation both ways. A template that is not
"prefix + content + suffix" per role fails loudly instead of producing a wrong prompt.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROLES = ("system", "user", "assistant")
_S = {"system": "\x00SYS\x00", "user": "\x00USR\x00", "assistant": "\x00AST\x00"}
_PART = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class TurnFormat:
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation_prompt: str

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        text = "".join(self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]]
                       for m in messages)
        return text + (self.generation_prompt if add_generation_prompt else "")


def render_jinja(template: str, messages: list[dict], add_generation_prompt: bool,
                 bos_token: str = "", eos_token: str = "") -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, bos_token=bos_token,
                                            eos_token=eos_token,
                                            add_generation_prompt=add_generation_prompt)


def derive_turns(template: str, bos_token: str = "", eos_token: str = "") -> TurnFormat:
    """Per-role prefix/suffix and generation prompt of a Jinja chat template."""
    def render(msgs: list[dict], gen: bool = False) -> str:
        return render_jinja(template, msgs, gen, bos_token, eos_token)

    conv = [{"role": r, "content": _S[r]} for r in ROLES]
    prefix, suffix = {}, {}
    done = ""
    for i, role in enumerate(ROLES):
        text = render(conv[: i + 1])
        if not text.startswith(done):
            raise ValueError(f"chat template: rendering {i + 1} messages does not extend the "
                             f"rendering of {i}; cannot express it as an Ollama template")
        turn = text[len(done):]
        if turn.count(_S[role]) != 1:
            raise ValueError(f"chat template: the {role} content appears "
                             f"{turn.count(_S[role])} times in its turn")
        prefix[role], suffix[role] = turn.split(_S[role])
        done = text
    with_gen = render(conv[:2], gen=True)
    plain = render(conv[:2])
    if not with_gen.startswith(plain):
        raise ValueError("chat template: the generation prompt is not appended at the end")
    fmt = TurnFormat(prefix, suffix, with_gen[len(plain):])
    probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
             {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
    if fmt.render(probe, True) != render(probe, True):
        raise ValueError("chat template: a multi-turn conversation renders differently from "
                         "the per-role prefix/suffix form; write the Ollama TEMPLATE by hand")
    return fmt


def go_template(fmt: TurnFormat) -> str:
    """The Ollama (Go text/template) equivalent over `.Messages`."""
    pieces = [*fmt.prefix.values(), *fmt.suffix.values(), fmt.generation_prompt]
    if any("{{" in p or '"""' in p for p in pieces):
        raise ValueError("chat template literal text contains '{{' or '\"\"\"'")
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}'
        f"{fmt.prefix[role]}{{{{ .Content }}}}{fmt.suffix[role]}"
        for i, role in enumerate(ROLES))
    return f"{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{fmt.generation_prompt}"


def stop_tokens(fmt: TurnFormat, eos_tokens: list[str]) -> list[str]:
    """EOS/EOT tokens plus the special token that closes an assistant turn, if any."""
    stops = [t for t in eos_tokens if t]
    m = re.match(r"\s*(<[|｜]?[^<>\s]{1,40}[|｜]?>|</s>|\[/?[A-Z_]+\])", fmt.suffix["assistant"])
    if m:
        stops.append(m.group(1))
    return list(dict.fromkeys(stops))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def modelfile(gguf_rel: str, fmt: TurnFormat, stops: list[str], system: str,
              parameters: dict[str, float | int], header: str,
              licence: str | None = None) -> str:
    for what, value in (("system prompt", system), ("licence", licence or "")):
        if '"""' in value:
            raise ValueError(f'{what} contains \'"""\'')
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"FROM {gguf_rel}", f'TEMPLATE """{go_template(fmt)}"""', f'SYSTEM """{system}"""']
    lines += [f"PARAMETER {k} {v}" for k, v in parameters.items()]
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    if licence:  # `ollama show --license` prints it
        lines.append(f'LICENSE """{licence}"""')
    return "\n".join(lines) + "\n"


def check_ollama_name(name: str) -> str:
    """Ollama's naming rules ([host/][namespace/]model[:tag]): every part non-empty, from
    [A-Za-z0-9_.-], the namespace without '.', no '..', the whole at most 128 characters.
    Stricter here: lowercase only, parts start alphanumeric."""
    if not name or len(name) > 128 or ".." in name:
        raise ValueError(f"ollama name {name!r}: empty, longer than 128, or contains '..'")
    rest, _, tag = name.rpartition(":") if ":" in name else (name, "", "latest")
    segments = rest.split("/")
    if len(segments) > 3:
        raise ValueError(f"ollama name {name!r}: more than host/namespace/model")
    kinds = ["host", "namespace", "model"][3 - len(segments):]
    for kind, part in [*zip(kinds, segments, strict=True), ("tag", tag)]:
        if (not _PART.fullmatch(part) or part != part.lower() or not part[0].isalnum()
                or (kind == "namespace" and "." in part)):
            raise ValueError(f"ollama name {name!r}: invalid {kind} part {part!r} "
                             "(lowercase letters, digits, '_', '.', '-', starting alphanumeric)")
    return name


def ollama_available() -> bool:
    return shutil.which("ollama") is not None


def ollama_create(name: str, modelfile_path: Path) -> str:
    proc = subprocess.run(["ollama", "create", name, "-f", str(modelfile_path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ollama create {name} failed (rc={proc.returncode}): "
                           f"{proc.stderr[-1500:]}")
    return proc.stdout
