"""changelog-actions' output: one strict-JSON action item per change entry.

Contract: shared/task/changelog-actions.md, restated in SCHEMA.md. Model-side code (merge,
register, predict, eval's decoding) needs only this module and prompt.py, never the labeler.
"""
from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Kind(str, Enum):
    breaking = "breaking"
    deprecation = "deprecation"
    security = "security"
    feature = "feature"
    fix = "fix"
    performance = "performance"
    docs = "docs"
    unknown = "unknown"


# Kinds only the entry's own words decide (rule 10): a section hint neither gives them
# nor overrides them.
FIRM_KINDS = (Kind.security, Kind.breaking, Kind.deprecation)
# The labeler's "nothing a user must act on" (rule 8); its kind is Kind.unknown.
UNKNOWN_RULE = 8


class Severity(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


TAG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
# Bounded, as every string of the output is (the decoding grammar follows the schema, and an
# unbounded field lets a looping model run to the token cap). The contract says only "a
# version or date"; up to 4 components matches what the labeler reads (DEADLINE_RE), and 8
# digits a part is twice the longest in the snapshot (4) and fits a YYYYMMDD date.
DEADLINE_PATTERN = r"^(v?[0-9]{1,8}(\.[0-9]{1,8}){0,3}|[0-9]{4}-[0-9]{2}-[0-9]{2})$"


class ActionItem(BaseModel):
    """The model's output. Structural rules live here (and so in the JSON Schema and
    the decoding grammar); word-level STYLE rules are checked by `style_problems`."""

    kind: Kind
    severity: Severity
    # Character bounds for the contract's word limits (subject 2-6 words, action_text <= 35
    # words, about 8 characters a word; the gold's longest are 43 and 186 characters). They
    # also bound the decoding grammar, so a looping answer closes.
    subject: str = Field(min_length=1, max_length=64)
    action_text: str = Field(min_length=1, max_length=280)
    deadline: str | None = Field(pattern=DEADLINE_PATTERN)
    # The contract gives tags no length: 40 characters is the gold's longest (27) with margin.
    tags: list[Annotated[str, StringConstraints(pattern=TAG_PATTERN, max_length=40)]] = Field(
        min_length=1, max_length=5, json_schema_extra={"uniqueItems": True})

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"description": "One action item for one changelog entry."},
    )


FIELD_ORDER = list(ActionItem.model_fields)


def render_label(label: dict) -> str:
    """Canonical assistant text: contract key order, compact, UTF-8 kept."""
    ordered = {k: label[k] for k in FIELD_ORDER}
    return json.dumps(ordered, ensure_ascii=False, separators=(", ", ": "))


def parse_label(text: str) -> ActionItem:
    """Strict: the whole text must be one JSON object valid against the schema."""
    return ActionItem.model_validate_json(text.strip(), strict=False)
