"""tuneforge.io guards the bytes every stage writes: atomic replacement, hashes, JSONL.

These tests pin the behaviour the pipeline relies on (issue 17 item 10: mutants in io survived),
each against an independent oracle (hashlib, json, the file system), not against io's own output.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import locale
import os
import stat
import subprocess
import sys
import time

import pytest
from pydantic import BaseModel

from tuneforge import io

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 vector


@pytest.fixture
def ascii_locale():
    """A machine whose locale is not UTF-8 (LANG=C on many CI images): outputs must still be UTF-8
    byte for byte, and inputs read as UTF-8, or the same data hashes differently there."""
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    if locale.getpreferredencoding(False).lower().replace("-", "") == "utf8":
        locale.setlocale(locale.LC_CTYPE, old)
        pytest.skip("this Python reads files as UTF-8 in every locale")
    yield
    locale.setlocale(locale.LC_CTYPE, old)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_canonical_json_is_sorted_compact_and_keeps_utf8():
    assert io.canonical_json({"b": "é", "a": [1, {"d": None, "c": True}]}) == \
        '{"a":[1,{"c":true,"d":null}],"b":"é"}'


def test_hashes_match_hashlib():
    assert io.sha256_text("abc") == ABC_SHA256
    assert io.sha256_text("é") == hashlib.sha256("é".encode()).hexdigest()
    obj = {"z": 1, "a": "ü"}
    assert io.sig_hash(obj) == hashlib.sha256('{"a":"ü","z":1}'.encode()).hexdigest()


def test_sha256_file_default_and_small_chunks(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert io.sha256_file(p) == ABC_SHA256
    data = os.urandom(3000) + b"\n\x00tail"
    p.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert io.sha256_file(p) == want
    assert io.sha256_file(str(p), chunk=7) == want  # many chunks, a short last one


def test_alive(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert io._alive(child.pid) is True
        time.sleep(0.2)
        assert child.poll() is None  # probing must not signal the writer (signal 0 only)
    finally:
        child.kill()
        child.wait()
    assert io._alive(os.getpid()) is True
    assert io._alive(_dead_pid()) is False

    def denied(pid, sig):
        raise PermissionError
    monkeypatch.setattr(io.os, "kill", denied)
    assert io._alive(12345) is True  # another user's live process: its temp file must stay


def test_sweep_removes_only_dead_writers_temps_of_that_file(tmp_path):
    out = tmp_path / "a[1].json"  # glob metacharacters in the name
    dead, me = _dead_pid(), os.getpid()
    stale = tmp_path / f".a[1].json.{dead}.x1.tmp"
    live = tmp_path / f".a[1].json.{me}.x2.tmp"
    odd = tmp_path / ".a[1].json.notapid.x3.tmp"
    other = tmp_path / f".b.json.{dead}.x4.tmp"
    for p in (stale, live, odd, other):
        p.write_text("partial")
    assert io.sweep_stale_temps(out) == [stale]
    assert not stale.exists()
    assert live.exists() and odd.exists() and other.exists()


def test_sweep_tolerates_a_concurrent_sweeper(tmp_path, monkeypatch):
    """Two writers of one output sweep at once: the temp file can vanish between glob and unlink."""
    out = tmp_path / "o.json"
    stale = tmp_path / f".o.json.{_dead_pid()}.a.tmp"
    stale.write_text("partial")

    def other_sweeper_first(pid):
        stale.unlink()
        return False
    monkeypatch.setattr(io, "_alive", other_sweeper_first)
    assert io.sweep_stale_temps(out) == [stale]


def test_atomic_path_replaces_on_success_with_umask_mode(tmp_path):
    out = tmp_path / "new" / "deeper" / "out.txt"  # parents are created
    with io.atomic_path(out) as tmp:
        assert tmp.parent == out.parent
        assert tmp.name.startswith(f".out.txt.{os.getpid()}.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and not out.exists()
        tmp.write_text("done")
    assert out.read_text() == "done"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    with io.atomic_path(out) as tmp:  # the parent exists now: still fine
        tmp.write_text("again")
    assert out.read_text() == "again"


def test_atomic_path_keeps_old_output_when_the_writer_raises(tmp_path):
    """The issue's mutant: os.replace moved into `finally` put a partial file over the old
    output when the body raised. The kill tests use SIGKILL and never ran that path."""
    out = tmp_path / "out.json"
    out.write_text("old complete output")
    with pytest.raises(RuntimeError, match="boom"):
        with io.atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert out.read_text() == "old complete output"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp left behind


def test_atomic_path_body_raising_before_any_output(tmp_path):
    out = tmp_path / "never.json"
    with pytest.raises(ValueError):
        with io.atomic_path(out):
            raise ValueError("bad input")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_sweeps_dead_writers_temp(tmp_path):
    out = tmp_path / "o.txt"
    stale = tmp_path / f".o.txt.{_dead_pid()}.zz.tmp"
    stale.write_text("partial")
    io.write_text(out, "x")
    assert not stale.exists() and out.read_text() == "x"


def test_write_text_and_json(tmp_path):
    io.write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()
    io.write_json(tmp_path / "j.json", {"b": 1, "a": "é"})
    assert (tmp_path / "j.json").read_text(encoding="utf-8") == '{\n  "a": "é",\n  "b": 1\n}\n'


class _Row(BaseModel):
    b: int
    a: str


class _Dated(BaseModel):
    day: dt.date


def test_write_jsonl_counts_and_writes_canonical_rows(tmp_path):
    p = tmp_path / "rows.jsonl"
    n = io.write_jsonl(p, iter([{"y": 2, "x": "é"}, _Row(b=1, a="q"), {}]))
    assert n == 3
    assert p.read_text(encoding="utf-8") == '{"x":"é","y":2}\n{"a":"q","b":1}\n{}\n'
    assert io.write_jsonl(tmp_path / "d.jsonl", [_Dated(day=dt.date(2024, 2, 29))]) == 1
    assert (tmp_path / "d.jsonl").read_text() == '{"day":"2024-02-29"}\n'  # JSON mode, not Python objects
    assert io.write_jsonl(tmp_path / "empty.jsonl", []) == 0
    assert (tmp_path / "empty.jsonl").read_text() == ""


def test_read_jsonl_skips_blank_lines_and_names_bad_line(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"a": 1}\n\n  \n{"a": 2}\n', encoding="utf-8")
    assert list(io.read_jsonl(p)) == [{"a": 1}, {"a": 2}]
    p.write_text('{"a": 1}\n\n{"a": \n', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        list(io.read_jsonl(p))
    assert str(e.value).startswith(f"{p}:3: invalid JSON: ")
    assert isinstance(e.value.__cause__, json.JSONDecodeError)


def test_read_models_parses_rows_and_names_bad_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"b": 1, "a": "x"}\n\n{"b": 2, "a": "y"}\n', encoding="utf-8")
    assert list(io.read_models(p, _Row)) == [_Row(b=1, a="x"), _Row(b=2, a="y")]
    p.write_text('{"b": 1, "a": "x"}\n\n{"b": "nope", "a": "y"}\n', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        list(io.read_models(p, _Row))
    msg = str(e.value)
    assert msg.startswith(f"{p}:3: not a valid _Row: ") and "\n" not in msg
    assert "validation error" in msg


def test_count_lines_and_load_params(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"a\nb\n\nc")
    assert io.count_lines(p) == 4
    p.write_bytes(b'{"t":"a\rb"}\n{"t":"\xff"}\n')  # a raw CR inside a row, a non-UTF-8 byte
    assert io.count_lines(p) == 2  # rows are \n-terminated bytes, as `wc -l` counts them
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.5\nname: é\n", encoding="utf-8")
    assert io.load_params(tmp_path / "params.yaml") == {"train": {"lr": 0.5}, "name": "é"}


def test_load_params_default_path_is_params_yaml(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("k: 1\n")
    monkeypatch.chdir(tmp_path)
    assert io.load_params() == {"k": 1}


def test_git_revision(tmp_path):
    cwd = os.getcwd()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert io.git_revision(tmp_path) == head
    os.chdir(tmp_path)  # the default cwd is "."
    try:
        assert io.git_revision() == head
    finally:
        os.chdir(cwd)
    assert io.git_revision(tmp_path / "nope") == "unknown"  # OSError: no such directory
    plain = tmp_path.parent / (tmp_path.name + "-plain")
    plain.mkdir()
    assert io.git_revision(plain) == "unknown"  # not a repository: git exits non-zero


def test_utf8_regardless_of_locale(tmp_path, ascii_locale):
    io.write_text(tmp_path / "t.txt", "é")
    assert (tmp_path / "t.txt").read_bytes() == "é".encode()
    io.write_json(tmp_path / "j.json", {"k": "é"})
    assert json.loads((tmp_path / "j.json").read_bytes().decode("utf-8")) == {"k": "é"}
    io.write_jsonl(tmp_path / "r.jsonl", [{"k": "é"}])
    assert (tmp_path / "r.jsonl").read_bytes() == '{"k":"é"}\n'.encode()
    assert list(io.read_jsonl(tmp_path / "r.jsonl")) == [{"k": "é"}]
    (tmp_path / "m.jsonl").write_bytes('{"b": 1, "a": "é"}\n'.encode())
    assert list(io.read_models(tmp_path / "m.jsonl", _Row)) == [_Row(b=1, a="é")]
    (tmp_path / "p.yaml").write_bytes("name: é\n".encode())
    assert io.load_params(tmp_path / "p.yaml") == {"name": "é"}
