"""tuneforge.replay: BM25 retrieval in DuckDB (checked against the formula in plain Python),
worked examples that fit the context, the validation gate, escalation only when allowed, and
the append-only log (validated against its generated schema). The decoder is scripted except
in the last test, which runs the tiny chain's GGUF."""
from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

from tuneforge import replay, retrieval
from tuneforge.decode import Answer
from tuneforge.gguf_tools import write_sums
from tuneforge.io import read_jsonl, sha256_text, write_jsonl
from tuneforge.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
TASK = get_task("changelog-actions")
CORPUS = [
    ("Fixed a heap buffer overflow in the TLS record parser.", "security", "high"),
    ("Fixed a crash when the output directory is missing.", "fix", "medium"),
    ("Added a --json flag to the status command.", "feature", "low"),
    ("Removed the deprecated --legacy option.", "breaking", "high"),
    ("Documented the TLS settings in the manual.", "docs", "low"),
    ("Fixed a memory leak in the TLS session cache.", "fix", "medium"),
]


def rag_rows() -> list[dict]:
    rows = []
    for i, (text, kind, severity) in enumerate(CORPUS):
        label = TASK.rule_label(text, None, "demo", "1.0")[0] | {"kind": kind, "severity": severity}
        rows.append({"category": "accepted", "hint": None, "id": f"{i:064x}", "label": label, "line": i + 1,
                     "product": "demo", "source_file": "demo/NEWS", "text": text})
    return rows


@pytest.fixture
def rag(tmp_path) -> Path:
    path = tmp_path / "rag.jsonl"
    write_jsonl(path, rag_rows())
    return path


def test_search_gives_the_same_rows_every_time_ties_by_id(tmp_path):
    """30,000 rows, each text ten times: equal scores everywhere. Summed in whatever order the
    threads finish, equal scores differed in their last bits and the top k changed from one
    search to the next (planted: without the ordered sum, dozens of 200 queries differ)."""
    import random

    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(3, 12))) for _ in range(3000)]
    write_jsonl(tmp_path / "rag.jsonl", [
        {"id": f"{rng.getrandbits(64):016x}", "text": texts[i % 3000], "hint": None, "product": "p",
         "label": {"kind": "fix"}, "category": "accepted", "source_file": "x", "line": 1} for i in range(30000)])
    index = retrieval.Index(tmp_path / "rag.jsonl", tmp_path / "cache")
    runs = [[[r["id"] for r in index.search(q, 5)] for q in texts[:200]] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    rows = [(r["score"], r["id"]) for r in index.search(texts[0], 10)]  # its ten copies tie
    assert len({s for s, _ in rows}) == 1 and rows == sorted(rows, key=lambda x: x[1])  # lower id first


def test_sql_bm25_scores_equal_the_formula_in_plain_python(rag, tmp_path):
    index = retrieval.Index(rag, tmp_path / "cache")
    texts = [t for t, _, _ in CORPUS]
    for query in ("TLS overflow crash", "fixed a leak", "json status flag", "nothing matches zzz"):
        want = retrieval.bm25(texts, query)
        got = index.search(query, len(CORPUS))
        expect = sorted(((s, f"{i:064x}") for i, s in enumerate(want) if s > 0), key=lambda x: (-x[0], x[1]))
        assert [(round(s, 6), i) for s, i in expect] == [(r["score"], r["id"]) for r in got], query
    assert index.search("TLS overflow", 1)[0]["text"] == CORPUS[0][0]


def test_the_index_is_built_once_per_export(rag, tmp_path):
    cache = tmp_path / "cache"
    retrieval.Index(rag, cache)
    first = sorted(cache.iterdir())
    retrieval.Index(rag, cache)
    assert sorted(cache.iterdir()) == first and len(first) == 1  # reused, no temp file left
    write_jsonl(rag, rag_rows()[:3])
    assert retrieval.Index(rag, cache).n == 3 and len(list(cache.iterdir())) == 2  # a new export, a new index


def test_examples_go_best_nearest_the_input_and_the_least_similar_goes_first_to_fit():
    examples = [{"text": t, "hint": None, "product": "demo", "label": TASK.rule_label(t, None, "demo", "1.0")[0]}
                for t, _, _ in CORPUS[:3]]
    entry = {"text": "Fixed an overflow.", "hint": None, "product": None}
    chat, kept = retrieval.messages(TASK, entry, examples, lambda c: True)
    assert [m["role"] for m in chat] == ["system", *["user", "assistant"] * 3, "user"]
    assert CORPUS[0][0] in chat[-3]["content"] and CORPUS[2][0] in chat[1]["content"]  # best nearest
    chat, kept = retrieval.messages(TASK, entry, examples, lambda c: len(c) <= 6)
    assert kept == examples[:2] and CORPUS[2][0] not in json.dumps(chat)


def test_example_chats_fit_the_token_budget_and_count_what_each_row_shows(rag, tmp_path):
    """What eval's retrieval pass builds: each row's chat with its k best examples, as many
    as token_fit lets through (words as tokens here), and how many each row shows."""
    index = retrieval.Index(rag, tmp_path / "cache")
    rows = [{"text": "TLS overflow fixed", "hint": None, "product": "demo"}, {"text": "zzz", "hint": None}]
    words = lambda text: len(text.split())  # noqa: E731
    chats, shown = retrieval.example_chats(TASK, rows, index, 2, retrieval.token_fit(words, 10_000))
    assert shown == [2, 0]  # "zzz" matches nothing: no examples, the plain prompt
    assert chats[1] == TASK.messages("zzz", None, None)
    assert CORPUS[0][0] in chats[0][-3]["content"]
    bare = words("".join(m["content"] for m in chats[1][:1] + chats[0][-1:])) + 16
    chats, shown = retrieval.example_chats(TASK, rows[:1], index, 2, retrieval.token_fit(words, bare))
    assert shown == [0] and chats[0] == TASK.messages(*rows[0].values())  # only the input fits


# ---------------------------------------------------------------- the command, decoder scripted

class FakeTeacher(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        FakeTeacher.calls += 1
        label = TASK.rule_label("Fixed a crash when the output directory is missing.", None, "demo", "1.0")[0]
        payload = json.dumps({"choices": [{"message": {"content": TASK.render_label(label)}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def root(tmp_path, monkeypatch, rag):
    """A project root: params.yaml (teacher on a loopback fake), the RAG export, a pinned GGUF
    stand-in; the decoder answers from a script: valid JSON unless the input says 'garbage'."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeTeacher)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    FakeTeacher.calls = 0
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evidence"]["teacher"]["base_url"] = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dest = tmp_path / "data/changelog-actions/exports/rag/rag.jsonl"
    dest.parent.mkdir(parents=True)
    shutil.copy(rag, dest)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"stand-in")
    write_sums(tmp_path, [gguf])
    prompts = []

    class Scripted:
        def __init__(self, path, settings):
            self.llm = type("L", (), {"tokenize": staticmethod(lambda b, add_bos=False: b.split())})()

        def answer(self, chat, gbnf=None, check=None):
            prompts.append(chat)
            if "garbage" in chat[-1]["content"]:
                return Answer("{\"kind\": ", True)
            text = chat[-1]["content"].removeprefix("Entry: ")
            return Answer(TASK.render_label(TASK.rule_label(text, None, "demo", "1.0")[0]))

    monkeypatch.setattr(replay, "Decoder", Scripted)
    monkeypatch.setattr(retrieval, "CACHE", tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    yield tmp_path, prompts
    httpd.shutdown()


def run_replay(root: Path, lines: list[str], *flags: str) -> int:
    (root / "in.txt").write_text("\n".join(lines) + "\n")
    return replay.main(["--task", "changelog-actions", "--model", "m.gguf", "in.txt", *flags])


def test_each_run_is_logged_valid_and_redacted(root, capsys):
    tmp, prompts = root
    token = "ghp_" + "x1" * 18  # a planted secret in an input never reaches the log or a prompt
    assert run_replay(tmp, ["Fixed a TLS overflow.", f"Added a --json flag (token {token})."], "--k", "2") == 0
    log = list(read_jsonl(tmp / "data/replay/changelog-actions.jsonl"))
    schema = json.loads((ROOT / "schemas/replay_record.schema.json").read_text())
    for rec in log:
        jsonschema.validate(rec, schema)
    assert [r["verdict"] for r in log] == ["accepted", "accepted"] and not any(r["escalated"] for r in log)
    assert log[0]["input_sha256"] == sha256_text(log[0]["text"]) and log[0]["text"] == "Fixed a TLS overflow."
    assert token not in (tmp / "data/replay/changelog-actions.jsonl").read_text() + json.dumps(prompts)
    assert "[REDACTED" in log[1]["text"]
    assert len(log[0]["retrieval"]) == 2 and log[0]["retrieval"][0]["id"] == f"{0:064x}"
    assert len(prompts[0]) == 6  # system + 2 worked examples + the input
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == log
    run_replay(tmp, ["Fixed a TLS overflow."], "--no-retrieval")
    log = list(read_jsonl(tmp / "data/replay/changelog-actions.jsonl"))
    assert len(log) == 3 and log[2]["retrieval"] is None and len(prompts[-1]) == 2  # appended; the baseline


def test_k_defaults_to_what_eval_measures_for_the_task(root):
    """No --k: the task's eval.retrieval_k (its override applied); 0 replays without examples,
    as eval's pass is skipped for it, and --k still asks for them."""
    tmp, prompts = root
    params = yaml.safe_load((tmp / "params.yaml").read_text())
    params["eval"]["retrieval_k"] = 1
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_replay(tmp, ["Fixed a TLS overflow."])
    assert len(list(read_jsonl(tmp / "data/replay/changelog-actions.jsonl"))[-1]["retrieval"]) == 1
    assert len(prompts[-1]) == 4  # system + 1 worked example + the input
    params["tasks"]["changelog-actions"]["overrides"]["eval"] = {"retrieval_k": 0}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_replay(tmp, ["Fixed a TLS overflow."])
    assert list(read_jsonl(tmp / "data/replay/changelog-actions.jsonl"))[-1]["retrieval"] is None
    assert len(prompts[-1]) == 2
    run_replay(tmp, ["Fixed a TLS overflow."], "--k", "2")
    assert len(list(read_jsonl(tmp / "data/replay/changelog-actions.jsonl"))[-1]["retrieval"]) == 2


def test_a_failed_answer_escalates_only_when_allowed(root):
    tmp, _ = root
    assert run_replay(tmp, ["garbage in"]) == 1
    rec = list(read_jsonl(tmp / "data/replay/changelog-actions.jsonl"))[-1]
    assert rec["verdict"] == "rejected" and rec["label"] is None and not rec["escalated"]
    assert rec["problems"][0].startswith("not_schema_valid") and FakeTeacher.calls == 0
    assert run_replay(tmp, ["garbage in"], "--allow-escalation") == 0
    rec = list(read_jsonl(tmp / "data/replay/changelog-actions.jsonl"))[-1]
    assert rec["verdict"] == "escalated_accepted" and rec["escalated"] and FakeTeacher.calls == 1
    assert rec["label"]["kind"] == "fix" and rec["teacher_problems"] == []


# ---------------------------------------------------------------- the tiny chain's GGUF

@pytest.mark.model
def test_replay_runs_the_real_decoder_with_retrieval(chain, tmp_path, monkeypatch):
    root = tmp_path / "r"
    shutil.copytree(chain, root, ignore=shutil.ignore_patterns("merged", "adapter", "base"))
    write_jsonl(root / "data/changelog-actions/exports/rag/rag.jsonl", rag_rows())
    monkeypatch.chdir(root)
    (root / "in.txt").write_text("Fixed a TLS overflow.\n")
    gguf = "models/changelog-actions/gguf/tuneforge-changelog-actions-Q8_0.gguf"
    rc = replay.main(["--task", "changelog-actions", "--model", gguf, "in.txt", "--log", "log.jsonl"])
    (rec,) = list(read_jsonl(root / "log.jsonl"))
    assert rc == (0 if rec["label"] else 1) and rec["retrieval"] and rec["verdict"] in ("accepted", "rejected")
    assert rec["verdict"] == "rejected" or TASK.parse_label(rec["answer"])
