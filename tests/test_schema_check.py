"""Export rows are checked against their generated schema as they are written: a row its model
would not produce stops the stage, naming the file, the row and the field."""
from __future__ import annotations

import pytest

from tuneforge.records import RagSample, SftSample
from tuneforge.schema_check import RowSchemaError, SchemaCheck


def rag(i: int, **change) -> RagSample:
    row = {"id": f"{i:064x}", "text": "Fixed a crash.", "hint": None, "product": "demo", "category": "accepted",
           "label": {"kind": "fix"}, "source_file": "demo/NEWS", "line": i}
    return RagSample.model_construct(**{**row, **change})  # model_construct: no validation, as a bug would


def test_valid_rows_pass_through_as_written_dicts(tmp_path):
    rows = [rag(1), rag(2)]
    check = SchemaCheck(RagSample)
    assert [check.row(tmp_path / "rag.jsonl", i, r) for i, r in enumerate(rows, 1)] == [
        r.model_dump(mode="json") for r in rows]


@pytest.mark.parametrize(("change", "where"), [
    ({"category": "maybe"}, "$.category: \"maybe\" is not one of"),
    ({"line": "7"}, "$.line: \"7\" is not of type \"integer\""),
])
def test_a_bad_row_names_the_file_the_row_and_the_field(tmp_path, change, where):
    with pytest.raises(RowSchemaError) as e:
        check = SchemaCheck(RagSample)
        for i, row in enumerate([rag(1), rag(2, **change)], 1):
            check.row(tmp_path / "rag.jsonl", i, row)
    assert f"rag.jsonl: row 2 (id {2:064x}) is not a RagSample (schemas/): {where}" in str(e.value)


def test_the_export_stage_stops_on_a_planted_bad_row(workdir, monkeypatch):
    """The faults plant: one SFT row whose assistant turn lost its role."""
    from stages import backfill, evidence, export, score

    for stage in (backfill, evidence, score):
        assert stage.main(["changelog-actions"]) == 0
    real = export.sft_sample

    def planted(task, rec, split, hint):
        row = real(task, rec, split, hint)
        if split == "train":
            bad = [*row.messages[:-1], {"content": row.messages[-1].content}]
            return SftSample.model_construct(**{**dict(row), "messages": bad})
        return row

    monkeypatch.setattr(export, "sft_sample", planted)
    with pytest.raises(RowSchemaError, match=r"exports/sft/train.jsonl: row 1 \(id \w+\) is not a SftSample "
                                             r"\(schemas/\): \$\.messages\.2: \"role\" is a required property"):
        export.main(["changelog-actions"])
    assert not (workdir / "data/changelog-actions/exports/sft/train.jsonl").exists()  # nothing half-written
