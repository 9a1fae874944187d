"""The checks that bind the gate verdict (tuneforge.names.shapes.Verdict) to the files it judged.

eval writes one Verdict: per gated GGUF its pass/fail and SHA-256, the SHA-256 of every
other file it read (each GGUF, a manifest of each HF model directory, the gold file) and
the params it ran with. register promotes a GGUF only when its bytes are the ones the
verdict names; predict runs the promoted one only when the registry entry, the verdict
and the file all agree. SHA256SUMS alone cannot say this: quantize rewrites it whenever
it runs, so a pin only proves a file is the last one quantize wrote, not the one a gate saw.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.fetch import PinMismatch
from tuneforge.gguf_tools import SUMS_NAME, read_sums, verify_pin
from tuneforge.io import sha256_file, sig_hash
from tuneforge.names.shapes import DirHash, FileHash, ModelVerdict, Registry, RegistryEntry, Verdict, read_model

if TYPE_CHECKING:  # predict imports this module; it needs no params view
    from tuneforge.config import StageParams

log = logging.getLogger(__name__)


def verdict_params(params: StageParams) -> dict:
    """The part of params.yaml a verdict depends on: compared by register, so a verdict
    made with other gates or decoding settings is never acted on. Eval and register both
    declare these params in dvc.yaml."""
    return {"task": params.task_name, "model_name": params.task.model_name, "eval": params.section("eval"),
            "convert": {"outtype": params.convert.outtype}, "quantize": {"types": list(params.quantize.types)}}


def file_hash(path: str | Path) -> FileHash:
    return FileHash(path=str(path), sha256=sha256_file(path))


def dir_hash(path: str | Path) -> DirHash:
    """A manifest of every file under a model directory (weights, config, tokenizer, sidecar)."""
    root = Path(path)
    files = {p.relative_to(root).as_posix(): sha256_file(p)
             for p in sorted(root.rglob("*")) if p.is_file()}
    if not files:
        raise FileNotFoundError(f"{root}: no files to evaluate")
    return DirHash(path=str(root), sha256=sig_hash(files), files=files)


def load_verdict(path: str | Path) -> Verdict:
    return read_model(path, Verdict, "rerun eval")


def _diff(a: Any, b: Any, at: str = "") -> list[str]:
    """Dotted paths where two params trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _diff(a.get(k), b.get(k), f"{at}.{k}" if at else str(k))]
    return [] if a == b else [at]


def check_made_on(verdict: Verdict, where: Path, params: StageParams, gold: str | Path) -> None:
    """The verdict was made with these params and this gold file, or it is stale."""
    differ = _diff(verdict.params, verdict_params(params))
    if differ:
        raise ValueError(f"{where} was made with other params ({', '.join(differ[:5])}): rerun eval")
    now = sha256_file(gold)
    if now != verdict.gold.sha256:
        raise ValueError(f"{gold}: sha256 {now} is not the gold file eval judged "
                         f"({verdict.gold.sha256} in {where}): rerun eval")


def check_judged(verdict: Verdict, where: Path, qtype: str, gguf: Path, sha256: str) -> ModelVerdict:
    """The verdict on `qtype`, provided `gguf` (whose current sha256 is given) is the file it judged."""
    if qtype not in verdict.models:
        raise ValueError(f"{where} has no verdict for {qtype}: rerun eval")
    judged = verdict.models[qtype]
    if Path(judged.gguf) != gguf:
        raise ValueError(f"{where}: {qtype} was judged on {judged.gguf}, not {gguf}: rerun eval")
    if sha256 != judged.sha256:
        raise ValueError(f"{gguf}: sha256 {sha256} is not the file eval judged ({judged.sha256} in "
                         f"{where}); it changed after eval (quantize reran?): rerun eval")
    return judged


def check_promoted(registry: Path, reg: Registry, entry: RegistryEntry) -> str:
    """predict's trust check of the registry's promoted entry: the file is the one register
    promoted, the verdict is the one register read, and that verdict passed this file.
    Returns the file's sha256."""
    gguf = Path(entry.gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} (promoted in {registry}) not found: rebuild (dvc repro)")
    now = sha256_file(gguf)
    if now != entry.sha256:
        raise ValueError(f"{gguf}: sha256 {now} is not the file register promoted ({entry.sha256} "
                         f"in {registry}); rerun eval and register (dvc repro)")
    where = Path(reg.verdict.path)
    if not where.is_file() or sha256_file(where) != reg.verdict.sha256:
        raise ValueError(f"{where} changed since register wrote {registry} (or is missing): "
                         "rerun register (dvc repro)")
    judged = check_judged(load_verdict(where), where, entry.quantization, gguf, now)
    if judged.verdict != "pass":
        raise ValueError(f"{where}: {entry.quantization} did not pass its gates "
                         f"({', '.join(judged.failed)}); {registry} is stale: rerun register")
    return now


def pinned_sha256(path: str | Path, allow_unpinned: bool = False) -> str:
    """A GGUF named by hand: its pin must hold. A file with no pin at all (no SHA256SUMS
    beside it, or not listed there) runs only when the user passed --allow-unpinned; a
    pinned file whose bytes changed never runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    sums = path.parent / SUMS_NAME
    if sums.is_file() and path.name in read_sums(path.parent):
        return verify_pin(path)
    if not allow_unpinned:
        why = f"not listed in {sums}" if sums.is_file() else f"no {SUMS_NAME} beside it"
        raise PinMismatch(f"{path.name} is not pinned ({why}): refusing a GGUF no build pinned; "
                          "pass --allow-unpinned to run it anyway")
    log.warning("%s is not pinned: running it because --allow-unpinned was given", path)
    return sha256_file(path)
