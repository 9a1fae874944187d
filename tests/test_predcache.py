"""The eval answer memo: decodes only what it has not seen; any key part changes -> miss."""
import json

import pytest

from tuneforge.decode import Answer
from tuneforge.predcache import PredictionCache


@pytest.fixture(autouse=True)
def _stand_ins(stand_in_ggufs):
    """The model files here are stand-in bytes (conftest.stand_in_ggufs)."""


def texts(answers: list[Answer]) -> list[str]:
    return [a.text for a in answers]


def test_decodes_only_misses_and_keys_on_model(tmp_path):
    calls = []

    def decode(prompts):
        calls.append(list(prompts))
        return [Answer(f"answer to {p}") for p in prompts]

    cache = PredictionCache(tmp_path / "memo")
    model = {"sha256": "a" * 64, "max_tokens": 160}
    assert texts(cache.answers(model, ["p1", "p2"], decode)) == ["answer to p1", "answer to p2"]
    assert texts(cache.answers(model, ["p2", "p3", "p1"], decode)) == [
        "answer to p2", "answer to p3", "answer to p1"]
    assert calls == [["p1", "p2"], ["p3"]]
    assert (cache.hits, cache.misses) == (2, 3)
    # another model file or decoder setting is another key
    cache.answers({**model, "sha256": "b" * 64}, ["p1"], decode)
    cache.answers({**model, "max_tokens": 8}, ["p1"], decode)
    assert calls[2:] == [["p1"], ["p1"]]


def test_off_decodes_everything(tmp_path):
    calls = []
    cache = PredictionCache(None)
    for _ in range(2):
        cache.answers({"sha256": "a"}, ["p"], lambda ps: calls.append(ps) or [Answer("x")] * len(ps))
    assert len(calls) == 2 and not list(tmp_path.iterdir())



def test_a_changed_or_broken_entry_is_never_served(tmp_path):
    """Each entry carries a checksum of itself and its key: an entry edited on disk, cut
    short, or copied over another prompt's is discarded, counted, and decoded again."""
    calls = []

    def decode(prompts):
        calls.append(list(prompts))
        return [Answer(f"answer to {p}") for p in prompts]

    root = tmp_path / "memo"
    model = {"sha256": "a" * 64}
    PredictionCache(root).answers(model, ["p1", "p2", "p3"], decode)
    entry = {json.loads(p.read_text())["answer"]: p for p in root.rglob("*.json")}
    e1, e2, e3 = (entry[f"answer to p{i}"] for i in (1, 2, 3))
    e1.write_text(json.dumps({**json.loads(e1.read_text()), "answer": "a stale answer"}))
    e3.write_text(e2.read_text())  # p2's whole entry filed under p3's key
    e2.write_text(e2.read_text()[:10])  # cut short
    again = PredictionCache(root)
    assert texts(again.answers(model, ["p1", "p2", "p3"], decode)) == ["answer to p1", "answer to p2", "answer to p3"]
    assert calls[1] == ["p1", "p2", "p3"] and (again.corrupt, again.hits) == (3, 0)
    # the decoded answers replaced the bad entries
    third = PredictionCache(root)
    assert third.answers(model, ["p1", "p2", "p3"], decode)[2].text == "answer to p3"
    assert (third.hits, third.corrupt, len(calls)) == (3, 0, 2)


def test_eval_keys_answers_on_the_decoding_code(tmp_path, monkeypatch):
    """A change to the decoding code (decode, grammar, llama_private for GGUFs, llm for HF
    models) is a miss: the memo never serves answers an older decoder wrote."""
    from pathlib import Path

    from tuneforge import decode, grammar, llama_private, llm
    from tuneforge.tasks import get_task

    calls = []
    monkeypatch.setattr(decode, "json_gbnf", lambda schema: 'root ::= "x"\n')
    monkeypatch.setattr(decode, "gguf_answers",
                        lambda path, prompts, gbnf, **kw: calls.append("gguf") or [Answer("{}")] * len(prompts))
    monkeypatch.setattr(decode, "hf_generate",
                        lambda path, prompts, n, **kw: calls.append("hf") or ["{}"] * len(prompts))
    gguf_code, hf_code = (decode, grammar, llama_private), (llm,)
    code = {}
    for module in (*gguf_code, *hf_code):  # each module read from a copy this test can change
        code[module] = tmp_path / Path(module.__file__).name
        code[module].write_bytes(Path(module.__file__).read_bytes())
        monkeypatch.setattr(module, "__file__", str(code[module]))
    task = get_task("changelog-actions")
    rows = [{"text": "Fixed a crash.", "hint": None, "product": "git"}]
    settings = decode.Settings(max_tokens=160, n_ctx=1024, n_threads=1)
    model, merged = tmp_path / "m.gguf", tmp_path / "merged"
    model.write_bytes(b"gguf")
    merged.mkdir()
    (merged / "model.safetensors").write_bytes(b"weights")
    cache = PredictionCache(tmp_path / "memo")

    def both() -> None:
        decode.decode(model, task, rows, settings, cache=cache, sha256="a" * 64)
        decode.decode_hf(merged, task, rows, settings, cache, "merged_hf")

    both()
    both()
    assert calls == ["gguf", "hf"]
    for module in gguf_code:
        code[module].write_text(code[module].read_text() + "\n# a decoder fix\n")
        before = len(calls)
        both()
        assert calls[before:] == ["gguf"], module.__name__  # only the GGUF answers were decoded again
    code[llm].write_text(code[llm].read_text() + "\n# a decoder fix\n")
    both()
    assert calls == ["gguf", "hf", "gguf", "gguf", "gguf", "hf"]


def test_a_cached_answer_keeps_its_closed_flag_and_old_entries_are_not_read(tmp_path):
    """The memo stores whether the decoder closed an answer with the answer (checksummed
    together); an entry in the old format (no flag) is a miss, never read as natural."""
    from tuneforge.io import sig_hash

    calls = []

    def decode(prompts):
        calls.append(list(prompts))
        return [Answer(f"answer to {p}", p == "p1") for p in prompts]

    root, model = tmp_path / "memo", {"sha256": "a" * 64}
    old_key = sig_hash({"model": model, "prompt": "p3"})  # the v1 memo's key and entry
    old = root / old_key[:2] / f"{old_key}.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"key": old_key, "answer": "stale",
                               "sha256": sig_hash({"key": old_key, "answer": "stale"})}))
    first = PredictionCache(root).answers(model, ["p1", "p2", "p3"], decode)
    again = PredictionCache(root)
    assert again.answers(model, ["p1", "p2", "p3"], decode) == first == [
        Answer("answer to p1", True), Answer("answer to p2", False), Answer("answer to p3", False)]
    assert (again.hits, again.corrupt, len(calls)) == (3, 0, 1)
    flipped = next(p for p in root.rglob("*.json") if json.loads(p.read_text()).get("closed_by_decoder"))
    flipped.write_text(json.dumps({**json.loads(flipped.read_text()), "closed_by_decoder": False}))
    third = PredictionCache(root)
    assert third.answers(model, ["p1"], decode) == [Answer("answer to p1", True)]
    assert (third.corrupt, len(calls)) == (1, 2)


def _decode_memo(tmp_path):
    """What decode_chats needs besides a task and chats: settings, a model file, an empty memo."""
    from tuneforge import decode

    model = tmp_path / "m.gguf"
    model.write_bytes(b"gguf")
    return decode.Settings(max_tokens=160, n_ctx=1024, n_threads=1), model, PredictionCache(tmp_path / "memo")


def test_eval_keys_each_answer_on_the_grammar_its_input_is_decoded_under(tmp_path, monkeypatch):
    """commit-messages narrows each diff's grammar to the diff's junk paths (Task.narrow_schema): the
    same chat under another input's grammar is another answer, never served from the memo."""
    from tuneforge import decode
    from tuneforge.tasks import get_task

    seen = []
    monkeypatch.setattr(decode, "gguf_answers", lambda path, prompts, gbnf, **kw: seen.append(gbnf)
                        or [Answer("{}")] * len(prompts))
    task = get_task("commit-messages")
    diffs = [f"diff --git a/{p} b/{p}\n--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-a\n+b\n" for p in ("x.pyc", "y.pyc")]
    chat = decode.prompts(task, [{"text": diffs[0]}])
    settings, model, cache = _decode_memo(tmp_path)
    for text in (diffs[0], diffs[0], diffs[1]):
        decode.decode_chats(model, task, chat, [text], settings, cache=cache, sha256="a" * 64)
    assert seen == [[decode.task_gbnf(task, diffs[0])], [decode.task_gbnf(task, diffs[1])]]
    assert (cache.hits, cache.misses) == (1, 2)


def test_each_distinct_schema_is_converted_to_a_grammar_once_per_call(monkeypatch):
    """decode_chats converts the schema of each input (~1 ms a conversion): a task that never
    narrows has one schema for all its inputs, and a narrowing task one per distinct narrowing
    (commit-messages: per distinct set of junk paths)."""
    from tuneforge import decode
    from tuneforge.tasks import get_task

    converted = []
    real = decode.json_gbnf
    monkeypatch.setattr(decode, "json_gbnf", lambda schema: converted.append(schema) or real(schema))
    changelog = get_task("changelog-actions")
    gbnfs = decode.task_gbnfs(changelog, [f"Fixed crash {i}." for i in range(5)])
    assert len(converted) == 1 and len(set(gbnfs)) == 1 and len(gbnfs) == 5
    commits = get_task("commit-messages")
    diffs = [f"diff --git a/{p} b/{p}\n--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-a\n+b\n" for p in ("x.pyc", "y.pyc")]
    converted.clear()
    gbnfs = decode.task_gbnfs(commits, [diffs[0], diffs[1], diffs[0]])
    assert len(converted) == 2 and gbnfs[0] == gbnfs[2] != gbnfs[1]
    assert gbnfs == [decode.task_gbnf(commits, d) for d in (diffs[0], diffs[1], diffs[0])]


def test_eval_keys_each_answer_on_its_answer_check(tmp_path, monkeypatch):
    """commit-messages also checks each answer against its own diff as it is decoded
    (Task.answer_check): the same chat and grammar checked against another diff, or by another
    check, is another answer; each decode is handed the check of the prompt it answers."""
    import dataclasses

    from tuneforge import decode
    from tuneforge.tasks import get_task

    seen = []
    monkeypatch.setattr(decode, "gguf_answers", lambda path, prompts, gbnf, **kw: seen.append(kw["checks"])
                        or [Answer("{}", steered=1)] * len(prompts))
    task = get_task("commit-messages")
    diffs = [f"diff --git a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-{v}\n+b\n" for v in ("foo_bar", "baz_qux")]
    chat = decode.prompts(task, [{"text": diffs[0]}])
    settings, model, cache = _decode_memo(tmp_path)
    other = dataclasses.replace(task, answer_check=lambda text: (lambda answer: True))  # another module's
    for t, text in ((task, diffs[0]), (task, diffs[0]), (task, diffs[1]), (other, diffs[0])):
        assert decode.decode_chats(model, t, chat, [text], settings, cache=cache, sha256="a" * 64) == [
            Answer("{}", steered=1)]  # the memo keeps the steered count
    assert len(seen) == 3 and all(len(c) == 1 for c in seen)
    head = '{"type": "fix", "scope": null, "subject": "Fix '
    assert seen[0][0](head + "foo_bar") and not seen[0][0](head + "baz_qux")  # diffs[0]'s check
    assert seen[1][0](head + "baz_qux") and not seen[1][0](head + "foo_bar")  # diffs[1]'s
    assert decode.check_keys(get_task("changelog-actions"), ["x"]) == [None]
