"""The faults suite (issue #7), reduced: the same code paths `python -m tools.faults`
runs in full (`make faults`), on fewer cases and kill points.  Plus property-based tests
for the parsers and the redactor that tests/test_sources.py and tests/test_redact.py do
not already cover."""
from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.faults.bad_input import bad_input_suite, check_root, decode_like_backfill
from tools.faults.cases import BASE_FILES, build_cases
from tools.faults.gates import gates_and_pins_suite, nothing_promoted, remote_suite
from tools.faults.kill import _norm_file, crash_snapshot, kill_suite, plain_kill_points, tree, verify_dvc_cache
from tools.faults.leakage import LEAK_VARIANTS, leakage_check, leakage_suite
from tools.faults.planted_secrets import make_secrets, scan_for_secrets, secrets_suite
from tools.faults.report import failures, main
from tools.faults.roots import DATA_STAGES, KILL_MODEL_STAGES, PATHS, ROOT, copy_root, make_root, run_inproc
from tools.faults.tiny import model_available, write_tiny_exports, write_tiny_params
from tuneforge.io import read_jsonl
from tuneforge.redact import KINDS, find_secrets, redact

from .conftest import FIXTURES

CATEGORIES = {"malformed_markup", "invalid_utf8", "nul_bytes", "huge_line", "empty", "gzip",
              "duplicates", "deep_nesting", "prompt_injection", "confusables", "line_endings", "binary"}


# ----------------------------------------------------------------------------- bad input

def test_full_case_set_covers_every_format_and_fault():
    cases = build_cases(seed=7, quick=False)
    assert len(cases) >= 500
    assert {c.fmt for c in cases} == set(BASE_FILES)
    assert {c.category for c in cases} == CATEGORIES
    for fmt in BASE_FILES:  # every fault kind is tried on every format
        assert {c.category for c in cases if c.fmt == fmt} == CATEGORIES, fmt
    assert len({c.id for c in cases}) == len(cases)
    sizes = [max(len(b) for b in c.files.values()) for c in cases if c.category == "huge_line"]
    assert max(sizes) > 16 << 20 and sum(s >= 10 << 20 for s in sizes) >= 6
    assert any(not b for c in cases for b in c.files.values())  # empty files
    gz = [n for c in cases for n in c.files if n.endswith(".gz")]
    assert len(gz) >= 6 * 5
    # seeded: the same seed gives the same bytes
    again = build_cases(seed=7, quick=False)
    assert [c.files for c in again[:40]] == [c.files for c in cases[:40]]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return bad_input_suite(seed=7, quick=True, scratch=tmp_path_factory.mktemp("bad"))


def test_bad_inputs_never_crash_and_nothing_is_lost(bad_inputs):
    assert bad_inputs["cases"] >= 120
    assert set(bad_inputs["by_category"]) == CATEGORIES
    assert bad_inputs["crashes"] == []
    assert bad_inputs["lost_count"] == 0, bad_inputs["lost_records"]
    assert bad_inputs["problem_count"] == 0, bad_inputs
    assert bad_inputs["records_checked"] > 1000
    reasons = {k.split(":", 1)[1] for k in bad_inputs["quarantined_by_reason"]}
    assert {"unreadable_file", "unknown_format", "invalid_utf8", "entry_too_long"} <= reasons


def _built_root(tmp_path: Path, extra: dict[str, bytes]) -> Path:
    files = {str(p.relative_to(FIXTURES)): p.read_bytes() for p in FIXTURES.rglob("*") if p.is_file()}
    root = make_root(tmp_path / "root", {**files, **extra})
    assert run_inproc(root) is None
    return root


def test_a_corrupt_gz_file_is_quarantined_naming_it(tmp_path):
    gz = gzip.compress(b"* Noteworthy changes in release 1.0\n\n** Bug fixes\n\n  Fixed it.\n")
    root = _built_root(tmp_path, {"broken/NEWS.gz": gz[: len(gz) // 2], "plain/NEWS.gz": b"not gzip"})
    q = [r for r in read_jsonl(root / PATHS.quarantine("backfill"))
         if r["reason"] == "unreadable_file"]
    assert sorted(r["source_file"] for r in q) == ["broken/NEWS.gz", "plain/NEWS.gz"]
    assert all(r["source_file"] in r["detail"] for r in q)
    assert check_root(root).lost == []


def test_the_accounting_check_catches_a_lost_record(tmp_path):
    root = _built_root(tmp_path, {})
    assert check_root(root).lost == []
    for rel in (PATHS.entries, PATHS.scored):
        p = root / rel
        rows = p.read_text().splitlines()
        p.write_text("\n".join(rows[1:]) + "\n")  # drop one record
        acc = check_root(root)
        assert acc.lost and acc.receipt_errors, rel
        p.write_text("\n".join(rows) + "\n")
    assert check_root(root).lost == []


# ----------------------------------------------------------------------------- secrets

def test_every_redactor_kind_is_planted_and_visible_to_the_scanner():
    planted = make_secrets(random.Random(1))
    assert {p.kind for p in planted} == set(KINDS) and len(KINDS) >= 12
    for p in planted:
        assert p.kind in find_secrets(p.text)
        out, counts = redact(f"Fixed a leak of {p.text} in logs")
        assert counts[p.kind] >= 1 and not any(n in out for n in p.needles), p.kind


def test_secrets_never_reach_a_data_artifact(tmp_path):
    got = secrets_suite(seed=7, scratch=tmp_path, model=False, tiny_base=None)
    assert len(got["kinds"]) >= 12 and got["planted"] >= 6 * 12
    assert got["leak_count"] == 0, got["leaks"]
    assert got["redactions_in_backfill_receipt"] >= 6 * 12  # the secrets reached the redactor
    assert got["files_scanned"]["text"] >= 20 and got["tracked_files_checked"] >= 10


def test_the_scanner_finds_secrets_in_text_binary_and_gguf_metadata(tmp_path):
    from gguf import GGUFWriter

    sec = make_secrets(random.Random(2))
    gh, pem = next(p for p in sec if p.kind == "github_token"), next(p for p in sec if p.kind == "pem_private_key")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "export.jsonl").write_text(json.dumps({"text": gh.text}) + "\n")
    (tmp_path / "out" / "weights.bin").write_bytes(b"\x00\x01" + pem.needles[1].encode() + b"\x00")
    w = GGUFWriter(str(tmp_path / "out" / "m.gguf"), "llama")
    w.add_string("general.description", "built with " + gh.text)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    scan = scan_for_secrets(tmp_path, [("x", gh), ("y", pem)])
    hits = {(x["file"], x["how"]) for x in scan["leaks"]}
    assert ("out/export.jsonl", "bytes") in hits and ("out/export.jsonl", "find_secrets") in hits
    assert ("out/weights.bin", "bytes") in hits
    assert ("out/m.gguf", "gguf metadata") in hits


# ----------------------------------------------------------------------------- kill -9

@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    return kill_suite(seed=11, scratch=tmp_path_factory.mktemp("kill"), n_plain=4, n_dvc=1,
                      n_model=0, tiny_base=None, crash_bytes=150_000)


def test_killed_stages_rerun_byte_identical_and_dvc_caches_no_partial_file(kills):
    report, _ = kills
    assert report["points"] == 5
    assert set(report["by_stage"]) == {*DATA_STAGES, "dvc repro"}
    assert all(p["stage"] == "dvc repro" or p["partial_outputs"] == [] for p in report["points_detail"])
    assert report["partial_files_in_dvc_cache"] == 0
    assert report["nonidentical"] == 0, [
        {k: p.get(k) for k in ("stage", "mode", "kill_at_s", "rerun_rc", "rerun_error", "status_after_kill_clean",
                               "status_clean", "partial_outputs")} | {"differs": p["differs"][:5]}
        for p in report["bad_points"]]
    dvc_point = next(p for p in report["points_detail"] if p["stage"] == "dvc repro")
    assert dvc_point["status_clean"] and dvc_point["rerun_rc"] == 0


def test_a_stage_that_fails_before_the_kill_is_a_bad_point_not_a_skipped_one(tmp_path, monkeypatch):
    """Planted: every run exits 1 on its own before the kill lands. It used to be dropped as
    'finished before the kill' (zero points, nothing flagged); now each is a bad point."""
    monkeypatch.setattr("tools.faults.kill.kill_stage",
                        lambda root, cmd, delay: {"rc": 1, "killed": False, "at_s": 0.1})
    points = plain_kill_points(tmp_path, random.Random(1), 2, crash_snapshot(20_000), ("backfill",))
    assert len(points) == 2 and all(p["differs"] == ["backfill exited 1 before the kill"] for p in points)


def test_cache_check_sees_a_corrupt_object(kills, tmp_path):
    _, ref = kills
    repo = copy_root(ref, tmp_path / "repo")
    assert verify_dvc_cache(repo) == []
    obj = next(p for p in sorted((repo / ".dvc/cache/files/md5").rglob("*")) if p.is_file())
    # What a SIGKILL inside DVC's own atomic move leaves (dvc_objects.fs.utils.move:
    # tmp_fname(dst)): a temp file beside the object, not an object. CI once counted one.
    (obj.parent / f"{obj.name}.Q2x_-9kLmN0pQrStUvWxYz.tmp").write_bytes(obj.read_bytes()[:3])
    assert verify_dvc_cache(repo) == []
    stray = obj.parent / "not-an-object"
    stray.write_bytes(b"x")
    assert verify_dvc_cache(repo) == [stray.relative_to(repo).as_posix()]
    stray.unlink()
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes()[:-1])  # a truncated (partial) object
    assert verify_dvc_cache(repo) == [obj.relative_to(repo).as_posix()]


def test_normalised_tree_ignores_timing_but_not_content(tmp_path):
    root = _built_root(tmp_path, {})
    before, _ = tree(root, ("data", "reports"))
    rec = root / PATHS.receipt("score")
    obj = json.loads(rec.read_text())
    obj["duration_s"] += 5
    rec.write_text(json.dumps(obj))
    assert tree(root, ("data", "reports"))[0] == before
    obj["counts"]["records_out"] += 1
    rec.write_text(json.dumps(obj))
    assert tree(root, ("data", "reports"))[0] != before


# ----------------------------------------------------------------------------- leakage, remote

def test_gold_never_reaches_train_or_valid(tmp_path):
    got = leakage_suite(tmp_path)
    # every kind of near-duplicate found an entry to plant, and one of a synthetic row
    assert got["planted_kinds"] == [*LEAK_VARIANTS, "synthetic_short_edit"]
    assert got["gold_overlap_quarantined"] >= got["planted_gold"] and got["synthetic_quarantined"] > 0
    assert got["probe"]["rows"] > 0
    assert got["leaks"] == 0, got


def test_leakage_check_finds_exact_and_near_duplicates():
    gold = [{"text": "Fixed a crash when the cache directory is missing on first start."}]
    row = lambda t: {"messages": [{}, {"content": f"Product: x\nEntry: {t}"}, {}]}  # noqa: E731
    cfg = {"near_dup_threshold": 0.75, "near_dup_min_contained_words": 10}
    got = leakage_check([row("FIXED a crash, when the cache directory is missing on first start!"),
                         row("Fixed a crash when the cache directory is missing on first start today."),
                         row("Fixed a crash when the config directory is missing on first start."),
                         row("Something else entirely.")], gold, cfg)
    assert got["exact_count"] == 1 and got["near_count"] == 2


def test_a_corrupt_remote_object_is_caught_with_verify(kills, tmp_path):
    _, ref = kills
    got = remote_suite(tmp_path, ref)
    # DVC's default (remote `verify` false) trusts the object name: the corrupt file is
    # checked out and `dvc status` is clean.  With `verify = true` the pull fails and the
    # corrupt bytes reach neither the cache nor the workspace.
    assert got["verify"]["detected"] and not got["verify"]["corrupt_file_checked_out"]
    assert not got["verify"]["corrupt_object_in_local_cache"]
    # the README's claim about DVC's default, held to what this DVC does: the corruption is
    # real (it reaches the workspace) and goes unnoticed
    assert got["default"]["corrupt_file_checked_out"] and not got["default"]["detected"], got["default"]


# ----------------------------------------------------------------------------- model half (slow)

# tiny_base: the session fixture in conftest.py (one tiny llama per test session)
@pytest.fixture(autouse=False)
def model_ready():
    why = model_available()
    if why:
        pytest.skip(why)


GATE_CHECKS = {"failing_models_rejected", "nothing_promoted_when_all_fail",
               "mixed_verdict_promotes_only_the_passing_model", "register_refuses_tampered_gguf",
               "register_left_registry_unchanged", "eval_refuses_tampered_gguf",
               "eval_by_hand_refuses_tampered_gguf", "register_refuses_unpinned_gguf",
               "eval_refuses_unpinned_gguf"}


@pytest.mark.slow
@pytest.mark.model
def test_gates_and_pins(model_ready, tiny_base, tmp_path):
    got = gates_and_pins_suite(tmp_path, tiny_base)
    assert got["failed"] == [], got["checks"]
    assert set(got["checks"]) == GATE_CHECKS


def _verdict(passing: set[str]) -> dict:
    qs = ("Q8_0", "Q6_K", "Q4_K_M")
    return {"models": {q: {"verdict": "pass" if q in passing else "fail"} for q in qs},
            "promoted": min(passing) if passing else None}


def _registry(statuses: dict[str, str]) -> dict:
    promoted = next((q for q, s in statuses.items() if s == "promoted"), None)
    return {"promoted": promoted and f"tuneforge:{promoted}",
            "models": [{"quantization": q, "status": s} for q, s in statuses.items()]}


def test_nothing_promoted_check_fails_on_a_promotion_or_a_scenario_where_something_passed():
    """The old check was `promoted is None or nothing failed`: true whenever a model passed,
    so it tested nothing on a build whose models pass. The scenario is now forced all-fail and
    the check refuses any other scenario."""
    all_rejected = _registry({"Q8_0": "rejected", "Q6_K": "rejected", "Q4_K_M": "rejected"})
    assert nothing_promoted(_verdict(set()), all_rejected)
    # planted defects: register promotes (or keeps as candidate) a failing model
    assert not nothing_promoted(_verdict(set()), _registry({"Q8_0": "rejected", "Q6_K": "rejected",
                                                            "Q4_K_M": "promoted"}))
    assert not nothing_promoted(_verdict(set()), _registry({"Q8_0": "rejected", "Q6_K": "candidate",
                                                            "Q4_K_M": "rejected"}))
    assert not nothing_promoted(_verdict(set()), {"promoted": None, "models": []})  # nothing registered
    # a scenario in which a model passed cannot vouch for the all-fail case
    assert not nothing_promoted(_verdict({"Q4_K_M"}), all_rejected)


# ----------------------------------------------------------------------------- the verdict

REPORT = ROOT / "reports" / "faults.json"

PLANTED = {  # defect -> (dotted key, value) planted into the committed report
    "crash": [("crashes", 1)],
    "lost record": [("lost_records", 1)],
    "quarantine row without reason": [("details.bad_inputs.problem_count", 1)],
    "leaked secret": [("leaked_secrets", 1)],
    "non-identical rerun": [("nonidentical_reruns", 1)],
    "partial file in the DVC cache": [("details.kill.partial_files_in_dvc_cache", 1)],
    "temp file left after a rerun": [("details.kill.stray_temp_files_after_rerun", 1)],
    "leaked gold": [("leaked_gold", 1)],
    "gate failed": [("gates_and_pins_failed", ["nothing_promoted_when_all_fail"])],
    "model half missing": [("gates_and_pins_failed", None), ("model_half", "cannot build the tiny base: x")],
    "remote verify missed": [("remote_corruption_detected.verify", False)],
    "a kill point that never landed": [("kill_points", 27), ("details.kill.requested", 28)],
    "nothing planted": [("bad_inputs", 0)],
}


def _plant(report: dict, changes: list[tuple[str, object]]) -> dict:
    report = json.loads(json.dumps(report))
    for dotted, value in changes:
        *parents, key = dotted.split(".")
        node = report
        for k in parents:
            node = node[k]
        node[key] = value
    return report


def test_the_committed_report_passes():
    assert failures(json.loads(REPORT.read_text())) == []


@pytest.mark.parametrize("defect", sorted(PLANTED))
def test_each_planted_defect_fails_the_suite(defect, monkeypatch, tmp_path, capsys):
    report = _plant(json.loads(REPORT.read_text()), PLANTED[defect])
    assert failures(report), defect
    monkeypatch.setattr("tools.faults.report.run_all", lambda **kw: report)
    assert main(["--out", str(tmp_path / "faults.json")]) == 1, defect
    assert "FAILED" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.model
def test_secrets_never_reach_a_model_artifact(model_ready, tiny_base, tmp_path):
    got = secrets_suite(seed=3, scratch=tmp_path, model=True, tiny_base=tiny_base)
    assert got["files_scanned"].get("gguf", 0) >= 5
    assert got["leak_count"] == 0, got["leaks"]


@pytest.mark.slow
@pytest.mark.model
def test_killed_model_stages_rerun_byte_identical(model_ready, tiny_base, tmp_path):
    pre = make_root(tmp_path / "ref", {})
    write_tiny_params(pre, tiny_base)
    write_tiny_exports(pre)
    points = plain_kill_points(tmp_path, random.Random(5), len(KILL_MODEL_STAGES), {}, KILL_MODEL_STAGES, pre=pre)
    assert [p["stage"] for p in points] == list(KILL_MODEL_STAGES)
    bad = [p for p in points if p["differs"] or p["partial_outputs"] or p["rerun_rc"] != 0]
    assert not bad, bad


def test_a_rerun_that_resumed_from_a_checkpoint_compares_equal(tmp_path):
    """Killed after its last checkpoint, train's rerun resumes from it: the adapter is the same
    bytes and the receipt says resumed_from_step 4 where the uninterrupted run said 0 (the kill
    test failed on it when the kill landed there). The kill comparison drops that count, as it
    drops timings and memo counts, and nothing else: an output's hash still counts."""
    receipt = json.loads((ROOT / "reports/changelog-actions/receipts/train.json").read_text(encoding="utf-8"))
    assert "resumed_from_step" in receipt["counts"]["extra"]  # the name train writes

    def norm(**extra) -> str:
        changed = json.loads(json.dumps(receipt))
        changed["counts"]["extra"].update(extra)
        path = tmp_path / "receipts" / f"{uuid.uuid4().hex}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(changed), encoding="utf-8")
        return _norm_file(path)

    same = norm()
    assert norm(resumed_from_step=4) == norm(resumed_from_step=0) == same
    assert norm(steps=3) != same  # a count that is not run-local still counts
    receipt["outputs"][0]["sha256"] = "0" * 64
    assert norm() != same  # and so does an output's hash


# ----------------------------------------------------------------------------- properties

SEPARATORS = st.sampled_from(list(" \t\n`'\"()[]{}<>,;:|!?*") + ["\r\n", "**", "__", " - ", "\u00a0", ""])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(KINDS)), SEPARATORS, SEPARATORS, st.text(max_size=40), st.integers(0, 10**6))
def test_planted_secret_framed_by_markup_never_survives(kind, left, right, noise, seed):
    """Secrets quoted, back-ticked, bracketed or bolded the way changelogs write them."""
    sec = next(p for p in make_secrets(random.Random(seed)) if p.kind == kind)
    text = f"{noise} {left}{sec.text}{right} {noise}"
    out, counts = redact(text)
    assert counts[kind] >= 1
    assert not any(n in out for n in sec.needles), (kind, left, right, out)
    assert find_secrets(out) == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_redaction_leaves_nothing_the_scanner_can_see(text):
    assert find_secrets(redact(text)[0]) == []


PARSE_PATHS = st.sampled_from(["x/NEWS", "x/NEWS.gz", "x/CHANGELOG.md", "x/changelog", "x/CHANGES.rst",
                               "git/RelNotes/1.0.txt"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.binary(max_size=600), st.lists(st.sampled_from(
    [b"\n", b"\r\n", b"\r", b"* ", b"- ", b"## [1.0] - 2024\n", b"### Fixed\n", b"\xff", b"\x00", b"\xc3",
     b"pkg (1.0-1) unstable; urgency=low\n", b"  * ", b"Fixed a crash in the parser", b"1.2.3\n=====\n",
     b"* Noteworthy changes in release 2.0\n", b" ghp_" + b"Ab1" * 12, b" hf_" + b"xY9" * 11]),
    max_size=60).map(b"".join)), path=PARSE_PATHS)
def test_backfill_parse_file_accounts_for_every_record(raw, path):
    """backfill's per-file work on arbitrary bytes: never raises; one record per entry the
    parser sees (or one for a file no parser reads); a dropped record has a reason and names
    file:line; a kept one is redacted and keyed by its content."""
    from stages.backfill import parse_file
    from tuneforge.config import Backfill
    from tuneforge.sources import UnknownFormatError, detect_format
    from tuneforge.text import content_key

    cfg = Backfill(min_chars=8, max_chars=2000, max_file_mb=16, workers=1)
    records, seen_before, _ = parse_file((0, (path, raw, None)), cfg, run=uuid.uuid4().hex)
    text = decode_like_backfill(raw)
    try:
        # a file a parser accepts but that holds no entry (an empty CHANGES.rst) is one
        # record, like a file no parser reads
        expected = sum(1 for _ in detect_format(path, text).parse(path, text)) or 1
    except UnknownFormatError:
        expected = 1
    assert len(records) + seen_before == expected
    for kind, *rec in records:
        if kind == "drop":
            line, reason, detail, _ = rec
            assert reason and path in detail
            assert line is None or f"{path}:{line}" in detail
        else:
            key, body = rec[0], rec[1]
            assert key == content_key(body) and find_secrets(body) == []


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["gz", "tar"]))
def test_snapshot_reader_raises_only_snapshot_errors(tmp_path_factory, data, kind):
    from tuneforge.harvest import SnapshotError, iter_snapshot

    d = tmp_path_factory.mktemp("snap")
    if kind == "gz":  # arbitrary bytes as a .gz file in a directory snapshot
        (d / "p").mkdir()
        (d / "p" / "NEWS.gz").write_bytes(data)
        errors = []
        got = list(iter_snapshot(d, on_error=lambda n, e: errors.append((n, e))))
        assert len(got) + len(errors) == 1
        assert all(n == "p/NEWS.gz" and isinstance(e, SnapshotError) for n, e in errors)
    else:  # arbitrary bytes (or a gzip of them) as the snapshot archive
        snap = d / "snap.tar.gz"
        snap.write_bytes(data if data[:1] != b"a" else gzip.compress(data))
        try:
            list(iter_snapshot(snap))
        except SnapshotError as e:
            assert "snap.tar.gz" in str(e)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and s.strip()
                                                                  and s not in (".", "..")
                                                                  and "\x00" not in s),
                          st.binary(max_size=50)), min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_snapshot_tar_roundtrip(tmp_path_factory, members):
    from tuneforge.harvest import iter_snapshot, write_snapshot

    out = tmp_path_factory.mktemp("tar") / "s.tar.gz"
    files = [(f"p/{n}", b) for n, b in members]
    write_snapshot(files, out)
    assert list(iter_snapshot(out)) == sorted(files)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40).map(lambda s: s.replace("\n", " ").replace("\r", " ")),
                          st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps)),
                max_size=8))
def test_read_jsonl_yields_rows_or_names_file_and_line(tmp_path_factory, lines):
    from tuneforge.io import read_jsonl

    p = tmp_path_factory.mktemp("jl") / "rows.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        rows = list(read_jsonl(p))
    except ValueError as e:
        assert str(e).startswith(f"{p}:") and "invalid JSON" in str(e)
        line = int(str(e).split(":")[1])
        assert 1 <= line <= len(lines)
    else:
        assert len(rows) == sum(1 for ln in lines if ln.strip())


SUM_NAMES = st.from_regex(r"[A-Za-z0-9_.-]{1,20}\.gguf", fullmatch=True)
SUM_LINES = st.lists(st.tuples(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), st.booleans(), SUM_NAMES),
                     max_size=4, unique_by=lambda t: t[2])


# junk: one line (no line or paragraph separators, which str.splitlines would split on) without
# the two-space separator
JUNK = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=80).filter(
    lambda t: "  " not in t and t.strip())


@settings(max_examples=150, deadline=None)
@given(SUM_LINES, st.one_of(st.none(), JUNK), st.integers(0, 4))
def test_sha256sums_parser_returns_pins_or_refuses(tmp_path_factory, pins, junk, at):
    """`sha256sum` lines (text or `*binary` mode) come back as name -> digest; one line that
    is not such a line makes the whole file an error naming SHA256SUMS and that line."""
    from tuneforge.fetch import PinMismatch
    from tuneforge.gguf_tools import read_sums

    lines = [f"{digest}  {'*' if binary else ''}{name}" for digest, binary, name in pins]
    if junk is not None:
        at = min(at, len(lines))
        lines.insert(at, junk)
    d = tmp_path_factory.mktemp("sums")
    (d / "SHA256SUMS").write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    if junk is None:
        assert read_sums(d) == {name: digest for digest, _, name in pins}
    else:
        with pytest.raises(PinMismatch, match=f"SHA256SUMS:{at + 1}: malformed line"):
            read_sums(d)


def _mutations(label: dict) -> dict[str, str]:
    """Texts built from a valid label that the strict parser must refuse, each for one reason."""
    from tuneforge.tasks.changelog_actions.schema import render_label

    good = render_label(label)
    wrong_kind = {**label, "kind": "bugfix"}
    return {
        "missing key": json.dumps({k: v for k, v in label.items() if k != "subject"}),
        "extra key": json.dumps({**label, "note": "x"}),
        "kind outside the enum": json.dumps(wrong_kind),
        "tags not a list": json.dumps({**label, "tags": label["tags"][0]}),
        "no tags": json.dumps({**label, "tags": []}),
        "empty subject": json.dumps({**label, "subject": ""}),
        "deadline not a version or date": json.dumps({**label, "deadline": "next week"}),
        "text before": "Here is the item: " + good,
        "text after": good + " Hope this helps.",
        "two objects": good + good,
        "in a list": f"[{good}]",
        "in a code fence": f"```json\n{good}\n```",
        "cut short": good[:-1],
    }


def _check_label_parser(parse, label: dict, noise: str) -> None:
    from tuneforge.tasks.changelog_actions.schema import render_label

    try:
        got = parse("\n " + render_label(label) + " \n").model_dump(mode="json")
    except ValueError as e:
        pytest.fail(f"refused the rendered label: {e}")
    assert got == label
    for why, text in _mutations(label).items():
        with pytest.raises(ValueError):
            parse(text)
            pytest.fail(f"accepted ({why}): {text!r}")
    with pytest.raises(ValueError):
        parse(noise)


def _valid(label: dict) -> dict:
    from tuneforge.tasks.changelog_actions.schema import ActionItem

    try:
        ActionItem.model_validate(label)
    except ValueError:
        return {**label, "tags": ["x"], "deadline": None}  # the generator's rare schema misses
    return label


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_label_parser_accepts_only_schema_valid_json(data):
    """parse_label takes the rendered label (with only whitespace around it) back to the same
    item, and refuses each kind of near miss a model writes; arbitrary text never parses."""
    from tuneforge.tasks.changelog_actions.schema import parse_label

    _check_label_parser(parse_label, _valid(data.draw(LABELS)), data.draw(st.text(max_size=200)))


def test_the_label_parser_check_fails_on_a_lenient_or_a_refusing_parser():
    """Planted defects: a parser that digs the first {...} out of any text, and one that
    refuses everything; the property above must reject both."""
    import re

    from tuneforge.tasks.changelog_actions.schema import ActionItem, parse_label

    def lenient(text):
        m = re.search(r"\{.*?\}", text, re.S)
        return ActionItem.model_validate_json(m.group(0) if m else text)

    def refusing(text):
        raise ValueError("no")

    label = {"kind": "fix", "severity": "low", "subject": "parser", "action_text": "Upgrade to get the fix.",
             "deadline": None, "tags": ["parser"]}
    _check_label_parser(parse_label, label, "not json")
    for bad in (lenient, refusing):
        with pytest.raises(pytest.fail.Exception):
            _check_label_parser(bad, label, "not json")


LABELS = st.fixed_dictionaries({
    "kind": st.sampled_from(["fix", "feature", "security", "breaking", "deprecation", "performance",
                             "docs", "unknown"]),
    "severity": st.sampled_from(["low", "medium", "high", "critical"]),
    "subject": st.text(min_size=1, max_size=64).filter(str.strip),
    "action_text": st.text(min_size=1, max_size=280).filter(str.strip),
    "deadline": st.one_of(st.none(), st.from_regex(r"v?[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True),
                          st.dates().map(lambda d: d.isoformat())),
    "tags": st.lists(st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,2}", fullmatch=True), min_size=1,
                     max_size=5, unique=True),
})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(LABELS)
def test_label_render_parse_roundtrip(label):
    from tuneforge.tasks.changelog_actions.schema import ActionItem, parse_label, render_label

    try:
        ActionItem.model_validate(label)
    except ValueError:
        return  # a generated value the schema forbids (e.g. a tag pattern detail)
    assert parse_label(render_label(label)).model_dump() == label


def test_tar_reader_rejects_a_member_cut_short(tmp_path):
    from tuneforge.harvest import SnapshotError, iter_snapshot

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("p/NEWS")
        info.size = 4000
        tar.addfile(info, io.BytesIO(b"x" * 4000))
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(buf.getvalue()[:1500]))
    with pytest.raises(SnapshotError, match="s.tar.gz"):
        list(iter_snapshot(tmp_path / "s.tar.gz"))
