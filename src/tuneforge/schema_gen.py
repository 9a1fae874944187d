"""Generate schemas/*.schema.json from the pydantic models (the single source of truth).

Run: python -m tuneforge.schema_gen          (writes schemas/)
     python -m tuneforge.schema_gen --check  (exit 1 and list the files that drifted)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from tuneforge import records
from tuneforge.names import shapes
from tuneforge.tasks import get_task, known

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

MODELS: dict[str, type[BaseModel]] = {
    "raw_entry": records.RawEntry,
    "evidence_record": records.EvidenceRecord,
    "scored_record": records.ScoredRecord,
    "sft_sample": records.SftSample,
    "rag_sample": records.RagSample,
    "preference_pair": records.PreferencePair,
    "quarantine_record": records.QuarantineRecord,
    "stage_receipt": records.StageReceipt,
    "drift_report": records.DriftReport,
    "verdict": shapes.Verdict,
    "fidelity_report": shapes.FidelityReport,
    "base_sidecar": shapes.BaseSidecar,
    "adapter_sidecar": shapes.AdapterSidecar,
    "merged_sidecar": shapes.MergedSidecar,
    "gguf_provenance": shapes.GgufProvenance,
    "prediction": shapes.Prediction,
    "registry": shapes.Registry,
    "registry_entry": shapes.RegistryEntry,
    "replay_record": shapes.ReplayRecord,
}


def all_schemas() -> dict[str, str]:
    models = dict(MODELS)
    for name in known():
        models[f"{name}.output"] = get_task(name).output_model
    return {f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
            for name, model in models.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare, don't write")
    ap.add_argument("--dir", type=Path, default=SCHEMA_DIR)
    args = ap.parse_args(argv)
    expected = all_schemas()
    if args.check:
        drifted = [name for name, text in expected.items()
                   if not (args.dir / name).exists() or (args.dir / name).read_text() != text]
        extra = sorted(p.name for p in args.dir.glob("*.schema.json") if p.name not in expected)
        for name in drifted:
            print(f"drifted or missing: {args.dir / name}")
        for name in extra:
            print(f"no model generates: {args.dir / name}")
        return 1 if drifted or extra else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, text in expected.items():
        (args.dir / name).write_text(text)
    print(f"wrote {len(expected)} schemas to {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
