"""dvc.yaml's outputs are the ones tuneforge.names gives, for every stage and task."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tuneforge import names

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def render(text: str, key: str | None, item: dict | None) -> str:
    """DVC's interpolation, for the names dvc.yaml uses: ${key}, ${item.x}, ${section.x}."""
    def value(m: re.Match) -> str:
        ref = m.group(1)
        if ref == "key":
            return key
        node = item if ref.startswith("item.") else PARAMS
        for part in ref.removeprefix("item.").split("."):
            node = node[part]
        return str(node)
    return re.sub(r"\$\{([\w.-]+)\}", value, text)


def declared_outputs(stage: str, key: str | None = None) -> set[str]:
    entry = PIPELINE["stages"][stage]
    item = PARAMS["tasks"][key] if key else None
    entry = entry.get("do", entry)
    paths = set()
    for section in ("outs", "metrics", "plots"):
        for out in entry.get(section, []):
            paths.add(render(next(iter(out)) if isinstance(out, dict) else out, key, item))
    return paths


CASES = [(s, k) for s, e in PIPELINE["stages"].items() for k in (PARAMS["tasks"] if "foreach" in e else [None])]


@pytest.mark.parametrize(("stage", "task"), CASES)
def test_dvc_yaml_declares_what_names_says_the_stage_writes(stage, task):
    entry = PARAMS["tasks"][task] if task else {}
    expected = names.outputs(stage, task, model_name=entry.get("model_name", ""),
                             outtype=PARAMS["convert"]["outtype"], types=PARAMS["quantize"]["types"])
    assert declared_outputs(stage, task) == {str(p) for p in expected}


def test_every_per_task_stage_expands_over_params_tasks():
    for name, entry in PIPELINE["stages"].items():
        if name == "base":
            assert "foreach" not in entry, "the base model is shared by every task"
            continue
        assert entry.get("foreach") == "${tasks}", name
        assert entry["do"]["cmd"] == f"python -m stages.{name} ${{key}}", name
        assert "tasks.${key}" in entry["do"]["params"], name


def test_a_stage_reading_another_stages_output_declares_it_as_a_dep():
    """Every dep under data/, models/ or reports/ is some stage's output: the graph is connected
    by names, not by files that happen to exist."""
    outs = {(p, t) for s, t in CASES for p in declared_outputs(s, t)}
    for stage, task in CASES:
        entry = PIPELINE["stages"][stage].get("do", PIPELINE["stages"][stage])
        item = PARAMS["tasks"][task] if task else None
        for dep in entry["deps"]:
            path = render(dep, task, item)
            if path.startswith(("models/", "reports/", f"data/{task}/")):
                assert any(o == path for o, _ in outs), (stage, path)


def test_quantize_outs_follow_quantize_types_and_eval_register_read_them():
    for task, entry in PARAMS["tasks"].items():
        types = PARAMS["quantize"]["types"]
        ggufs = {str(names.TaskPaths(task).gguf_dir / names.gguf_name(entry["model_name"], t)) for t in types}
        for stage in ("eval", "register"):
            deps = {render(d, task, entry) for d in PIPELINE["stages"][stage]["do"]["deps"]}
            assert ggufs <= deps, stage
