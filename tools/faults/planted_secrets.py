"""Secrets: fake secrets of every redactor kind planted in sources; every produced file scanned."""
from __future__ import annotations

import base64
import json
import random
import string
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.faults.cases import BASE_FILES, after_first_heading, as_entries, base_text, entry_lines, split_lines, utf8
from tools.faults.roots import (
    DATA_STAGES,
    FIXTURES,
    MODEL_STAGES,
    PATHS,
    freeze_code,
    full_pipeline,
    init_dvc_repo,
    make_root,
    run_stage,
    sh,
)
from tools.faults.tiny import write_tiny_params
from tuneforge.redact import KINDS, find_secrets


@dataclass(frozen=True)
class Planted:
    kind: str
    text: str  # what goes into the source file
    needles: tuple[str, ...]  # substrings that must never appear in any output


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_secrets(rng: random.Random) -> list[Planted]:
    """One fake secret per redact kind, assembled from fragments at run time."""
    al, up, dg = string.ascii_letters + string.digits, string.ascii_uppercase, string.digits
    b64 = al + "+/"

    def b64url(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    out = []
    v = "AK" + "IA" + _rand(rng, up + dg, 16)
    out.append(Planted("aws_access_key_id", v, (v,)))
    v = _rand(rng, b64, 40)
    out.append(Planted("aws_secret_access_key", "aws_" + "secret_access_key = " + v, (v,)))
    v = "gh" + "p_" + _rand(rng, al, 36)
    out.append(Planted("github_token", v, (v,)))
    v = "gl" + "pat-" + _rand(rng, al, 20)
    out.append(Planted("gitlab_token", v, (v,)))
    v = "h" + "f_" + _rand(rng, al, 34)
    out.append(Planted("huggingface_token", v, (v,)))
    v = "s" + "k-proj-" + _rand(rng, al, 40)
    out.append(Planted("openai_key", v, (v,)))
    v = "s" + "k-ant-api03-" + _rand(rng, al, 40)
    out.append(Planted("anthropic_key", v, (v,)))
    v = "xo" + "xb-" + _rand(rng, dg, 12) + "-" + _rand(rng, dg, 12) + "-" + _rand(rng, al, 24)
    out.append(Planted("slack_token", v, (v,)))
    sig = _rand(rng, al + "-_", 43)
    v = ".".join([b64url({"alg": "HS256", "typ": "JWT"}), b64url({"sub": _rand(rng, dg, 10)}), sig])
    out.append(Planted("jwt", v, (sig,)))
    body = [_rand(rng, b64, 64) for _ in range(3)]
    v = "-----BEGIN " + "RSA PRIVATE" + " KEY-----\n" + "\n".join(body) + "\n-----END RSA PRIVATE KEY-----"
    out.append(Planted("pem_private_key", v, tuple(body)))
    pw = _rand(rng, al, 14)
    out.append(Planted("url_credentials", "https://deploy:" + pw + "@git.example.com/repo.git", (pw,)))
    v = _rand(rng, al, 32)
    out.append(Planted("bearer_token", "Authorization: " + "Bearer " + v, (v,)))
    v = _rand(rng, al, 18)
    out.append(Planted("env_assignment", "DATABASE_" + "PASSWORD=" + v, (v,)))
    kinds = {p.kind for p in out}
    if kinds != set(KINDS):
        raise RuntimeError(f"planted kinds {sorted(kinds)} != redact kinds {sorted(KINDS)}")
    for p in out:  # a secret the scanner cannot see would prove nothing
        if p.kind not in find_secrets(p.text):
            raise RuntimeError(f"find_secrets does not see the planted {p.kind}")
    return out


def plant_secrets(seed: int) -> tuple[dict[str, bytes], list[tuple[str, Planted]]]:
    """Source files in every format with every secret kind in entries (inline, wrapped
    across continuation lines, in a too-long or invalid-UTF-8 entry, in a duplicate) and in
    section headings.  Returns the files and (file, secret) pairs."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    planted: list[tuple[str, Planted]] = []
    for fmt in sorted(BASE_FILES):
        text = base_text(fmt)
        rel = BASE_FILES[fmt].split("/", 1)[1]
        lines = split_lines(text)
        idx = entry_lines(fmt, text)
        secrets = make_secrets(rng)
        name = f"secrets-{fmt}/{rel}"
        for k, sec in enumerate(secrets):
            i = idx[k % len(idx)]
            line = lines[i]
            col = len(line) - len(line.lstrip(" \t*-+"))
            if "\n" in sec.text:  # multi-line secret: continuation lines of the entry
                cont = [" " * max(col, 2) + part for part in sec.text.split("\n")]
                lines[i] = line + "\n" + "\n".join(cont)
            else:
                lines[i] = line + f" (leaked {sec.text} in debug output)"
            planted.append((name, sec))
        files[name] = utf8("\n".join(lines))
        # the same secrets inside entries that are quarantined or deduplicated
        extra = make_secrets(rng)
        long_entry = "Fixed the log " + " ".join(s.text.replace("\n", " ") for s in extra) + " x" * 1200
        dup = f"Fixed a leak of {extra[0].text} in logs."
        block = as_entries(fmt, [long_entry, dup, dup])
        quarantined = after_first_heading(text, fmt, block)
        name2 = f"secrets-q-{fmt}/{rel}"
        raw = utf8(quarantined)
        bad = make_secrets(rng)[2]  # github token inside an entry with invalid UTF-8
        orig = split_lines(text)[idx[-1]]
        raw = raw.replace(utf8(orig), utf8(orig + " " + bad.text + " ") + b"\xff", 1)
        files[name2] = raw
        planted += [(name2, s) for s in extra] + [(name2, bad)]
    # section headings (hints) carrying secrets, in a Keep a Changelog file
    heads = make_secrets(rng)
    kac = ["# Changelog", "", "All notable changes are documented here (Keep a Changelog).", "",
           "## [9.9.9] - 2024-05-01", ""]
    for sec in heads:
        if "\n" in sec.text:
            continue
        kac += [f"### Fixed {sec.text}", "", "- Fixed a crash when the cache directory is missing.", ""]
        planted.append(("secrets-hints/CHANGELOG.md", sec))
    files["secrets-hints/CHANGELOG.md"] = utf8("\n".join(kac) + "\n")
    return files, planted


def _scan_targets(root: Path, exclude: tuple[str, ...]) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not p.is_symlink() and not any(rel == e or rel.startswith(e + "/") for e in exclude):
            yield p


def gguf_strings(path: Path) -> str:
    """Every string value in a GGUF's metadata (general.*, tokenizer.*, provenance)."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(path))
    out = []
    for name, f in reader.fields.items():
        out.append(name)
        if not f.types:
            continue
        if f.types[0] == GGUFValueType.STRING:
            out.append(bytes(f.parts[f.data[0]]).decode("utf-8", "replace"))
        elif f.types[0] == GGUFValueType.ARRAY and len(f.types) > 1 and f.types[1] == GGUFValueType.STRING:
            if name == "tokenizer.ggml.tokens" or name == "tokenizer.ggml.merges":
                continue  # the vocabulary: scanned as raw bytes below
            out += [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
    return "\n".join(out)


def scan_for_secrets(root: Path, planted: list[tuple[str, Planted]],
                     exclude: tuple[str, ...] = ("snapshot",)) -> dict:
    """Search every produced file's bytes for every planted needle; run find_secrets over
    every text file and every GGUF's metadata strings."""
    needles = sorted({n for _, p in planted for n in p.needles})
    enc = [n.encode() for n in needles]
    leaks: list[dict] = []
    scanned = Counter()
    for p in _scan_targets(root, exclude):
        rel = p.relative_to(root).as_posix()
        data = p.read_bytes()
        kind = "gguf" if p.suffix == ".gguf" else ("binary" if b"\x00" in data[:8192] else "text")
        scanned[kind] += 1
        for n, e in zip(needles, enc, strict=True):
            if e in data:
                leaks.append({"file": rel, "needle": n[:6] + "...", "how": "bytes"})
        if kind == "text":
            for k in find_secrets(data.decode("utf-8", "replace")):
                leaks.append({"file": rel, "kind": k, "how": "find_secrets"})
        elif kind == "gguf":
            meta = gguf_strings(p)
            for k in find_secrets(meta):
                leaks.append({"file": rel, "kind": k, "how": "gguf metadata"})
            for n in needles:
                if n in meta:
                    leaks.append({"file": rel, "needle": n[:6] + "...", "how": "gguf metadata"})
    return {"files_scanned": dict(scanned), "leaks": leaks}


def secrets_suite(seed: int, scratch: Path, model: bool, tiny_base: Path | None) -> dict:
    """Plant secrets, build under `dvc repro` (data half) in a git+DVC scratch repo, then the
    tiny model chain on the resulting exports; scan every file the build produced."""
    freeze_code(scratch.parent if scratch.name else scratch)
    start = time.monotonic()
    files, planted = plant_secrets(seed)
    root = make_root(scratch / "secrets", {**files, **{
        str(p.relative_to(FIXTURES)): p.read_bytes() for p in FIXTURES.rglob("*") if p.is_file()}})
    for name, sec in planted:  # the source really holds each needle
        if not all(n.encode() in files[name] for n in sec.needles):
            raise RuntimeError(f"planting failed: {sec.kind} not in {name}")
    init_dvc_repo(root, DATA_STAGES)
    logs = root / "logs"
    logs.mkdir()
    out = sh(["dvc", "repro"], root)
    (logs / "dvc-repro.log").write_text(out.stdout + out.stderr, encoding="utf-8")
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "build"], root)
    model_note = None
    if model and tiny_base is not None:
        full_pipeline(root)  # the model stages' dvc.yaml entries (their declared params)
        write_tiny_params(root, tiny_base)
        for stage in (*MODEL_STAGES, "eval", "register"):
            r = run_stage(root, stage, logs)
            if r.returncode != 0:
                raise RuntimeError(f"{stage} failed on the secrets build:\n{r.stderr[-3000:]}")
    else:
        model_note = "model half skipped"
    receipt = json.loads((root / PATHS.receipt("backfill")).read_text())
    redactions = receipt["counts"]["extra"].get("redactions", 0)
    scan = scan_for_secrets(root, planted, exclude=("snapshot", "src", "stages", ".git"))
    tracked = sh(["git", "ls-files"], root).stdout.split()
    tracked_leaks = []
    for rel in tracked:  # tracked config: params.yaml, dvc.yaml, dvc.lock, .dvc/config, receipts
        if rel.startswith(("snapshot/", "src/", "stages/")):
            continue
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        tracked_leaks += [{"file": rel, "kind": k} for k in find_secrets(text)]
    leaks = scan["leaks"] + tracked_leaks
    return {
        "kinds": sorted({p.kind for _, p in planted}),
        "planted": len(planted),
        "planted_per_kind": dict(sorted(Counter(p.kind for _, p in planted).items())),
        "redactions_in_backfill_receipt": redactions,
        "files_scanned": scan["files_scanned"],
        "tracked_files_checked": len(tracked),
        "model_half": model_note or f"tiny model chain: {', '.join((*MODEL_STAGES[1:], 'eval', 'register'))}",
        "leaks": leaks[:50],
        "leak_count": len(leaks),
        "seconds": round(time.monotonic() - start, 1),
        "_root": str(root),
    }
