"""make serve: llama_cpp.server over the tasks' GGUFs. The server runs for real on a free
loopback port, over the session's tiny chain GGUF for both tasks (a random model: only the
grammar makes its answers parse, which is what the server's default must guarantee)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tuneforge.decode import task_check, task_gbnf
from tuneforge.llama_private import CLOSE_RESERVE
from tuneforge.serve import Decoding, decoding, raw_input, with_task_defaults
from tuneforge.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("changelog-actions", "commit-messages")
DIFF = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,2 @@
-timeout = 10
+timeout = 30
 retries = 3
"""
INPUTS = {"changelog-actions": "Fixed a crash when `--output` points to a directory.", "commit-messages": DIFF}


# ---------------------------------------------------------------- the defaults, as a function

def test_a_raw_input_is_rendered_with_the_task_view_and_system_prompt():
    task = get_task("commit-messages")
    body = with_task_defaults({"messages": [{"role": "user", "content": DIFF}]}, task, 1.1)
    assert body["messages"][0] == {"role": "system", "content": task.system_prompt}
    assert body["messages"][1]["content"] == task.render_user(DIFF, None, None) != DIFF
    # the grammar eval decodes this input under: narrowed to it (`ignore` is its junk paths)
    assert body["grammar"] == task_gbnf(task, DIFF) != task_gbnf(task) and body["temperature"] == 0.0
    assert body["repeat_penalty"] == 1.1  # the task's eval.repeat_penalty, as eval decodes


def test_a_raw_input_is_cleaned_as_predict_cleans_it_before_the_model_sees_it():
    """A token pasted into the raw input is redacted (never reaches the model or the server's
    log); a line entry's spacing is normalised, a diff's kept."""
    from tuneforge.predict import clean, clean_document

    token = "ghp_" + "x1" * 18  # a GitHub token's shape
    for name, raw in (("changelog-actions", f"Fixed   a leak of {token} in logs."),
                      ("commit-messages", DIFF + f"+api_token = '{token}'\n")):
        task = get_task(name)
        body = with_task_defaults({"messages": [{"role": "user", "content": raw}]}, task, 1.1)
        assert token not in json.dumps(body), name
        cleaned = (clean_document if task.input_kind == "document" else clean)(raw)
        assert body["messages"][1]["content"] == task.render_user(cleaned, None, None)
        assert ("Fixed a leak of" in cleaned) == (name == "changelog-actions")  # spacing: lines only


def test_a_request_with_a_system_message_or_a_format_is_left_as_written():
    task = get_task("changelog-actions")
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Entry: x"}]
    body = with_task_defaults({"messages": messages, "temperature": 0.7, "repeat_penalty": 1.3,
                               "response_format": {"type": "json_object"}}, task, 1.1)
    assert body["messages"] == messages and "grammar" not in body and body["temperature"] == 0.7
    assert body["repeat_penalty"] == 1.3


def test_a_greedy_raw_input_is_decoded_under_its_check_and_closed_at_the_cap():
    """What eval's decoder adds beyond the request: the raw input's answer check, and closing at
    max_tokens (the task's eval.max_tokens when none is asked), with room for the way out."""
    task = get_task("commit-messages")
    request = {"messages": [{"role": "user", "content": DIFF}], "max_tokens": 48}
    assert raw_input(request, task) == DIFF
    body, decoded = decoding(with_task_defaults(request, task, 1.1), task, raw_input(request, task), 192)
    assert body["max_tokens"] == 48 + CLOSE_RESERVE and decoded.close_after == 48
    check = decoded.check
    assert check is not None and check('{"type": "fix", "scope": null, "subject": "Raise timeout') \
        == task_check(task, DIFF)('{"type": "fix", "scope": null, "subject": "Raise timeout')
    assert not check('{"type": "fix", "scope": null, "subject": "Raise `connect_timeout`')  # not in the diff
    unbounded = {"messages": [{"role": "user", "content": DIFF}]}
    body, decoded = decoding(with_task_defaults(unbounded, task, 1.1), task, raw_input(unbounded, task), 192)
    assert body["max_tokens"] == 192 + CLOSE_RESERVE and decoded.close_after == 192  # eval's cap
    # a request that samples, names its own format or biases logits gets llama.cpp's sampler as asked
    for extra in ({"temperature": 0.7}, {"response_format": {"type": "json_object"}}, {"logit_bias": {"1": 5.0}}):
        sampled = {**request, **extra}
        body, decoded = decoding(with_task_defaults(sampled, task, 1.1), task, raw_input(sampled, task), 192)
        assert decoded == Decoding(None, None) and body["max_tokens"] == 48
    # a request with its own system message: no raw input, so no check; still closed at the cap
    written = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": DIFF}]}
    assert raw_input(written, task) is None
    assert decoding(with_task_defaults(written, task, 1.1), task, None, 192)[1] == Decoding(None, 192)


# ---------------------------------------------------------------- the real server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 300) -> tuple[int, bytes]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_server(chain: Path, n_ctx: int):
    """`python -m tuneforge.serve` over the chain's Q8_0 GGUF for both tasks; (process, base URL, /v1/models)."""
    gguf = chain / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q8_0.gguf"
    port = free_port()
    cmd = [sys.executable, "-m", "tuneforge.serve", "--port", str(port), "--threads", "1", "--n-ctx", str(n_ctx),
           *[a for t in TASKS for a in ("--model", f"{t}={gguf}")]]
    proc = subprocess.Popen(cmd, cwd=chain, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=5) as r:
                return proc, base, json.loads(r.read())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the server did not start:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def server(chain):
    pytest.importorskip("uvicorn")
    proc, base, models = start_server(chain, 2048)
    yield base, models
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.model
def test_every_served_answer_parses_as_its_tasks_json(server):
    base, models = server
    assert sorted(m["id"] for m in models["data"]) == sorted(TASKS)
    for task in TASKS:  # alternating tasks: the server swaps the model each time
        status, raw = post(f"{base}/v1/chat/completions",
                           {"model": task, "messages": [{"role": "user", "content": INPUTS[task]}],
                            "max_tokens": 1800})
        assert status == 200, raw[:500]
        reply = json.loads(raw)
        assert reply["model"] == task
        text = reply["choices"][0]["message"]["content"]
        get_task(task).parse_label(text)  # raises unless it is the task's JSON


@pytest.mark.model
def test_a_served_answer_is_the_greedy_answer_eval_decodes(server, chain):
    """No sampling settings in the request: the server decodes as eval does (temperature 0, the
    task's eval.repeat_penalty over its eval.repeat_last_n context tokens), so the answer equals
    eval's own decoder's (open_gguf) in this process for the same messages, grammar and cap.
    (Before the penalty was eval's, the server's default 1.0 matched eval's 1.0; the tiny random
    model answers alike at 1.0 and 1.1, so the defaults test above pins the value itself.)"""
    from tuneforge import config
    from tuneforge.decode import chat_greedy, compile_gbnf
    from tuneforge.llama_private import open_gguf

    base, _ = server
    task = get_task("changelog-actions")
    cfg = config.for_command(str(chain / "params.yaml"), task.name)[0].eval
    assert cfg.repeat_penalty != 1.0  # so the server's default is the penalty, not none
    status, raw = post(f"{base}/v1/chat/completions",
                       {"model": task.name, "max_tokens": 48,
                        "messages": [{"role": "user", "content": INPUTS[task.name]}]})
    assert status == 200, raw[:500]
    served = json.loads(raw)["choices"][0]["message"]["content"]
    request = {"messages": [{"role": "user", "content": INPUTS[task.name]}]}
    messages = with_task_defaults(request, task, cfg.repeat_penalty)["messages"]
    llm = open_gguf(chain / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q8_0.gguf",
                    n_ctx=2048, n_threads=1, repeat_last_n=cfg.repeat_last_n)
    try:
        local = chat_greedy(llm, messages, compile_gbnf(task_gbnf(task, INPUTS[task.name])), 48,
                            repeat_penalty=cfg.repeat_penalty, close=True)
    finally:
        llm.close()
    assert served == local["choices"][0]["message"]["content"]
    task.parse_label(served)  # closed at the cap, as eval closes it: it parses


@pytest.mark.model
def test_a_served_commit_message_passes_the_answer_check_eval_decodes_under(server, chain):
    """commit-messages' answer check (no identifier or scope the diff does not show) runs in the
    server's sampler too: the served answer is eval's decoder's with the check, which the tiny
    random model needs (the same decode without it names what the diff does not show)."""
    from tuneforge import config
    from tuneforge.decode import chat_greedy, compile_gbnf
    from tuneforge.llama_private import open_gguf

    base, _ = server
    task = get_task("commit-messages")
    cfg = config.for_command(str(chain / "params.yaml"), task.name)[0].eval
    status, raw = post(f"{base}/v1/chat/completions", {"model": task.name, "max_tokens": 64,
                                                        "messages": [{"role": "user", "content": DIFF}]})
    assert status == 200, raw[:500]
    served = json.loads(raw)["choices"][0]["message"]["content"]
    messages = with_task_defaults({"messages": [{"role": "user", "content": DIFF}]}, task,
                                  cfg.repeat_penalty)["messages"]
    llm = open_gguf(chain / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q8_0.gguf",
                    n_ctx=2048, n_threads=1, repeat_last_n=cfg.repeat_last_n)
    try:
        grammar = compile_gbnf(task_gbnf(task, DIFF))
        checked = chat_greedy(llm, messages, grammar, 64, repeat_penalty=cfg.repeat_penalty, close=True,
                              check=task_check(task, DIFF))["choices"][0]["message"]["content"]
        steered = llm.steered
        free = chat_greedy(llm, messages, grammar, 64, repeat_penalty=cfg.repeat_penalty,
                           close=True)["choices"][0]["message"]["content"]
    finally:
        llm.close()
    assert steered > 0 and free != checked  # the check changed this answer, so the test can tell
    assert served == checked


@pytest.mark.model
def test_a_sampled_request_runs_llamas_own_chain_under_the_grammar(server):
    """temperature above 0: llama.cpp's sampler chain (eval's greedy decoder refuses it), still
    under the task's grammar, so the answer parses."""
    base, _ = server
    status, raw = post(f"{base}/v1/chat/completions", {"model": "commit-messages", "max_tokens": 1800,
                                                        "temperature": 0.7, "seed": 1,
                                                        "messages": [{"role": "user", "content": DIFF}]})
    assert status == 200, raw[:500]
    get_task("commit-messages").parse_label(json.loads(raw)["choices"][0]["message"]["content"])


@pytest.mark.model
def test_a_streamed_answer_parses_too(server):
    base, _ = server
    req = urllib.request.Request(f"{base}/v1/chat/completions", json.dumps(
        {"model": "changelog-actions", "stream": True, "max_tokens": 1800,
         "messages": [{"role": "user", "content": INPUTS["changelog-actions"]}]}).encode(),
        {"Content-Type": "application/json"})
    pieces = []
    with urllib.request.urlopen(req, timeout=300) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                pieces.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
    get_task("changelog-actions").parse_label("".join(pieces))


@pytest.mark.model
def test_a_model_not_served_is_refused_not_answered_by_another(server):
    base, _ = server
    status, raw = post(f"{base}/v1/chat/completions",
                       {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 404 and "not served here" in json.loads(raw)["error"]["message"]


def test_a_task_without_a_promoted_model_is_not_served(chain, monkeypatch, capsys):
    """The chain's random model failed its gates: nothing promoted, so nothing to serve."""
    from tuneforge import serve

    monkeypatch.chdir(chain)
    with pytest.raises(serve.UserError, match="no task has a model to serve"):
        serve.served_models("params.yaml", ["changelog-actions"], [])


@pytest.mark.model
def test_the_teacher_client_labels_through_the_real_server_and_resumes(chain, tmp_path):
    """tuneforge.teacher against llama_cpp.server (a small context: the random model's JSON
    stops at it): every prompt answered, concurrently, and a rerun asks nothing."""
    pytest.importorskip("uvicorn")
    from tuneforge import teacher

    proc, base, _ = start_server(chain, 256)
    try:
        task = get_task("changelog-actions")
        prompts = {f"id{i}": task.messages(f"Fixed bug {i} in the parser.", None, None) for i in range(3)}
        cfg = {"base_url": f"{base}/v1", "model": "changelog-actions", "concurrency": 2, "timeout_s": 120}
        rows, asked = teacher.label_all(prompts, cfg, tmp_path / "cache.jsonl")
        assert asked == 3 and all(isinstance(r.get("content"), str) for r in rows.values()), rows
        again, asked = teacher.label_all(prompts, cfg, tmp_path / "cache.jsonl")
        assert asked == 0 and again == rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)
