"""dvc.yaml's outputs are the ones tuneforge.names gives, for every stage and task."""
from __future__ import annotations

import ast
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
TASKS = list(PARAMS["tasks"])


@pytest.mark.parametrize(("stage", "task"), CASES)
def test_dvc_yaml_declares_what_names_says_the_stage_writes(stage, task):
    entry = PARAMS["tasks"][task] if task else {}
    expected = {str(p) for p in names.outputs(
        stage, task, model_name=entry.get("model_name", ""), outtype=PARAMS["convert"]["outtype"],
        types=PARAMS["quantize"]["types"])}
    assert declared_outputs(stage, task) == expected


def test_every_per_task_stage_expands_over_params_tasks():
    for name, entry in PIPELINE["stages"].items():
        if name == "base":
            assert "foreach" not in entry, "the base model is shared by every task"
            continue
        assert entry.get("foreach") == "${tasks}", name
        assert entry["do"]["cmd"] == f"python -m stages.{name} ${{key}}", name
        assert "tasks.${key}.package" in entry["do"]["params"], name


def test_a_per_task_stage_declares_the_tasks_overrides_of_each_section_it_reads():
    """A task's override of section s reruns exactly the stages that read s: each per-task stage
    declares tasks.${key}.overrides.<s> beside every shared section it declares, and never the
    whole tasks.${key} (v18: commit-messages' eval-only override reran train and changed the GGUFs,
    whose metadata hashes the declared params)."""
    for name, entry in PIPELINE["stages"].items():
        if "foreach" not in entry:
            continue
        keys = entry["do"]["params"]
        assert "tasks.${key}" not in keys, name
        sections = {k.split(".")[0] for k in keys} - {"tasks", "toolchain", "base"}
        overridden = {k.split(".")[3] for k in keys if k.startswith("tasks.${key}.overrides.")}
        assert overridden == sections, (name, sorted(sections ^ overridden))


def test_a_stage_reading_another_stages_output_declares_it_as_a_dep():
    """Every dep under data/, models/ or reports/ is some stage's output: the graph is connected
    by names, not by files that happen to exist."""
    outs = {(p, t) for s, t in CASES for p in declared_outputs(s, t)}
    for stage, task in CASES:
        entry = PIPELINE["stages"][stage].get("do", PIPELINE["stages"][stage])
        item = PARAMS["tasks"][task] if task else None
        for dep in entry["deps"]:
            path = render(dep, task, item)
            if path.startswith(("models/", "reports/", f"data/{task}/")):  # an output, or a file in one
                assert any(o == path or path.startswith(o + "/") for o, _ in outs), (stage, path)


def test_quantize_outs_follow_quantize_types_and_eval_register_read_them():
    for task, entry in PARAMS["tasks"].items():
        types = PARAMS["quantize"]["types"]
        ggufs = {str(names.TaskPaths(task).gguf_dir / names.gguf_name(entry["model_name"], t)) for t in types}
        for stage in ("eval", "register"):
            deps = {render(d, task, entry) for d in PIPELINE["stages"][stage]["do"]["deps"]}
            assert ggufs <= deps, stage


# ---------------------------------------------------------------- code deps

def module_file(name: str) -> Path | None:
    """tuneforge.a.b -> src/tuneforge/a/b.py or src/tuneforge/a/b/__init__.py (None: not a module)."""
    base = ROOT / "src" / Path(*name.split("."))
    return next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.exists()), None)


def imports(path: Path) -> set[Path]:
    """Every tuneforge module file `path` imports, directly or through another one, in any
    spelling; a module in a package runs the package's __init__ too."""
    def direct(file: Path) -> set[Path]:
        found = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("tuneforge.")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tuneforge"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        parts = [n.split(".") for n in found]
        return {module_file(".".join(p[:i])) for p in parts for i in range(2, len(p) + 1)} - {None}

    seen: set[Path] = set()
    todo = direct(path)
    while todo:
        mod = todo.pop()
        seen.add(mod)
        todo |= direct(mod) - seen
    return seen


def task_code(task: str, used: set[str]) -> set[Path]:
    """What `get_task(task)` loads (its package and the package's imports), plus the module of
    every lazy member among the attribute names `used`."""
    from dataclasses import fields

    from tuneforge.tasks import Lazy, get_task, package_name

    init = module_file(f"tuneforge.tasks.{package_name(task)}")
    files = {init, *imports(init)}
    t = get_task(task)
    for f in fields(t):
        value = getattr(t, f.name)
        lazy = value if isinstance(value, Lazy) else getattr(value, "__self__", None)
        if isinstance(lazy, Lazy) and f.name in used:
            mod = module_file(lazy.module)
            files |= {mod, *imports(mod)}
    return files


def stage_code(stage: str, task: str | None) -> set[Path]:
    """The library files a stage runs: its imports, and its task's code when it asks for one."""
    source = ROOT / "stages" / f"{stage}.py"
    files = imports(source)
    if task and module_file("tuneforge.tasks") in files:
        used = {n.attr for f in {source, *files} for n in ast.walk(ast.parse(f.read_text()))
                if isinstance(n, ast.Attribute)}
        files |= task_code(task, used)
    return files


def code_deps(stage: str, task: str | None) -> set[str]:
    entry = PIPELINE["stages"][stage].get("do", PIPELINE["stages"][stage])
    item = PARAMS["tasks"][task] if task else None
    return {render(d, task, item) for d in entry["deps"] if render(d, task, item).startswith(("src/", "stages/"))}


@pytest.mark.parametrize(("stage", "task"), CASES)
def test_every_stage_declares_the_code_it_runs(stage, task):
    """A library module a stage runs (also through another module, or a task's lazy member)
    is a dvc.yaml dep of that stage, so changing it reruns the stage (the trainer module was
    missed once)."""
    deps = code_deps(stage, task)
    assert f"stages/{stage}.py" in deps
    missing = sorted(str(f.relative_to(ROOT)) for f in stage_code(stage, task)
                     if not any(str(f.relative_to(ROOT)) == d or str(f.relative_to(ROOT)).startswith(d + "/")
                                for d in deps))
    assert missing == [], missing


@pytest.mark.parametrize(("stage", "task"), CASES)
def test_no_stage_declares_code_it_does_not_run(stage, task):
    """...and only those: v7's merge listed the changelog rule labeler (its probe prompt came
    through the task module), so a labeler change reran merge and everything after it. One
    foreach entry declares the deps of every task's run of a stage, so a shared module one
    task's run needs (commit-messages' junk injection reads tuneforge.redact) is declared for
    all; the task's own package is task-relative (${item.package}) and checked per task."""
    runs = {f"stages/{stage}.py"}
    for other in (TASKS if task else [None]):
        runs |= {str(f.relative_to(ROOT)) for f in stage_code(stage, other)
                 if other == task or not str(f.relative_to(ROOT)).startswith("src/tuneforge/tasks/")
                 or Path(f).parent.name == "tasks"}
    extra = sorted(d for d in code_deps(stage, task)
                   if d not in runs and not any(r.startswith(d + "/") for r in runs))
    assert extra == [], extra


def test_a_second_task_is_a_params_entry_not_a_copied_stage(tmp_path):
    """Listing a second task expands every per-task stage for it (DVC's own reading of
    dvc.yaml), each writing under its own directories; only the base model is shared."""
    import subprocess
    import sys

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"]["commit-messages"] = {
        "package": "commit_messages", "snapshot": "data/snapshot/patches.tar.gz",
        "gold": "data/gold/commit-messages.jsonl", "human_labels": "data/labeled/commit-messages.jsonl",
        "replay_log": "data/replay/commit-messages.jsonl", "model_name": "tuneforge-commit-messages"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    listed = subprocess.run([dvc, "stage", "list", "--name-only"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout.split()
    per_task = [s for s, e in PIPELINE["stages"].items() if "foreach" in e]
    assert sorted(listed) == sorted(["base", *(f"{s}@{t}" for s in per_task for t in params["tasks"])])
    outs = {t: {str(p) for s in per_task for p in names.outputs(
        s, t, model_name=params["tasks"][t]["model_name"], outtype="f16", types=["Q8_0"])} for t in params["tasks"]}
    assert not outs["changelog-actions"] & outs["commit-messages"]


EXPORT_FILES = ("train.jsonl", "valid.jsonl", "rag.jsonl", "pairs.jsonl")


@pytest.mark.parametrize("task", TASKS)
def test_each_export_file_lies_in_a_declared_export_output(task):
    p = names.TaskPaths.for_task(task)
    files = [p.sft("train"), p.sft("valid"), p.rag, p.preference]
    assert sorted(f.name for f in files) == sorted(EXPORT_FILES)
    outs = declared_outputs("export", task)
    for f in files:
        assert str(f.parent) in outs, f
    with pytest.raises(ValueError, match="no SFT split 'test'"):
        p.sft("test")


def spelled_export_files(roots: list[Path]) -> list[str]:
    """Code outside tuneforge.names that spells an export file's name as a string literal."""
    hits = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "names" in path.relative_to(root).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and node.value.endswith(EXPORT_FILES) and "\n" not in node.value:
                    hits.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.value!r}")
    return hits


# files that spell such a name for something other than this build's exports
NOT_EXPORTS = {
    "tools/artifact_hashes.py": "a v7 build's layout, read from that build's own params",
    "tools/bench/pipeline.py": "the plain-json baseline's own output files",
}


def test_only_tuneforge_names_spells_the_export_files():
    """One module owns every cross-stage name: stages, the package and the harnesses take the
    export files from TaskPaths (sft, rag, preference), never by spelling their names."""
    hits = spelled_export_files([ROOT / "src", ROOT / "stages", ROOT / "tools"])
    assert [h for h in hits if h.split(":")[0] not in NOT_EXPORTS] == []


def test_the_spelling_check_sees_a_spelled_export_file(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "x.py").write_text('P = "data/t/exports/sft/train.jsonl"\n')
    assert spelled_export_files([tmp_path / "stages"]) == ["stages/x.py:1: 'data/t/exports/sft/train.jsonl'"]
