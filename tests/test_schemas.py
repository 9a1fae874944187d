import json

import jsonschema
import yaml

from tuneforge import schema_gen
from tuneforge.records import QuarantineReason
from tuneforge.tasks.changelog_actions.schema import ActionItem

from .conftest import ROOT


def test_committed_schemas_match_models():
    assert schema_gen.main(["--check", "--dir", str(ROOT / "schemas")]) == 0


def test_drift_is_detected(tmp_path):
    schema_gen.main(["--dir", str(tmp_path)])
    target = tmp_path / "raw_entry.schema.json"
    data = json.loads(target.read_text())
    data["properties"]["text"]["minLength"] = 0
    target.write_text(json.dumps(data))
    assert schema_gen.main(["--check", "--dir", str(tmp_path)]) == 1


def test_contract_example_validates_against_generated_schema():
    schema = json.loads((ROOT / "schemas" / "changelog-actions.output.schema.json").read_text())
    example = {
        "kind": "security", "severity": "high", "subject": "subprocess env scrub flag",
        "action_text": "Set `CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=1` in environments where "
                       "subprocess invocations may inherit Anthropic or cloud provider credentials.",
        "deadline": None, "tags": ["claude-code", "env-var", "credentials"],
    }
    jsonschema.validate(example, schema)
    ActionItem.model_validate(example)
    for bad in ({**example, "kind": "chore"}, {**example, "extra": 1}, {**example, "tags": []},
                {**example, "tags": ["Not Kebab"]}, {**example, "deadline": "soon"},
                {k: v for k, v in example.items() if k != "deadline"}):
        try:
            jsonschema.validate(bad, schema)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"schema accepted {bad}")


def test_params_have_a_section_per_stage():
    """Every stage but the ones with no knobs of their own has its params.yaml section (typed
    in tuneforge.config: tests/test_config.py)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section in ("tasks", "backfill", "evidence", "score", "export", "base", "train", "merge", "convert",
                    "quantize", "eval", "register"):
        assert section in params, section


def test_quarantine_taxonomy_is_fixed():
    assert len({r.value for r in QuarantineReason}) == len(QuarantineReason)
