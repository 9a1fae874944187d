"""`make release-model`'s profile (Makefile RELEASE_PROFILE) applied to params.yaml: it must
validate, give changelog-actions one epoch over its whole export, and touch no shared section,
so that `dvc exp run` with it reruns changelog-actions' train and what follows only."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tuneforge.config import load, with_overrides

ROOT = Path(__file__).resolve().parents[1]


def profile() -> list[tuple[str, str]]:
    """The Makefile's `-S '+key=value'` pairs (Hydra's append syntax, as dvc exp run reads it)."""
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"^RELEASE_PROFILE := (.*?)(?<!\\)\n", text, re.M | re.S)
    assert block, "Makefile has no RELEASE_PROFILE"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    pairs = [w for w in words if w != "-S"]
    assert len(pairs) == words.count("-S")
    return [tuple(p.removeprefix("+").split("=", 1)) for p in pairs]


def apply(params: dict, pairs) -> dict:
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = params
        for name in parents:
            node = node[name]
        assert leaf not in node, f"+{key}: '+' appends, and dvc refuses a key that exists"
        node[leaf] = yaml.safe_load(value)
    return params


def test_release_profile_trains_changelog_one_epoch_and_nothing_else(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    shared = {k: v for k, v in raw.items() if k != "tasks"}
    applied = apply(yaml.safe_load((ROOT / "params.yaml").read_text()), profile())
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(applied))
    p = load(path)
    release = with_overrides(p, "changelog-actions", path)
    default = with_overrides(load(ROOT / "params.yaml"), "changelog-actions")
    assert default.train.max_steps > 0
    assert (release.train.max_steps, release.train.epochs) == (0, 1)
    assert release.train.checkpoint_every > 0
    # only changelog-actions' train overrides moved: every other stage's params are the same
    assert {k: v for k, v in applied.items() if k != "tasks"} == shared
    assert applied["tasks"]["commit-messages"] == raw["tasks"]["commit-messages"]
    changed = {s for s, v in applied["tasks"]["changelog-actions"]["overrides"].items()
               if v != raw["tasks"]["changelog-actions"]["overrides"][s]}
    assert changed == {"train"}
