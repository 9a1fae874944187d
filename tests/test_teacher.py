"""The optional teacher against a real OpenAI-compatible HTTP server on loopback."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tuneforge import teacher
from tuneforge.io import read_jsonl


class FakeTeacher(BaseHTTPRequestHandler):
    calls: list[dict] = []
    fail_on: set[str] = set()
    flaky: dict[str, int] = {}      # prompt text -> failures (503) left before it answers
    refuse_on: set[str] = set()     # prompt texts answered 400 (a bad request: never retried)

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeTeacher.calls.append({"auth": self.headers.get("Authorization"), "body": body})
        user = body["messages"][1]["content"]
        time.sleep(0.02)  # long enough for concurrent requests to overlap
        left = next((k for k in FakeTeacher.flaky if k in user and FakeTeacher.flaky[k] > 0), None)
        code = (500 if any(f in user for f in FakeTeacher.fail_on) else 503 if left
                else 400 if any(f in user for f in FakeTeacher.refuse_on) else 200)
        if left:
            FakeTeacher.flaky[left] -= 1
        if code != 200:
            self.send_response(code)
            self.end_headers()
            return
        label = {"kind": "fix", "severity": "low", "subject": "teacher subject",
                 "action_text": "Upgrade to get the fix.", "deadline": None, "tags": ["demo"]}
        content = json.dumps(label) if "garbage" not in user else "Sure! Here is JSON: {"
        payload = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    FakeTeacher.calls, FakeTeacher.fail_on, FakeTeacher.flaky, FakeTeacher.refuse_on = [], set(), {}, set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeTeacher)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def cfg(url):
    return {"base_url": url, "model": "fake", "concurrency": 3, "timeout_s": 5}


def test_answers_are_cached_and_a_rerun_asks_nothing(server, tmp_path, monkeypatch):
    key = "test-key-not-secret"
    monkeypatch.setenv("TEACHER_API_KEY", key)
    prompts = {f"id{i}": [{"role": "system", "content": "s"}, {"role": "user", "content": f"Entry: e{i}"}]
               for i in range(7)}
    cache = tmp_path / "cache.jsonl"
    rows, asked = teacher.label_all(prompts, cfg(server), cache)
    assert asked == 7
    assert len(FakeTeacher.calls) == 7 and all("content" in r for r in rows.values())
    assert FakeTeacher.calls[0]["auth"] == " ".join(["Bearer", key])
    assert "test-key" not in cache.read_text()
    _, asked = teacher.label_all(prompts, cfg(server), cache)
    assert asked == 0 and len(FakeTeacher.calls) == 7  # resumed entirely from the cache


def test_failures_are_retried_next_run_and_a_torn_cache_line_is_ignored(server, tmp_path):
    prompts = {f"id{i}": [{"role": "system", "content": "s"}, {"role": "user", "content": f"Entry: e{i}"}]
               for i in range(4)}
    FakeTeacher.fail_on = {"e2"}
    cache = tmp_path / "cache.jsonl"
    rows, _ = teacher.label_all(prompts, cfg(server), cache)
    assert "error" in rows["id2"] and sum("content" in r for r in rows.values()) == 3
    with open(cache, "a") as f:
        f.write('{"key": "torn')  # a run killed mid-write
    FakeTeacher.fail_on = set()
    before = len(FakeTeacher.calls)
    rows, asked = teacher.label_all(prompts, cfg(server), cache)
    assert asked == 1 and len(FakeTeacher.calls) == before + 1 and "content" in rows["id2"]


def test_transient_failures_are_retried_with_backoff_and_a_bad_request_is_not(server, tmp_path, monkeypatch):
    # requests in flight, counted on the client (the server's handlers outlive their responses)
    real, lock, flight = teacher.urllib.request.urlopen, threading.Lock(), {"now": 0, "max": 0}

    def counting(*args, **kwargs):
        with lock:
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                flight["now"] -= 1

    monkeypatch.setattr(teacher.urllib.request, "urlopen", counting)
    prompts = {f"id{i}": [{"role": "system", "content": "s"}, {"role": "user", "content": f"Entry: e{i}"}]
               for i in range(6)}
    FakeTeacher.flaky = {"e1": 2, "e4": teacher.ATTEMPTS}  # e1 recovers on its third try; e4 never does
    FakeTeacher.refuse_on = {"e5"}
    rows, asked = teacher.label_all(prompts, cfg(server), tmp_path / "cache.jsonl")
    users = [c["body"]["messages"][1]["content"] for c in FakeTeacher.calls]
    assert asked == 6 and "content" in rows["id1"] and users.count("Entry: e1") == 3
    assert "HTTPError" in rows["id4"]["error"] and users.count("Entry: e4") == teacher.ATTEMPTS
    assert "HTTP Error 400" in rows["id5"]["error"] and users.count("Entry: e5") == 1  # not retried
    assert 1 < flight["max"] <= cfg(server)["concurrency"]  # concurrent, within the bound


def test_evidence_stage_records_teacher_candidates(server, workdir, run_pipeline):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["evidence"]["teacher"].update(enabled=True, base_url=server, max_records=5)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    run_pipeline()
    records = list(read_jsonl(workdir / "data/changelog-actions/evidence.jsonl"))
    with_teacher = [r for r in records if any(c["source"] == "teacher" for c in r["candidates"])]
    assert len(with_teacher) == 5
    # the teacher says "fix" for everything: where rules disagree, score asks a human
    scored = {r["id"]: r for r in read_jsonl(workdir / "data/changelog-actions/scored.jsonl")}
    for r in with_teacher:
        if r["id"] in scored and scored[r["id"]]["label_source"] == "teacher":
            rules = next(c for c in r["candidates"] if c["source"] == "rules")
            if rules["label"]["kind"] != "fix":
                assert "label_sources_disagree" in scored[r["id"]]["reasons"]
