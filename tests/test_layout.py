"""The package holds only what stages and user commands import (issue 18, item 3).

Harnesses (faults, bench, verify-repro, the README renderer, the labeling helpers) live in
tools/ and import the package; the package never imports them back, never reads the test
fixtures, and has no module that only a harness or a test uses. Imports are read from the
source (ast), function-level ones included, so nothing is imported to run these checks."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tuneforge"

# The commands a user runs (README: predict, evaluate by hand; harvest, harvest-patches; install-hook's
# tuneforge.hook; the schemas `make lint` checks; make serve, replay, make review). A new
# `python -m tuneforge.X` in README.md or the Makefile must be added here on purpose, or live in tools/.
USER_COMMANDS = ("tuneforge.predict", "tuneforge.evaluate", "tuneforge.harvest", "tuneforge.harvest_patches",
                 "tuneforge.hook", "tuneforge.schema_gen", "tuneforge.serve", "tuneforge.replay", "tuneforge.review",
                 "tuneforge.llama_tools", "tuneforge.recover")
OUTSIDE = ("tools", "tests")  # top-level packages of the repo the library must not reach into
PATH_INTO_OUTSIDE = re.compile(r"(^|/)(tests|tools)/")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, nodes) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every module `path` (module `name`) imports, as dotted names, relative ones resolved.
    `from a import b` counts a.b when b is a module; importing a.b runs a's __init__ too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
        elif isinstance(node, ast.Call) and package != "tuneforge" \
                and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "iter_modules"):
            # a subpackage that discovers its own modules (a registry) imports all of them; in the
            # top-level package that would excuse every module, so there it counts for nothing
            out |= {m for m in modules if m.startswith(package + ".")}
    for dotted in list(out):
        parts = dotted.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return out


def command_modules() -> set[str]:
    """`python -m tuneforge.X` commands README.md and the Makefile name, and pyproject's scripts."""
    text = (ROOT / "README.md").read_text(encoding="utf-8") + (ROOT / "Makefile").read_text(encoding="utf-8")
    # module names are snake_case: `python -m tuneforge.X` in the README's layout diagram is a placeholder
    found = set(re.findall(r"-m (tuneforge(?:\.[a-z_][a-z0-9_]*)+)\b", text))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("scripts", {})
    return found | {target.split(":")[0] for target in scripts.values()}


def reached() -> set[str]:
    """Package modules imported, directly or through other package modules, by a stage or a
    user command."""
    modules = package_modules()
    todo = set(USER_COMMANDS)
    for stage in sorted((ROOT / "stages").glob("*.py")):
        todo |= imported(stage, f"stages.{stage.stem}", modules)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        todo |= imported(modules[name], name, modules) - seen
    return seen


def outside_references() -> list[str]:
    """Each import of tools/ or tests/ in the package, and each path it builds into them."""
    problems = []
    modules = package_modules()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        rel = path.relative_to(ROOT)
        problems += [f"{rel}: imports {d}" for d in sorted(imported(path, name, modules)) if d.split(".")[0] in OUTSIDE]
        docs = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # ROOT / "tests" / ...
                problems += [f"{rel}:{side.lineno}: builds a path into {side.value}/"
                             for side in (node.left, node.right) if isinstance(side, ast.Constant)
                             and side.value in OUTSIDE]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                    and PATH_INTO_OUTSIDE.search(node.value):
                problems.append(f"{rel}:{node.lineno}: names a path in tests/ or tools/: {node.value[:60]!r}")
    return problems


def test_package_imports_no_harness_and_reads_no_test_fixture():
    assert outside_references() == []


def test_commands_named_in_the_docs_are_user_commands():
    """`make faults` and friends run tools (python -m tools.X); a `python -m tuneforge.X` in the
    README or the Makefile is a user command, declared above."""
    assert sorted(command_modules() - set(USER_COMMANDS)) == []
    modules = package_modules()
    for name in USER_COMMANDS:
        assert name in modules and '__name__ == "__main__"' in modules[name].read_text(encoding="utf-8"), name


def test_every_package_module_serves_a_stage_or_a_user_command():
    unused = sorted(set(package_modules()) - reached())
    assert unused == [], (f"imported by no stage and no user command (a harness belongs in tools/, "
                          f"a test helper in tests/): {unused}")


def test_the_checks_see_an_unused_module_a_harness_import_and_a_fixture_path(tmp_path, monkeypatch):
    """Planted: a package module nothing imports, one that imports tools/, one that reads the
    test fixtures; a registry package whose submodules are discovered, not named; and a dynamic
    import in the top-level package, which excuses nothing."""
    me = sys.modules[__name__]
    pkg = tmp_path / "src" / "tuneforge"
    (pkg / "formats").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "one.py").write_text("from tuneforge import used\n")
    (pkg / "__init__.py").write_text("")
    (pkg / "used.py").write_text("from . import helper\nfrom .formats import x\n"
                                 "import importlib\nimportlib.import_module('tuneforge.' + 'any')\n")
    (pkg / "helper.py").write_text("import tools.faults\n")
    (pkg / "formats" / "__init__.py").write_text("import importlib, pkgutil\n"
                                                 "for m in pkgutil.iter_modules(__path__):\n"
                                                 "    importlib.import_module(f'{__name__}.{m.name}')\n")
    (pkg / "formats" / "a.py").write_text("")
    (pkg / "cmd.py").write_text('from pathlib import Path\nFIX = Path(__file__).parents[2] / "tests" / "x"\n'
                                'OTHER = "tests/fixtures/gold-mini.jsonl"\n')
    (pkg / "orphan.py").write_text("Y = 2\n")
    monkeypatch.setattr(me, "ROOT", tmp_path)
    monkeypatch.setattr(me, "PACKAGE", pkg)
    monkeypatch.setattr(me, "USER_COMMANDS", ("tuneforge.cmd",))
    assert sorted(set(package_modules()) - reached()) == ["tuneforge.orphan"]
    assert sorted(outside_references()) == ["src/tuneforge/cmd.py:2: builds a path into tests/",
                                             "src/tuneforge/cmd.py:3: names a path in tests/ or tools/: "
                                             "'tests/fixtures/gold-mini.jsonl'",
                                             "src/tuneforge/helper.py: imports tools",
                                             "src/tuneforge/helper.py: imports tools.faults"]
