"""The decoding grammar eval and predict answer under: every string in it is bounded, and
every answer decoded under it parses, even from a model that loops (issue 17, item 8).

The adversaries are tiny GGUFs (tests/tiny_gguf.py): random ones, and degenerate ones that
repeat the same tokens wherever the grammar lets them (`\\\\` until the cap, as the Q8_0
model did on real changelog entries). The inputs are full of backslashes, quotes and
Windows paths.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.model

from tests.grammar_probe import allows  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402
from tuneforge.decode import Settings, chat_greedy, gguf_answers  # noqa: E402
from tuneforge.grammar import compile_gbnf, json_gbnf  # noqa: E402
from tuneforge.llama_private import CLOSE_RESERVE, open_gguf  # noqa: E402
from tuneforge.tasks import get_task  # noqa: E402

TASK = get_task("changelog-actions")
SCHEMA = TASK.output_model.model_json_schema()
NASTY = [
    r'Fixed a crash when the path is C:\Program Files\App\bin\app.exe or \\server\share\dir.',
    r'The `--sep` option now takes "\\" and "\"" literally: "C:\\Users\\me\\" works.',
    '\\' * 60 + ' backslashes in a row, then "quotes" "" """ and a trailing \\',
    r'Windows: set PATH=C:\Windows\System32;%PATH% and quote "C:\a b\c".',
    'Added `\\u0000` and `\\n` escapes to --format; removed in 3.0.0.0.0.',
]
# What each degenerate model repeats, first choice first.
LOOPS = {
    "backslashes": ["\\\\\\\\", "\\\\"],  # the loop
    "escaped-quotes": ['\\"', '""'],
    "windows-paths": ["C:\\\\", "Program", "\\\\", "Files"],
    "long-tags": ["aaaa", "-x"],
    "digits": ["0000", "v1", ".."],
    "unicode-escapes": ["\\u", "0000"],
    "whitespace": ["  ", "\n\n", " the"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-gguf")
    out = {f"random-{s}": write_tiny_gguf(root / f"random-{s}.gguf", seed=s) for s in range(3)}
    out.update({name: write_tiny_gguf(root / f"{name}.gguf", favour=fav) for name, fav in LOOPS.items()})
    return out


def gguf_generate(path: Path, prompts: list[list[dict]], gbnf: str, *, max_tokens: int, n_ctx: int,
                  desc: str = "generate") -> list[str]:
    """The texts of the answers eval's decoder gives (one thread)."""
    settings = Settings(max_tokens=max_tokens, n_ctx=n_ctx, n_threads=1)
    return [a.text for a in gguf_answers(path, prompts, gbnf, settings=settings, desc=desc)]


def unbounded_repetitions(gbnf: str) -> list[str]:
    """Rules with a `+`, `*` or open `{m,}` outside quoted literals and character classes."""
    bad = []
    for line in gbnf.splitlines():
        body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line.partition("::=")[2])
        body = re.sub(r"\[(?:[^\]\\]|\\.)*\]", "[]", body)
        if re.search(r"[+*]|\{\d+,\}", body):
            bad.append(line[:120])
    return bad


def test_every_string_in_the_grammar_is_bounded():
    assert unbounded_repetitions(json_gbnf(SCHEMA)) == []


def test_the_check_sees_an_unbounded_rule():
    assert unbounded_repetitions('root ::= "\\"" [a-z]+ "\\""\nx ::= "a+" [+*]\ny ::= z{2,}\n') == [
        'root ::= "\\"" [a-z]+ "\\""', "y ::= z{2,}"]


def test_tags_and_deadlines_stop_where_the_schema_does(models):
    """A tag is kebab-case of at most 40 characters (pattern and maxLength together, which
    llama.cpp's converter cannot express: it drops maxLength); a deadline is bounded too."""
    llm = open_gguf(models["random-0"], n_ctx=256, n_threads=1)
    grammar = compile_gbnf(json_gbnf(SCHEMA))
    head = '{"kind": "fix", "severity": "low", "subject": "a", "action_text": "a", '
    tags = head + '"deadline": null, "tags": ["'
    assert allows(llm, grammar, tags + "a" * 39, "a") and allows(llm, grammar, tags + "a" * 39, '"')
    assert not allows(llm, grammar, tags + "a" * 40, "a") and not allows(llm, grammar, tags + "a" * 40, "-")
    assert allows(llm, grammar, tags + "a-" * 19 + "a", '"')
    assert not allows(llm, grammar, tags + "a-" * 19 + "a", "-")
    assert not allows(llm, grammar, tags + "a", "A") and not allows(llm, grammar, tags + "a-", "-")
    deadline = head + '"deadline": "'
    assert allows(llm, grammar, deadline + "1" * 7, "1") and not allows(llm, grammar, deadline + "1" * 8, "1")
    assert allows(llm, grammar, deadline + "1.1.1", ".") and not allows(llm, grammar, deadline + "1.1.1.1", ".")
    llm.close()


def test_a_commit_answer_ignores_exactly_its_diffs_junk(models):
    """Decoding a diff's answer under its own grammar (decode.task_gbnf(task, text)): llama.cpp
    lets `ignore` hold the diff's junk paths by the contract's list, all of them, and nothing
    else; with no junk, nothing."""
    from tuneforge.decode import task_gbnf

    task = get_task("commit-messages")
    diff = ("diff --git a/src/app.c b/src/app.c\n--- a/src/app.c\n+++ b/src/app.c\n@@ -1 +1 @@\n-a\n+b\n"
            "diff --git a/.env b/.env\nnew file mode 100644\n--- /dev/null\n+++ b/.env\n@@ -0,0 +1 @@\n+K=1\n")
    llm = open_gguf(models["random-0"], n_ctx=256, n_threads=1)
    head = '{"type": "chore", "scope": null, "subject": "a", "body": null, "breaking": false, "ignore": ['
    grammar, whole = compile_gbnf(task_gbnf(task, diff)), compile_gbnf(task_gbnf(task))
    assert allows(llm, grammar, head + '".env', '"') and allows(llm, grammar, head + '".env"', "]")
    assert not allows(llm, grammar, head, "]")  # the junk cannot be left out
    assert not allows(llm, grammar, head + '"', "s")  # nor a real file unstaged
    assert not allows(llm, grammar, head + '".env"', ",")  # nor anything added
    assert allows(llm, whole, head + '"src/app.', "c") and allows(llm, whole, head, "]")  # what narrowing takes away
    none = compile_gbnf(task_gbnf(task, diff.split("diff --git a/.env")[0]))
    assert allows(llm, none, head, "]") and not allows(llm, none, head, '"')
    llm.close()


@pytest.mark.parametrize("max_tokens", [160, 0])
def test_every_answer_under_the_grammar_parses(models, max_tokens):
    """160 is eval.max_tokens; 0 makes every answer close from its first token."""
    gbnf = json_gbnf(SCHEMA)
    prompts = [TASK.messages(text, 'Bug "fixes" \\' if i % 2 else None, "demo") for i, text in enumerate(NASTY)]
    for name, path in models.items():
        outs = gguf_generate(path, prompts, gbnf, max_tokens=max_tokens, n_ctx=1024, desc=name)
        for out in outs:
            try:
                TASK.parse_label(out)
            except ValueError as e:
                pytest.fail(f"{name}, max_tokens={max_tokens}: {str(e).splitlines()[0]}: {out[:400]!r}")


def test_closing_takes_at_most_the_reserve(models):
    """From the worst place (the first token) an answer closes within CLOSE_RESERVE tokens."""
    grammar = compile_gbnf(json_gbnf(SCHEMA))
    for name, path in models.items():
        llm = open_gguf(path, n_ctx=1024, n_threads=1)
        for text in NASTY[:2]:
            res = chat_greedy(llm, TASK.messages(text, None, "demo"), grammar, 0, close=True)
            assert res["choices"][0]["finish_reason"] == "stop", name
            assert res["usage"]["completion_tokens"] <= CLOSE_RESERVE, name
            TASK.parse_label(res["choices"][0]["message"]["content"])
        llm.close()


def test_answers_that_fit_the_cap_are_unchanged(models):
    """Closing only ever touches an answer that reaches max_tokens: one that ends before it
    is the stock greedy answer, token for token; a shorter cap changes it, and it parses."""
    grammar = compile_gbnf(json_gbnf(SCHEMA))
    gbnf = json_gbnf(SCHEMA)
    for name in ("random-0", "random-1", "windows-paths"):
        llm = open_gguf(models[name], n_ctx=2048, n_threads=1)
        messages = TASK.messages(NASTY[0], "Bug fixes", "demo")
        free = chat_greedy(llm, messages, grammar, 1500)
        llm.close()
        assert free["choices"][0]["finish_reason"] == "stop", name
        text, used = free["choices"][0]["message"]["content"], free["usage"]["completion_tokens"]
        TASK.parse_label(text)
        (same,) = gguf_generate(models[name], [messages], gbnf, max_tokens=used, n_ctx=2048)
        assert same == text, name
        (cut,) = gguf_generate(models[name], [messages], gbnf, max_tokens=used // 2, n_ctx=2048)
        assert cut != text and json.loads(cut) and TASK.parse_label(cut), name



def test_an_answer_closes_before_the_context_runs_out(models):
    """A long entry leaves less than max_tokens + CLOSE_RESERVE of n_ctx: the answer starts
    closing early enough to end inside the context, and parses."""
    gbnf = json_gbnf(SCHEMA)
    messages = TASK.messages(NASTY[2] + " " + NASTY[0], None, "demo")
    for name in ("random-0", "backslashes"):
        llm = open_gguf(models[name], n_ctx=512, n_threads=1)  # llama.cpp pads n_ctx to 256s
        prompt = chat_greedy(llm, messages, None, 1)["usage"]["prompt_tokens"]
        assert prompt + 400 > llm.n_ctx() > prompt + 100  # the context binds, not max_tokens
        llm.close()
        (out,) = gguf_generate(models[name], [messages], gbnf, max_tokens=400, n_ctx=512)
        TASK.parse_label(out)


def test_the_decoder_says_which_answers_it_closed(models):
    """An answer the decoder closed at the cap says so; a natural one (it ended on its own)
    does not, and the flag never changes the text."""
    gbnf = json_gbnf(SCHEMA)
    messages = TASK.messages(NASTY[0], "Bug fixes", "demo")
    (looped,) = gguf_answers(models["backslashes"], [messages], gbnf, settings=Settings(160, 1024, 1))
    assert looped.closed_by_decoder and TASK.parse_label(looped.text)
    (natural,) = gguf_answers(models["random-0"], [messages], gbnf, settings=Settings(1500, 2048, 1))
    assert not natural.closed_by_decoder and TASK.parse_label(natural.text)
    assert gguf_generate(models["random-0"], [messages], gbnf, max_tokens=1500, n_ctx=2048) == [natural.text]


def test_eval_counts_the_closed_answers_and_the_memo_keeps_the_flag(models, tmp_path):
    """A small eval over a looping tiny model: every answer parses, every one is counted as
    closed by the decoder (metrics, predictions), and a cached answer keeps its flag."""
    from stages import eval as eval_stage
    from tuneforge.decode import decode
    from tuneforge.predcache import PredictionCache

    rows = [{"text": t, "hint": None, "product": "demo", "label": TASK.rule_label(t, None, "demo", "1.0")[0]}
            for t in NASTY[:3]]
    # no repeat penalty: the degenerate model loops as a model without one can (the penalty ends
    # this loop; tests/test_repeat_penalty.py checks the penalty itself)
    cfg = {"max_tokens": 32, "n_ctx": 1024, "n_threads": 1, "min_support": 1,
           "repeat_penalty": 1.0, "repeat_last_n": 64}
    cache = PredictionCache(tmp_path / "memo")
    first = decode(models["backslashes"], TASK, rows, Settings.from_eval(cfg), cache=cache)
    again = decode(models["backslashes"], TASK, rows, Settings.from_eval(cfg), cache=cache)
    assert (cache.misses, cache.hits) == (3, 3) and again == first
    assert [a.closed_by_decoder for a in again] == [True] * 3
    run = eval_stage.Run(TASK, list(TASK.classes), cfg)
    run.add("base", rows, again, grammar=True)
    m = run.metrics["base"]
    assert (m["parse_errors"], m["closed_by_decoder"], m["closed_by_decoder_rate"]) == (0, 3, 1.0)
    assert [p.closed_by_decoder for p in run.predictions] == [True] * 3


def test_one_decoder_per_core_answers_as_a_lone_decoder(models, monkeypatch):
    """Settings with two threads split a batch of prompts over two single-threaded decoders
    (decode.DecoderPool); each answer is the one a lone decoder gives, at two threads or
    one, whichever prompt it decoded before (here: the batch in the opposite order)."""
    import tuneforge.decode as decode_module

    prompts = [TASK.messages(text, "Bug fixes" if i % 2 else None, "demo") for i, text in enumerate(NASTY)]
    gbnf = json_gbnf(SCHEMA)
    two, one = (Settings(max_tokens=48, n_ctx=512, n_threads=n) for n in (2, 1))
    split = []
    spy = decode_module.DecoderPool.answer_all
    monkeypatch.setattr(decode_module.DecoderPool, "answer_all",
                        lambda self, *a: split.append(len(self.decoders)) or spy(self, *a))
    for name in ("random-0", "random-1", "backslashes"):
        parallel = gguf_answers(models[name], prompts, gbnf, settings=two)
        with decode_module.Decoder(models[name], two) as lone:
            at_two = gguf_answers(models[name], prompts, gbnf, settings=two, decoder=lone)
        at_one = gguf_answers(models[name], prompts[::-1], gbnf, settings=one)[::-1]
        assert parallel == at_two == at_one, name
        if name.startswith("random"):  # its prompts get different answers: an order mix-up shows
            assert len({a.text for a in parallel}) > 1, name
    assert split == [2, 2, 2]  # the parallel path answered, two decoders each time


def test_one_decoders_error_stops_the_other_decoders(models, monkeypatch):
    """A decoder's error ends a DecoderPool's batch: it is raised, and the other decoder
    takes no prompt after the one it is decoding (it used to answer the rest of the queue first)."""
    import tuneforge.decode as decode_module

    prompts = [TASK.messages(text, None, "demo") for text in NASTY] * 3
    answered = []
    real = decode_module.Decoder.answer

    def counted(self, *a, **kw):
        out = real(self, *a, **kw)
        answered.append(out)
        return out

    monkeypatch.setattr(decode_module.Decoder, "answer", counted)
    checks = [lambda *_: None] + [None] * (len(prompts) - 1)  # a check without a grammar: refused
    with pytest.raises(ValueError, match="needs a grammar"):
        gguf_answers(models["random-0"], prompts, None, checks=checks,
                     settings=Settings(max_tokens=48, n_ctx=512, n_threads=2))
    assert len(prompts) > 10 and len(answered) <= 2


def test_a_pool_stays_open_from_one_batch_to_the_next(models, monkeypatch):
    """A DecoderPool given to gguf_answers answers batch after batch on decoders it opened once
    (eval's confirmation: two rows at a time on two cores), each answer the one a fresh pool
    gives; a pool or a decoder refuses a batch for another file or under other settings."""
    import tuneforge.decode as decode_module

    prompts = ([TASK.messages(text, None, "demo") for text in NASTY] * 2)[:6]
    gbnf, two = json_gbnf(SCHEMA), Settings(max_tokens=48, n_ctx=512, n_threads=2)
    opened: list = []
    real = decode_module.open_gguf
    monkeypatch.setattr(decode_module, "open_gguf", lambda *a, **kw: opened.append(a[0]) or real(*a, **kw))
    path = models["random-0"]
    fresh = [gguf_answers(path, prompts[i:i + 2], gbnf, settings=two) for i in range(0, 6, 2)]
    assert len(opened) == 6  # a pool of two for each batch
    opened.clear()
    with decode_module.DecoderPool(path, two, 2) as pool:
        kept = [gguf_answers(path, prompts[i:i + 2], gbnf, settings=two, decoder=pool) for i in range(0, 6, 2)]
        with pytest.raises(ValueError, match="asked to answer for"):
            gguf_answers(models["random-1"], prompts[:2], gbnf, settings=two, decoder=pool)
        with pytest.raises(ValueError, match="asked to answer for"):  # the memo would key it as 64 tokens
            gguf_answers(path, prompts[:2], gbnf, settings=dataclasses.replace(two, max_tokens=64), decoder=pool)
    with decode_module.Decoder(path, two) as lone, pytest.raises(ValueError, match="asked to answer for"):
        gguf_answers(path, prompts[:2], gbnf, settings=dataclasses.replace(two, repeat_penalty=1.1), decoder=lone)
    assert kept == fresh and len(opened) == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_an_answer_that_runs_out_of_context_is_counted(models, caplog, threads):
    """An answer whose prompt leaves it too little of n_ctx stops short of closing
    (finish_reason `length`): Decoder.ran_out says so, and gguf_answers counts it whether one
    decoder or a pool answered."""
    import tuneforge.decode as decode_module

    gbnf, settings = json_gbnf(SCHEMA), Settings(max_tokens=48, n_ctx=512, n_threads=threads)
    short, long = (TASK.messages("fix crash " * k, None, "demo") for k in (1, 35))  # 35: ~480 prompt tokens
    with decode_module.Decoder(models["random-0"], settings) as lone:
        lone.answer(short, gbnf)
        assert not lone.ran_out
        lone.answer(long, gbnf)
        assert lone.ran_out
        lone.answer(long, None)  # free: nothing to close, so nothing ran out
        assert not lone.ran_out
    with caplog.at_level("WARNING"):
        gguf_answers(models["random-0"], [short, long, short], gbnf, settings=settings)
    assert "1 answers ran out of context (n_ctx=512)" in caplog.text
