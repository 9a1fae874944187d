"""tools.scratch_build: the by-hand variant's root differs from the checkout by its --set values
alone, and a setting that names nothing fails before any stage runs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tools import scratch_build
from tuneforge import config, names

REPO = Path(__file__).resolve().parent.parent
TASK = "changelog-actions"


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in checkout: this repo's params and pipeline, a built-looking SFT export."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copyfile(REPO / config.PARAMS, root / config.PARAMS)
    shutil.copyfile(REPO / config.PIPELINE, root / config.PIPELINE)
    train = root / names.TaskPaths.for_task(TASK).sft("train")
    train.parent.mkdir(parents=True)
    train.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(scratch_build, "ROOT", root)
    return root


def test_root_holds_the_settings_and_nothing_else_changes(checkout: Path, tmp_path: Path):
    root = tmp_path / "scratch"
    scratch_build.make_root(root, TASK, ["train.max_steps=1920", "train.field_weights={kind: 10.0}"])
    before = yaml.safe_load((checkout / config.PARAMS).read_text(encoding="utf-8"))
    after = yaml.safe_load((root / config.PARAMS).read_text(encoding="utf-8"))
    changed = after["tasks"][TASK]["overrides"].pop("train")
    assert changed == {"field_weights": {"kind": 10.0}, "max_steps": 1920}
    before["tasks"][TASK]["overrides"].pop("train")
    assert after == before
    assert config.load(root / config.PARAMS).tasks[TASK].overrides["train"]["max_steps"] == 1920
    export = root / names.TaskPaths.for_task(TASK).sft_dir
    assert export.is_symlink() and export.resolve() == (checkout / names.TaskPaths.for_task(TASK).sft_dir).resolve()
    assert names.CACHE.is_absolute() or (root / names.CACHE).is_symlink()


@pytest.mark.parametrize("setting, message", [
    ("max_steps=1920", "expected section.key=value"),
    ("trian.max_steps=1920", "'trian' is not a section the task overrides"),
    ("train.max_stepz=1920", "max_stepz"),
])
def test_a_setting_that_names_nothing_fails(checkout: Path, tmp_path: Path, setting: str, message: str):
    with pytest.raises((SystemExit, ValueError), match=message):
        scratch_build.make_root(tmp_path / "scratch", TASK, [setting])


def test_an_unbuilt_export_is_named(checkout: Path, tmp_path: Path):
    shutil.rmtree(checkout / names.TaskPaths.for_task(TASK).sft_dir)
    with pytest.raises(SystemExit, match=r"run `dvc repro export@changelog-actions` first"):
        scratch_build.make_root(tmp_path / "scratch", TASK, ["train.max_steps=10"])
