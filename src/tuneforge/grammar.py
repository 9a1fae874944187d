"""The grammar answers are decoded under: a task's output JSON schema as GBNF, through
llama.cpp's schema converter with three fixes (escaped literals in patterns, kebab-case
strings bounded by their maxLength, JSON strings held to what a strict parser accepts), and
a refusal of any string the schema leaves unbounded, so a looping model always ends.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any


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


# llama-cpp-python's Python converter lets any character but '"' and '\\' into a string,
# raw newlines and other control characters included, which strict JSON then rejects;
# llama.cpp's own C++ converter excludes them. Its rule, byte for byte:
LOOSE_CHAR = r'char ::= [^"\\] | '
STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | '
ANY_HEX4 = '"u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F]'
NO_SURROGATE_HEX4 = '"u" ([0-9a-cA-CefEF] [0-9a-fA-F] | [dD] [0-7]) [0-9a-fA-F] [0-9a-fA-F]'


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
                           "grammar.json_gbnf against this llama_cpp version")
    for i in loose:
        lines[i] = STRICT_CHAR + lines[i][len(LOOSE_CHAR):]
        # a \u escape of a UTF-16 surrogate (D800-DFFF) alone is not a character: strict parsers
        # (pydantic's) reject it, and a pair is never needed (any character may appear raw). Seen:
        # a tiny random model answered "\ud83c x" under the grammar (tests/test_grammar.py)
        if ANY_HEX4 not in lines[i]:
            raise RuntimeError(f"llama_cpp's char rule has no \\u escape as expected: {lines[i]}")
        lines[i] = lines[i].replace(ANY_HEX4, NO_SURROGATE_HEX4)
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

