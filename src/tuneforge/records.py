"""Pydantic models for every record the pipeline writes: the single source of truth.

JSON Schemas in schemas/ are generated from these (`python -m tuneforge.schema_gen`)
and a test fails when the committed files drift from the models.
Task-specific outputs (the action item) live with their task; records here hold a
task's label as a plain dict validated by the task.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RawEntry(Strict):
    """One change entry parsed out of a release-note file (backfill output)."""

    id: str = Field(description="sha256 of the normalised entry text: the dedupe key")
    text: str = Field(min_length=1, description="entry text, whitespace-normalised, redacted")
    hint: str | None = Field(description="section heading the entry sat under")
    product: str
    version: str | None
    source_file: str = Field(description="path of the file inside the snapshot")
    line: int = Field(ge=1, description="1-based line where the entry starts")
    format: str = Field(description="name of the parser that read it")
    redactions: int = Field(ge=0, description="secrets replaced in this entry")


class LabelSource(str, Enum):
    rules = "rules"
    teacher = "teacher"
    replay = "replay"  # an accepted answer from tuneforge.replay's log: below every hand label
    human = "human"  # hand-labeled training rows (data/labeled/), never eval data
    gold = "gold"    # the hand-labeled holdout: eval data, never exported


class CandidateLabel(Strict):
    source: LabelSource
    label: dict[str, Any] | None = Field(description="the label as produced; may be invalid")
    error: str | None = Field(default=None, description="why the source gave no usable label")
    rule: int | None = Field(default=None, description="locked kind rule number that decided kind")
    model: str | None = Field(default=None, description="teacher model name, if any")


class Provenance(Strict):
    source_file: str
    line: int = Field(ge=1)
    sig_hash: str = Field(description="sha256 of the canonical JSON of the raw entry")


class EvidenceRecord(Strict):
    id: str
    task: str
    text: str
    hint: str | None
    product: str
    version: str | None
    format: str
    provenance: Provenance
    candidates: list[CandidateLabel] = Field(min_length=1)


class ScoreCategory(str, Enum):
    accepted = "accepted"
    partially_accepted = "partially_accepted"
    rejected = "rejected"
    needs_human_review = "needs_human_review"


class ScoredRecord(Strict):
    id: str
    task: str
    text: str
    hint: str | None
    product: str
    version: str | None
    format: str
    provenance: Provenance
    category: ScoreCategory
    reasons: list[str] = Field(description="reason codes, sorted; empty when accepted cleanly")
    label: dict[str, Any] | None = Field(description="the chosen label (schema-valid unless rejected)")
    label_source: LabelSource | None
    rule: int | None
    alternatives: list[CandidateLabel] = Field(description="other candidates, for preference pairs")
    scorer_version: str


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class SftSample(Strict):
    id: str
    messages: list[ChatMessage] = Field(min_length=3, max_length=3)
    kind: str
    product: str
    hint_shown: bool
    split: Literal["train", "valid"]
    label_source: LabelSource = Field(description="where the assistant turn's label came from (train prefers human)")


class RagSample(Strict):
    id: str
    text: str
    hint: str | None
    product: str
    label: dict[str, Any]
    category: Literal["accepted", "partially_accepted"]
    source_file: str
    line: int


class PreferencePair(Strict):
    id: str
    prompt: list[ChatMessage] = Field(min_length=2, max_length=2)
    chosen: str
    rejected: str
    chosen_source: LabelSource
    rejected_source: Literal["rules", "teacher", "human", "gold", "hint_anchored"] = Field(
        description="hint_anchored: the chosen label with the kind the section hint alone suggests")
    rejected_reasons: list[str]


class QuarantineReason(str, Enum):
    """The fixed taxonomy: every dropped record carries exactly one."""

    invalid_utf8 = "invalid_utf8"
    unknown_format = "unknown_format"
    no_entries = "no_entries"  # a parser read the file and found no entry in it
    unreadable_file = "unreadable_file"
    empty_entry = "empty_entry"
    entry_too_short = "entry_too_short"
    entry_too_long = "entry_too_long"
    label_schema_invalid = "label_schema_invalid"
    score_rejected = "score_rejected"
    needs_human_review = "needs_human_review"
    partial_not_for_sft = "partial_not_for_sft"
    gold_overlap = "gold_overlap"
    no_preference_pair = "no_preference_pair"
    # patch sources (commit-messages): a unit that is a patch but not a (diff, message) pair
    patch_without_message = "patch_without_message"  # a bare diff: no author's message to learn from
    patch_without_diff = "patch_without_diff"  # a message (or headers) with no diff hunk
    unparseable_patch = "unparseable_patch"  # headers or diff the patch parser cannot read


class QuarantineRecord(Strict):
    id: str
    stage: str
    reason: QuarantineReason
    detail: str
    source_file: str
    line: int | None


class FileDigest(Strict):
    path: str
    sha256: str
    records: int | None = Field(description="JSONL rows, when the file is JSONL")


class RecordCounts(Strict):
    records_in: int = Field(ge=0)
    records_out: int = Field(ge=0)
    quarantined: int = Field(ge=0)
    deduplicated: int = Field(ge=0)
    extra: dict[str, int] = Field(default_factory=dict, description="stage-specific counters")


class StageReceipt(Strict):
    schema_version: Literal[1] = 1
    stage: str
    inputs: list[FileDigest]
    outputs: list[FileDigest]
    counts: RecordCounts
    invariant_holds: bool = Field(description="records_in == out + quarantined + deduplicated")
    params: dict[str, Any]
    git_revision: str
    tool_versions: dict[str, str]
    duration_s: float = Field(ge=0)
    peak_rss_mb: float = Field(ge=0, description="the stage process's peak resident memory")


class DriftSeverity(str, Enum):
    ok = "ok"
    warn = "warn"


class DriftFlag(Strict):
    dimension: str = Field(description="kind, severity, product, category, text_length")
    key: str
    previous: float
    current: float
    change: float = Field(description="absolute change of the share (or relative, for quantiles)")


class DriftReport(Strict):
    schema_version: Literal[1] = 1
    threshold: float
    has_previous: bool
    severity: DriftSeverity
    flags: list[DriftFlag]
    current: dict[str, Any] = Field(description="this run's distributions")
    previous: dict[str, Any] | None
    since: str | None = Field(None, description="where `previous` came from: the git tag (export.drift_since) "
                                                "whose committed drift report it is, or why there is none")
