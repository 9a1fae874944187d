"""README figures come from the report JSONs they describe (issue 17, item 5): every section
between `<!-- NAME:start -->` / `<!-- NAME:end -->` markers must equal what
tools.readme_sections renders from the committed reports."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import readme_sections as rs

ROOT = rs.ROOT
HISTORIC = {"labeler", "eval", "releases"}  # sections that read earlier releases' reports from git history


def _has_release_history() -> bool:
    commits = [ln.split()[1] for ln in (ROOT / "RELEASES").read_text().splitlines() if ln.strip()]
    return all(subprocess.run(["git", "cat-file", "-e", c], cwd=ROOT, capture_output=True).returncode == 0
               for c in commits)


def test_every_release_is_in_main_s_history():
    """CI builds a clean clone of main alone: a release committed on a side branch (v22 was, on
    release-v6) is not in it, and every section reading that release's reports fails. So each
    RELEASES commit must be an ancestor of HEAD (merge the release branch: `git merge -s ours`).
    A shallow clone lacks old commits by design and is not judged."""
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip() == "true"
    if shallow:
        pytest.skip("a shallow clone: earlier releases' commits are not here by design")
    off = [f"{v} {c[:12]}" for v, c in rs.release_commits(ROOT).items()
           if subprocess.run(["git", "merge-base", "--is-ancestor", c, "HEAD"], cwd=ROOT,
                             capture_output=True).returncode != 0]
    assert off == [], f"RELEASES names commits not in HEAD's history (a clean clone of main lacks them): {off}"


@pytest.mark.parametrize("name", sorted(rs.SECTIONS))
def test_readme_section_equals_its_rendering_from_the_committed_report(name):
    if name in HISTORIC and not _has_release_history():
        pytest.skip("a shallow clone: the v2 labeler report is not in this history")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert rs.section(text, name) == rs.render(name), (
        f"README.md section {name} is stale: run `python -m tools.readme_sections {name}`")


TASK_REPORTS = (rs.LABELER[0], rs.RULE2_AUDIT, rs.KIND_AUDIT, rs.METRICS[0], str(rs._PATHS.leakage),  # reports/<task>/
                "reports/harvest-patches.json", "reports/commit-messages/gold.json",  # the second task's
                str(rs.COMMITS.metrics), str(rs.COMMITS.labeler_report), str(rs.COMMITS.verdict),
                str(rs.names.TaskPaths.for_task("changelog-actions").verdict),  # the confirmation section
                *(str(rs.names.TaskPaths.for_task(t).fidelity) for t in ("changelog-actions", "commit-messages")),
                *(str(p) for stages in rs.build_receipts(ROOT).values() for p in stages.values()),  # build time
                *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("reports/*/review/agreement-*.json"))),
                *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("reports/*/by-hand/*-whole-holdout.json"))),
                *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("reports/*/by-hand/compare-*.json"))),
                *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("reports/*/by-hand/imatrix-*"))),
                *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("reports/*/eval/ladder.csv"))))


def _copy(tmp_path):
    """A scratch repo root: the README and the reports the renderers read."""
    for rel in ("README.md", "RELEASES", "dvc.yaml", "params.yaml", "reports/bench.json", "reports/faults.json",
                "reports/mutation.json", *TASK_REPORTS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    (tmp_path / ".git").symlink_to(ROOT / ".git")  # release_report's `git show` reads the history
    return tmp_path


def _produced_files(text: str) -> int:
    """The produced-files count the faults section renders (from reports/faults.json)."""
    m = re.search(r"0 found in (\d+) produced files", rs.section(text, "faults"))
    assert m, "the faults section names no produced-files count"
    return int(m.group(1))


def test_check_names_a_section_whose_figure_was_typed_by_hand(tmp_path):
    root = _copy(tmp_path)
    readme = root / "README.md"
    assert [p for p in rs.check(readme, root) if _has_release_history() or not HISTORIC & set(p.split())] == []
    text = readme.read_text(encoding="utf-8")
    # planted: a stale hand-typed figure like the one the issue found (README 100 produced
    # files where the report said 101): the report's count, one less, typed into the README
    n = _produced_files(text)
    stale = f"0 found in {n - 1} produced files"
    readme.write_text(text.replace(f"0 found in {n} produced files", stale))
    problems = rs.check(readme, root)
    assert len(problems) == 1 and "section faults differs" in problems[0], problems
    line = int(problems[0].split(":")[1])
    assert stale in readme.read_text().splitlines()[line - 1]
    # the command that writes the report puts the rendered figure back
    assert rs.update(["faults"], readme, root) == ["faults"]
    assert rs.check(readme, root) == [] or not _has_release_history()


def test_a_changed_report_changes_the_readme_section(tmp_path):
    root = _copy(tmp_path)
    rep = json.loads((root / "reports/faults.json").read_text())
    rep["details"]["secrets"]["tracked_files_checked"] = 75
    rep["remote_corruption_detected"]["verify"] = False
    (root / "reports/faults.json").write_text(json.dumps(rep))
    body = rs.render("faults", root)
    assert "or 75 tracked files" in body
    assert "Failed (`make faults` exits 1): a corrupt remote object got past" in body
    assert [p.split(": ", 1)[1] for p in rs.check(root / "README.md", root)
            if "faults" in p] == ["section faults differs from its report; run "
                                  "`python -m tools.readme_sections faults`"]


def test_build_time_says_so_when_eval_answered_from_its_memo(tmp_path):
    """A rebuild that changed no model answers eval from the machine's memo: its receipts give a
    build time far under a clean clone's, and the section must say it is not a cold build (it
    once showed 17 min beside a 45-min cold build, under issue 19's 30-min budget)."""
    root = _copy(tmp_path)
    receipts = {task: root / stages["eval"] for task, stages in rs.build_receipts(root).items() if task}

    def plant(task: str, decoded: int, cache_hits: int) -> None:
        rep = json.loads(receipts[task].read_text())
        rep["counts"]["extra"].update(decoded=decoded, cache_hits=cache_hits)
        receipts[task].write_text(json.dumps(rep))

    for task in receipts:
        plant(task, 944, 186)  # a cold eval: the memo only repeats the run's own answers
    assert "Not a cold build" not in rs.render("buildtime", root)
    plant("changelog-actions", 6, 1100)
    assert "Not a cold build: eval of changelog-actions took more answers from its memo" in rs.render("buildtime", root)


def test_build_time_says_whether_the_budget_is_met_and_where_the_models_trained(tmp_path):
    """Issue 19's budget (15 min a task with the shared stages, 30 in all) judged from the same
    receipts the table sums, and the matrix instruction set each task trained on (the same build
    takes other times there)."""
    root = _copy(tmp_path)
    stages = rs.build_receipts(root)

    def plant(path: Path, **fields) -> None:
        rep = json.loads(path.read_text())
        rep.update(fields)
        path.write_text(json.dumps(rep))

    for rel in [rel for d in stages.values() for rel in d.values()]:
        plant(root / rel, duration_s=10.0)  # every stage 10 s: well within
    assert "30 min in all, on 2 cores): met." in rs.render("buildtime", root)
    plant(root / stages["commit-messages"]["eval"], duration_s=900.0)  # that task alone over 15 min
    assert "30 min in all, on 2 cores): not met." in rs.render("buildtime", root)
    train = root / stages["changelog-actions"]["train"]
    rep = json.loads(train.read_text())
    rep["params"]["resolved"].update(precision="fp32", matmul_isa="avx2")
    train.write_text(json.dumps(rep))
    assert "Trained: changelog-actions in fp32 on avx2; commit-messages in " in rs.render("buildtime", root)


def test_missing_or_repeated_markers_are_named(tmp_path):
    text = "a\n<!-- x:start -->\nb\n<!-- x:end -->\n"
    assert rs.section(text, "x") == "b"
    assert rs.replace(text, "x", "c") == "a\n<!-- x:start -->\nc\n<!-- x:end -->\n"
    with pytest.raises(ValueError, match=r"README.md: marker <!-- y:start --> appears 0 times"):
        rs.section(text, "y")
    with pytest.raises(ValueError, match="appears 2 times"):
        rs.section(text + "<!-- x:end -->\n", "x")
    with pytest.raises(ValueError, match=r"README.md:1: <!-- x:end --> comes before"):
        rs.section("<!-- x:end -->\n<!-- x:start -->\n", "x")


def test_cli_check_exits_1_naming_the_stale_section(tmp_path, monkeypatch, capsys):
    root = _copy(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    n = _produced_files(text)
    readme.write_text(text.replace(f"0 found in {n} produced files", f"0 found in {n + 1} produced files"))
    monkeypatch.setattr(rs, "ROOT", root)
    monkeypatch.setattr(rs, "README", readme)
    assert rs.main(["--check"]) == 1
    assert "section faults differs" in capsys.readouterr().err


@pytest.mark.skipif(not _has_release_history(), reason="a shallow clone: earlier releases' reports are not here")
def test_eval_table_reads_head_from_metrics_json_and_releases_from_their_commits(tmp_path):
    root = _copy(tmp_path)
    before = rs.render("eval", root)
    m = json.loads((root / rs.METRICS[0]).read_text())
    m["Q8_0"]["kind_agreement"] = 0.123
    (root / rs.METRICS[0]).write_text(json.dumps(m))
    row = next(r for r in rs.render("eval", root).splitlines() if "Q8_0" in r).split(" | ")
    assert row[1:5] == next(r for r in before.splitlines() if "Q8_0" in r).split(" | ")[1:5]  # v1..v5
    assert row[5] == "0.123"
    (root / "RELEASES").write_text("v1 " + "0" * 40 + "\n")
    with pytest.raises(ValueError, match=f"RELEASES: no release v2|{rs.METRICS[0]} or reports/metrics.json at v1"):
        rs.render("eval", root)


def _commit(repo, files: dict[str, dict | None], message: str) -> str:
    """Write (or, for None, remove) report files in a scratch git repo and commit; the commit id."""
    for rel, body in files.items():
        path = repo / rel
        if body is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body))
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", message]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def _metrics(kind: float) -> dict:
    fig = {"kind_agreement": kind, "severity_agreement": 0.5, "parse_rate": 1.0, "macro_f1": 0.4}
    return {m: fig for m in rs.EVAL_MODELS}


def test_releases_from_before_the_per_task_layout_still_render(tmp_path):
    """v1..v7 committed reports/metrics.json (one task, no reports/<task>/): a release's report is
    read from the task's path when its commit has it, else from the v7 path; HEAD's only from
    the task's path."""
    repo = tmp_path
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    v7 = _commit(repo, {"reports/metrics.json": _metrics(0.25)}, "v7 layout")
    per_task = _commit(repo, {rs.METRICS[0]: _metrics(0.5), "reports/metrics.json": None}, "per-task layout")
    stale = _commit(repo, {rs.METRICS[0]: _metrics(0.75), "reports/metrics.json": _metrics(0.0)}, "both")
    empty = _commit(repo, {rs.METRICS[0]: None, "reports/metrics.json": None}, "neither")
    (repo / "RELEASES").write_text(f"v1 {v7}\nv2 {per_task}\nv3 {stale}\nv5 {v7}\nv9 {empty}\n")
    assert [rs.release_report(repo, v, rs.METRICS)["Q8_0"]["kind_agreement"] for v in ("v1", "v2", "v3")] == \
        [0.25, 0.5, 0.75]
    with pytest.raises(ValueError, match=f"{rs.METRICS[0]} or reports/metrics.json at v9"):
        rs.release_report(repo, "v9", rs.METRICS)
    # the whole table: releases from both layouts beside HEAD's task report
    (repo / rs.METRICS[0]).parent.mkdir(parents=True, exist_ok=True)  # left empty by the last commit
    (repo / rs.METRICS[0]).write_text(json.dumps(_metrics(0.875)))
    row = next(r for r in rs.render("eval", repo).splitlines() if "Q8_0" in r).split(" | ")
    assert row[1:6] == ["0.250", "0.500", "0.750", "0.250", "0.875"]
    (repo / rs.METRICS[0]).unlink()  # HEAD never falls back to the v7 path (its file is stale)
    (repo / "reports" / "metrics.json").write_text(json.dumps(_metrics(0.0)))
    with pytest.raises(ValueError, match=f"{rs.METRICS[0]}: cannot read the report"):
        rs.render("eval", repo)


def test_the_commits_table_has_every_quantisation_and_marks_the_promoted_one():
    """The table users read to pick a model lists the base and every quantisation eval ran on
    all rows, the one the verdict promoted marked: a fixed list of names had dropped the
    promoted Q6_K-imat once the ladder renamed it."""
    metrics = json.loads((ROOT / rs.COMMITS.metrics).read_text(encoding="utf-8"))
    promoted = json.loads((ROOT / rs.COMMITS.verdict).read_text(encoding="utf-8"))["promoted"]
    table = [line for line in rs.render("commits").splitlines() if line.startswith("| fine-tuned ")]
    names = [line.split(" | ")[0].removeprefix("| fine-tuned ").removesuffix(" (promoted)") for line in table]
    types = rs.config.load(ROOT / rs.config.PARAMS).quantize.types
    assert sorted(names) == sorted(t for t in types if t in metrics) and len(names) >= 2
    marked = [n for n, line in zip(names, table, strict=True) if line.startswith(f"| fine-tuned {n} (promoted) |")]
    assert marked == ([promoted] if promoted else [])


def test_the_commits_table_renders_without_a_base_row(tmp_path):
    """eval.base_gguf: false leaves the base out of metrics.json: the table lists the
    quantisations alone, with the same row count, instead of failing."""
    root = _copy(tmp_path)
    path = root / rs.COMMITS.metrics
    metrics = json.loads(path.read_text(encoding="utf-8"))
    full = rs.render("commits", root).splitlines()
    del metrics["base"]
    path.write_text(json.dumps(metrics), encoding="utf-8")
    without = rs.render("commits", root).splitlines()
    assert [line for line in full if not line.startswith("| base ")] == without


def test_the_commits_whole_gold_table_has_a_row_per_by_hand_run(tmp_path):
    """Every whole-gold run by hand of the commit task is a row (its build and quantisation from
    the file name, the rule labeler's type on the same rows beside it); none at all is an error
    naming the command that writes one, not an empty table."""
    root = _copy(tmp_path)
    runs = sorted((root / rs.COMMITS.reports / "by-hand").glob("*-whole-holdout.json"))
    assert runs, "no commit-messages whole-gold run committed"
    table = rs.render("byhand-commits", root).splitlines()[2:]
    assert ["-".join(line.removeprefix("| ").split(" | ")[:2]) for line in table] == [
        p.stem.removesuffix("-whole-holdout") for p in runs]
    for line, path in zip(table, runs, strict=True):
        lab = json.loads(path.read_text(encoding="utf-8"))["rule_labeler"]
        assert f"| {lab['type_agreement']:.3f} (" in line
    for path in runs:
        path.unlink()
    with pytest.raises(ValueError,
                       match=r"no reports/commit-messages/by-hand/\*-whole-holdout\.json .*tuneforge\.evaluate"):
        rs.render("byhand-commits", root)


@pytest.mark.skipif(not _has_release_history(), reason="a shallow clone: earlier releases' reports are not here")
def test_a_release_that_promoted_nothing_still_says_what_it_trained_on():
    from tools.readme_sections import render_releases

    row = next(r for r in render_releases(ROOT).splitlines() if r.startswith("| v25 |"))
    assert "| none |" in row and "| 1,920 (1,719) | 480 |" in row  # v25's changelog build promoted nothing
