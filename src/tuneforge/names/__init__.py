"""Every name that crosses a stage boundary, in one place.

Artifact paths and file names, the prediction id and the eval order: a stage that writes a file
and the stage (or user command) that reads it both ask this module, never rebuild the name.
dvc.yaml repeats the paths (DVC cannot import Python): tests/test_pipeline_layout.py checks that each
stage's deps and outs there are the ones this module names.

Layout: a task's artifacts live under directories named after the task, so tasks build side by
side (`dvc repro train@<task>`); the base model is shared by every task.

    data/<task>/      entries, evidence, scored JSONL; quarantine/; exports/{sft,rag,preference}
    models/base/      the resolved base model (base stage), fp32 safetensors + tokenizer
    models/<task>/    adapter/, merged/, gguf/ (+ SHA256SUMS), modelfiles/, registry.json, MODEL_CARD.md
    reports/<task>/   receipts/, train/, fidelity/, eval/, metrics.json, fidelity.json, labeler.json, drift.json,
                      leakage.json
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tuneforge.io import sha256_text

DATA = Path("data")
MODELS = Path("models")
REPORTS = Path("reports")
# Machine-local downloads and memos (pip wheels/sdists, the extracted converter, eval answers):
# they shape no output, so where they live is the environment's business, not params.yaml's.
CACHE = Path(os.environ.get("TUNEFORGE_CACHE", ".cache"))

BASE_MODEL = MODELS / "base"          # base stage -> every task's train, convert, eval, register
RULE_LABELER = "rule_labeler"  # eval's metrics key for the task's rule labeler on the same rows
EVAL_CACHE = CACHE / "eval"           # eval's memo of model answers (machine-local, keyed by model SHA-256)
SIDECAR = "tuneforge.json"            # provenance file inside base/, adapter/, merged/
SUMS = "SHA256SUMS"                   # pins of every GGUF in a gguf dir
IMATRIX_SUFFIX = "-imat"              # a quantize.types entry `Q4_K_M-imat`: Q4_K_M with the task's imatrix
VERDICT = "verdict.json"
PREDICTIONS = "predictions.jsonl"
BASE_RECEIPT = REPORTS / "receipts" / "base.json"


@dataclass(frozen=True)
class TaskPaths:
    """Where one task's artifacts live. Inputs (snapshot, gold, labels) come from params.yaml."""
    task: str

    @classmethod
    def for_task(cls, task: str) -> TaskPaths:
        return cls(task)

    # -- data half
    @property
    def data(self) -> Path:
        return DATA / self.task

    @property
    def entries(self) -> Path:
        return self.data / "entries.jsonl"

    @property
    def evidence(self) -> Path:
        return self.data / "evidence.jsonl"

    @property
    def scored(self) -> Path:
        return self.data / "scored.jsonl"

    @property
    def quarantine_dir(self) -> Path:
        return self.data / "quarantine"

    def quarantine(self, stage: str) -> Path:
        return self.quarantine_dir / f"{stage}.jsonl"

    @property
    def exports_dir(self) -> Path:
        return self.data / "exports"

    @property
    def sft_dir(self) -> Path:
        return self.exports_dir / "sft"

    def sft(self, split: str) -> Path:
        """One split's SFT rows: split is 'train' or 'valid'."""
        if split not in ("train", "valid"):
            raise ValueError(f"no SFT split {split!r}: 'train' or 'valid'")
        return self.sft_dir / f"{split}.jsonl"

    @property
    def rag_dir(self) -> Path:
        return self.exports_dir / "rag"

    @property
    def rag(self) -> Path:
        return self.rag_dir / "rag.jsonl"

    @property
    def preference_dir(self) -> Path:
        return self.exports_dir / "preference"

    @property
    def preference(self) -> Path:
        return self.preference_dir / "pairs.jsonl"

    @property
    def teacher_cache(self) -> Path:
        return self.data / "teacher-cache.jsonl"

    # -- model half
    @property
    def base_model(self) -> Path:
        return BASE_MODEL

    @property
    def models(self) -> Path:
        return MODELS / self.task

    @property
    def adapter(self) -> Path:
        return self.models / "adapter"

    @property
    def train_checkpoints(self) -> Path:
        """An unfinished train stage's checkpoints (train.checkpoint_every), one folder per run
        key; machine-local, not a DVC output: a rerun after a kill resumes from them."""
        return CACHE / "train-checkpoints" / self.task

    @property
    def merged(self) -> Path:
        return self.models / "merged"

    @property
    def gguf_dir(self) -> Path:
        return self.models / "gguf"

    @property
    def imatrix(self) -> Path:
        """llama.cpp's importance matrix over the task's SFT rows (quantize; `*-imat` types)."""
        return self.models / "imatrix.gguf"

    @property
    def modelfile_dir(self) -> Path:
        return self.models / "modelfiles"

    @property
    def registry(self) -> Path:
        return self.models / "registry.json"

    @property
    def model_card(self) -> Path:
        return self.models / "MODEL_CARD.md"

    # -- reports
    @property
    def reports(self) -> Path:
        return REPORTS / self.task

    @property
    def receipts_dir(self) -> Path:
        return self.reports / "receipts"

    def receipt(self, stage: str) -> Path:
        return self.receipts_dir / f"{stage}.json"

    @property
    def drift(self) -> Path:
        return self.reports / "drift.json"

    @property
    def leakage(self) -> Path:
        return self.reports / "leakage.json"

    @property
    def labeler_report(self) -> Path:
        return self.reports / "labeler.json"

    @property
    def train_reports(self) -> Path:
        return self.reports / "train"

    @property
    def fidelity(self) -> Path:
        return self.reports / "fidelity.json"

    @property
    def fidelity_dir(self) -> Path:
        return self.reports / "fidelity"

    @property
    def eval_dir(self) -> Path:
        return self.reports / "eval"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    @property
    def verdict(self) -> Path:
        return self.eval_dir / VERDICT

    @property
    def predictions(self) -> Path:
        return self.eval_dir / PREDICTIONS


def outputs(stage: str, task: str | None = None, *, model_name: str = "", outtype: str = "",
            types: Iterable[str] = ()) -> list[Path]:
    """What a stage writes (dvc.yaml's outs, metrics and plots of its entry, in any order)."""
    if stage == "base":
        return [BASE_MODEL, BASE_RECEIPT]
    p = TaskPaths.for_task(task or "")
    gguf = [p.gguf_dir / gguf_name(model_name, outtype), p.gguf_dir / base_gguf_name(model_name, outtype)]
    per_stage = {
        "backfill": [p.entries, p.quarantine("backfill")],
        "evidence": [p.evidence],
        "score": [p.scored, p.quarantine("score"), p.labeler_report],
        "export": [p.sft_dir, p.rag_dir, p.preference_dir,
                   p.quarantine("export"), p.drift, p.leakage],
        "train": [p.adapter, p.train_reports / "metrics.json", p.train_reports / "loss.csv"],
        "merge": [p.merged],
        "convert": gguf,
        "quantize": [*(p.gguf_dir / gguf_name(model_name, t) for t in types), p.gguf_dir / SUMS,
                     *([p.imatrix] if any(uses_imatrix(t) for t in types) else [])],
        "eval": [p.predictions, p.eval_dir / "report.md", p.verdict, p.metrics, p.eval_dir / "confusion.json",
                 p.eval_dir / "per_kind.csv", p.eval_dir / "ladder.csv",
                 p.fidelity, p.fidelity_dir / "kl_size.csv"],  # fidelity runs inside eval
        "register": [p.modelfile_dir, p.registry, p.model_card],
    }
    return [*per_stage[stage], p.receipt(stage)]


# -- GGUF and Modelfile names: <model_name>-<type>.gguf, the base model's as <model_name>-base-<type>.gguf
def gguf_name(model_name: str, qtype: str) -> str:
    return f"{model_name}-{qtype}.gguf"


def uses_imatrix(key: str) -> bool:
    """A ladder entry (quantize.types) quantised with the task's importance matrix."""
    return key.endswith(IMATRIX_SUFFIX)


def quant_type(key: str) -> str:
    """llama.cpp's file type of a ladder entry: `Q4_K_M-imat` -> `Q4_K_M`."""
    return key.removesuffix(IMATRIX_SUFFIX)


def base_gguf_name(model_name: str, outtype: str) -> str:
    return f"{model_name}-base-{outtype}.gguf"


def modelfile_name(model_name: str, qtype: str) -> str:
    return f"{model_name}-{qtype}.Modelfile"


# -- predictions and the eval order
def gold_subset(record_id: str) -> str:
    """Gold rows whose id hash is 0 mod 3 were never inspected while the rule labeler was
    tuned; their figure is the honest estimate of how it does on unseen entries. `record_id`:
    the row's content key (tuneforge.text.content_key of its text), as evidence names it."""
    return "untouched" if int(sha256_text(record_id), 16) % 3 == 0 else "tuning"


def prediction_id(text: str) -> str:
    """A gold row's id in predictions.jsonl and the registry: the first 16 hex of its text's SHA-256."""
    return sha256_text(text)[:16]


Row = TypeVar("Row", bound=dict)


def eval_order(rows: Iterable[Row], limit: int = 0) -> list[Row]:
    """The holdout sorted by the SHA-256 of each text: a fixed, file-order-free sample when
    `limit` (eval.holdout_limit) trims it. Eval, bench and by-hand evaluation all use it."""
    ordered = sorted(rows, key=lambda r: sha256_text(r["text"]))
    return ordered[:limit] if limit else ordered
