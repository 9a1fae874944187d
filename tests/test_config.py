"""params.yaml is typed, and each stage reads only the params its dvc.yaml entry declares."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tuneforge import config

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
TASKS = list(yaml.safe_load((ROOT / "params.yaml").read_text())["tasks"])
# StageParams members that are no params section
VIEW_MEMBERS = {"task", "task_name", "paths", "declared", "check_toolchain", "section"}


def test_params_yaml_validates():
    p = config.load(ROOT / "params.yaml")
    assert p.tasks and all(t in p.tasks for t in TASKS)
    assert p.register_.ollama in ("auto", "never")


def _write(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(("edit", "key", "allowed"), [
    (lambda r: r["train"].update(precision="fp16"), "train.precision", "'bf16', 'fp32' or 'auto'"),
    (lambda r: r["quantize"].update(types=["Q8_0", "Q9_X"]), "quantize.types.1", "'Q8_0'"),
    (lambda r: r["register"].update(ollama="always"), "register.ollama", "'auto' or 'never'"),
    (lambda r: r["export"].update(valid_fraction=1.5), "export.valid_fraction", "less than or equal to 1"),
    (lambda r: r["tasks"]["changelog-actions"].update(model_name="Bad Name"),
     "tasks.changelog-actions.model_name", "pattern"),
    (lambda r: r["eval"]["gates"].update(min_parity="high"), "eval.gates.min_parity", "valid number"),
    (lambda r: r["tasks"]["changelog-actions"].update(package="changelog"), "tasks",
     "lives in package 'changelog_actions'"),
])
def test_a_bad_value_names_its_key_and_the_allowed_values(tmp_path, edit, key, allowed):
    path = _write(tmp_path, edit)
    with pytest.raises(config.ParamsError) as e:
        config.load(path)
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.strip().startswith(
        key.split(".")[-1] + ":") or (key.split(".")[-1].isdigit() and ln.strip().startswith("- Q9")))
    assert f"{path}:{line}: {key}: " in str(e.value) and allowed in str(e.value), str(e.value)


def test_an_unknown_or_missing_key_is_named(tmp_path):
    path = _write(tmp_path, lambda r: (r["train"].update(lora_rank=8), r["merge"].pop("dtype")))
    with pytest.raises(config.ParamsError) as e:
        config.load(path)
    assert ": train.lora_rank: Extra inputs are not permitted" in str(e.value)
    assert ": merge.dtype: Field required" in str(e.value)


def test_a_key_of_an_older_params_yaml_says_what_replaced_it(tmp_path):
    path = _write(tmp_path, lambda r: (r.update(paths={"entries": "data/entries.jsonl"}),
                                       r["train"].update(base=r["base"], bf16=True)))
    with pytest.raises(config.ParamsError) as e:
        config.load(path)
    assert ": paths: removed: artifact paths come from tuneforge.names" in str(e.value)
    assert ": train.base: moved to the top-level `base` section" in str(e.value)
    assert ": train.bf16: replaced by train.precision: bf16 | fp32 | auto" in str(e.value)


def test_a_stage_started_with_bad_params_exits_with_the_message(tmp_path, monkeypatch):
    path = _write(tmp_path, lambda r: r["train"].update(precision="fp16"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    with pytest.raises(SystemExit, match=r"^train: params.yaml:\d+: train.precision: Input should be 'bf16'"):
        config.from_argv("train", [TASKS[0]])
    assert path.exists()


def test_the_view_refuses_an_undeclared_section_and_key():
    params = config.for_stage("quantize", TASKS[0], params=ROOT / "params.yaml", pipeline=ROOT / "dvc.yaml")
    assert params.convert.outtype == "f16"            # declared: convert.outtype
    with pytest.raises(config.UndeclaredParam, match="'convert.license'"):
        _ = params.convert.license                    # the rest of convert is not
    with pytest.raises(config.UndeclaredParam, match="stage 'quantize' reads params 'train'"):
        _ = params.train
    assert set(params.declared()) == {f"tasks.{TASKS[0]}.package", f"tasks.{TASKS[0]}.model_name",
                                      f"tasks.{TASKS[0]}.overrides.quantize", f"tasks.{TASKS[0]}.overrides.convert",
                                      "quantize", "convert.outtype", "convert.sdist_sha256",
                                      "toolchain.llama_cpp_python", "toolchain.transformers",
                                      "toolchain.jinja2", "toolchain.tokenizers"}


def test_an_unknown_task_is_refused_listing_the_tasks():
    with pytest.raises(config.ParamsError, match="no task 'nope' \\(listed: changelog-actions"):
        config.for_stage("train", "nope", params=ROOT / "params.yaml", pipeline=ROOT / "dvc.yaml")


def params_read(source: str) -> set[str]:
    """The dotted params a stage module reads through its `params` view: `params.x`,
    `params.x.y` where x is partly declared, `params.section("x")`, `params.task.x` (a field of
    the task's entry, declared as tasks.${key}.x)."""
    reads: set[str] = set()
    tree = ast.parse(source)
    # `params.task` nodes whose field is read (params.task.gold): the field is the read, not the entry
    fielded = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "section" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "params":
            reads.add(node.args[0].value)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params":
            if node.attr == "task":
                if id(node) not in fielded:  # the whole entry handed on
                    reads.add("tasks.${key}")
            elif node.attr not in VIEW_MEMBERS:
                reads.add(node.attr)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "params":
            if node.value.attr == "task":
                reads.add(f"tasks.${{key}}.{node.attr}")
            elif node.value.attr not in VIEW_MEMBERS:
                reads.add(f"{node.value.attr}.{node.attr}")
    return reads


def undeclared(stage: str, source: str) -> list[str]:
    entry = STAGES[stage].get("do", STAGES[stage])
    keys = [str(k) for k in entry.get("params", [])]
    # a bare `params.x` is fine where only keys under x are declared: its `params.x.y` reads are checked
    return sorted(r for r in params_read(source)
                  if not any(r == k or r.startswith(k + ".") for k in keys)
                  and not ("." not in r and any(k.startswith(r + ".") for k in keys)))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_reads_only_params_its_entry_declares(stage):
    source = (ROOT / "stages" / f"{stage}.py").read_text()
    assert f'"{stage}"' in source and ("config.from_argv" in source or "config.for_stage" in source), \
        f"stages/{stage}.py does not read its params through tuneforge.config"
    assert "load_params" not in source and "import yaml" not in source, f"stages/{stage}.py reads params.yaml raw"
    assert undeclared(stage, source) == [], f"stages/{stage}.py reads params dvc.yaml does not declare for it"


def test_the_scan_catches_the_v7_convert_gap():
    """v7's convert hashed task, train and merge into the GGUF while dvc.yaml declared only convert
    and two toolchain pins: the same reads, through the view, are flagged."""
    planted = 'params = config.from_argv("convert")\nx = params.train.seed, params.section("merge"), ' \
              'params.convert.outtype, params.toolchain.gguf\n'
    assert undeclared("convert", planted) == ["merge", "toolchain.gguf", "train", "train.seed"]


# ---------------------------------------------------------------- per-task overrides

def test_a_task_override_changes_only_that_tasks_view():
    """tasks.<task>.overrides merge into the shared sections for that task alone (a diff's
    prompt is ~4x a changelog entry's, so one step budget cannot fit both)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = raw["tasks"]["commit-messages"]["overrides"]
    commits = config.for_stage("train", "commit-messages", params=ROOT / "params.yaml", pipeline=ROOT / "dvc.yaml")
    changelog = config.for_stage("train", "changelog-actions", params=ROOT / "params.yaml",
                                 pipeline=ROOT / "dvc.yaml")
    assert commits.section("train")["max_steps"] == over["train"]["max_steps"]
    assert changelog.section("train")["max_steps"] == raw["train"]["max_steps"] != over["train"]["max_steps"]
    # a key the override leaves alone is the shared value; a nested one merges, not replaces
    assert commits.section("train")["lora_r"] == raw["train"]["lora_r"]
    ev = config.for_stage("eval", "commit-messages", params=ROOT / "params.yaml", pipeline=ROOT / "dvc.yaml")
    assert ev.section("eval")["gates"]["min_parity"] == raw["eval"]["gates"]["min_parity"]
    # and the declared values (what provenance hashes) are the task's own
    assert commits.declared()["train"]["max_steps"] == over["train"]["max_steps"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda o: o["train"].update(max_steps=-1),
     r"params\.yaml:\d+: tasks\.commit-messages\.overrides\.train\.max_steps: Input should be greater than"),
    (lambda o: o["train"].update(max_stepz=5),
     r"params\.yaml:\d+: tasks\.commit-messages\.overrides\.train\.max_stepz: Extra inputs are not permitted"),
    (lambda o: o.update(toolchain={"torch": "2.0"}),
     r"params\.yaml:\d+: tasks\.commit-messages\.overrides\.toolchain: not a section a task may override"),
    (lambda o: o.update(trian={"max_steps": 1}),
     r"tasks\.commit-messages\.overrides\.trian: not a section a task may override"),
])
def test_a_bad_override_is_named_by_file_line_and_key(tmp_path, edit, message):
    path = _write(tmp_path, lambda r: edit(r["tasks"]["commit-messages"]["overrides"]))
    with pytest.raises(config.ParamsError, match=message):
        config.for_stage("train", "commit-messages", params=path, pipeline=ROOT / "dvc.yaml")
    # the other task's stages are not blocked by it
    config.for_stage("train", "changelog-actions", params=path, pipeline=ROOT / "dvc.yaml")


def test_a_section_missing_from_a_tasks_overrides_is_named(tmp_path):
    """DVC refuses a declared param key that is absent; for_stage names it first, with its line."""
    path = _write(tmp_path, lambda r: r["tasks"]["changelog-actions"]["overrides"].pop("eval"))
    with pytest.raises(config.ParamsError, match=r"params\.yaml:\d+: tasks\.changelog-actions\.overrides has no "
                                                 r"'eval': .*dvc\.yaml's eval stage declares "
                                                 r"tasks\.changelog-actions\.overrides\.eval"):
        config.for_stage("eval", "changelog-actions", params=path, pipeline=ROOT / "dvc.yaml")
    config.for_stage("train", "changelog-actions", params=path, pipeline=ROOT / "dvc.yaml")  # train reads no eval


def test_an_eval_override_leaves_the_model_stages_params_alone(tmp_path):
    """What train .. quantize declare (DVC's rerun trigger, and what convert hashes into the GGUF's
    provenance) does not move when a task overrides an eval knob; eval's and register's do."""
    path = _write(tmp_path, lambda r: r["tasks"]["commit-messages"]["overrides"]["eval"].update(confirm_rows=7))

    def declared(stage: str, params: Path) -> dict:
        return config.for_stage(stage, "commit-messages", params=params, pipeline=ROOT / "dvc.yaml").declared()

    for stage in ("backfill", "evidence", "score", "export", "train", "merge", "convert", "quantize"):
        assert declared(stage, path) == declared(stage, ROOT / "params.yaml"), stage
    for stage in ("eval", "register"):
        assert declared(stage, path) != declared(stage, ROOT / "params.yaml"), stage
