"""Rows checked against their JSON Schema as a stage writes them (issue 23 item 3).

The schema is the one `python -m tuneforge.schema_gen` writes to schemas/ for the row's pydantic
model (a test keeps the files equal to it), compiled once per stage run, so a row that its
model would not produce (one built with model_construct, a hand-made dict, a serializer that
drifted from the schema) stops the stage naming the file, the row and the field instead of
reaching a consumer. The validator is jsonschema-rs (Rust, ~1M rows/s here): the pure-Python
`jsonschema` checked 4,300 SFT rows/s, more than the export stage's whole time for 30k rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel


class RowSchemaError(ValueError):
    """A row that does not match its schema: names the file, the row number and the field."""


class SchemaCheck:
    def __init__(self, model: type[BaseModel]):
        import jsonschema_rs

        self.validator = jsonschema_rs.validator_for(model.model_json_schema())  # compiled once
        self.name = model.__name__

    def row(self, path: str | Path, n: int, row: Any) -> dict:
        """Row number `n` of `path` as the dict written (pydantic models dumped as JSON), checked."""
        data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        if self.validator.is_valid(data):
            return data
        error = min(self.validator.iter_errors(data), key=lambda e: [str(x) for x in e.instance_path])
        where = "$." + ".".join(map(str, error.instance_path)) if error.instance_path else "the row"
        ident = data.get("id") if isinstance(data, dict) else None
        raise RowSchemaError(f"{path}: row {n}{f' (id {ident})' if ident else ''} is not a {self.name} "
                             f"(schemas/): {where}: {error.message}")
