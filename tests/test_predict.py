"""tuneforge.predict's input and model choice (the decoding itself is checked against
eval's answers in test_model_chain)."""
import json

import pytest

from tuneforge import decode, predict
from tuneforge.decode import Answer
from tuneforge.fetch import PinMismatch
from tuneforge.io import sha256_file
from tuneforge.names.shapes import FileHash, Registry

from .shape_examples import registry_entry

TOKEN = "ghp_" + "x1" * 18


def test_text_lines_are_entries_normalised_and_redacted():
    lines = ["  Fixed a crash   in `foo`.", "", "   ", f"Rotate the leaked token {TOKEN} now."]
    entries = predict.read_entries("notes.txt", "\n".join(lines), hint="Bug fixes", product="demo")
    assert [e["text"] for e in entries][0] == "Fixed a crash in `foo`."
    assert TOKEN not in entries[1]["text"] and "[REDACTED:github_token]" in entries[1]["text"]
    assert all(e["hint"] == "Bug fixes" and e["product"] == "demo" for e in entries)


def test_jsonl_rows_carry_their_own_hint_and_product():
    lines = [json.dumps({"text": "Added `--json`.", "hint": "Features", "product": "git"}),
             json.dumps({"text": "Dropped Python 3.8."})]
    first, second = predict.read_entries("in.jsonl", "\n".join(lines), hint="Changes", product="tool")
    assert (first["hint"], first["product"]) == ("Features", "git")
    assert (second["hint"], second["product"]) == ("Changes", "tool")  # the defaults fill in


@pytest.mark.parametrize("line", ['{"text": ""}', '{"hint": "x"}', "[1, 2]", "not json", '{"text": 3}'])
def test_a_bad_jsonl_line_names_file_and_line(line):
    with pytest.raises(ValueError, match=r"^in\.jsonl:2: not an entry object"):
        predict.read_entries("in.jsonl", json.dumps({"text": "ok"}) + "\n" + line, None, None)


def test_the_default_model_is_the_promoted_one_and_none_is_an_error(tmp_path):
    registry = tmp_path / "registry.json"
    with pytest.raises(FileNotFoundError, match="build first"):
        predict.promoted_gguf(registry)
    models = [registry_entry(quantization="Q8_0", status="candidate", gguf="a.gguf"),
              registry_entry(quantization="Q4_K_M", status="promoted", gguf="b.gguf")]
    reg = Registry(backend="registry-file", release="pass", promoted="ns/m:q4_k_m", models=models,
                   verdict=FileHash(path="reports/changelog-actions/eval/verdict.json", sha256="00" * 32))
    registry.write_text(reg.model_dump_json())
    with pytest.raises(FileNotFoundError, match=r"b\.gguf \(promoted in .*\) not found"):
        predict.promoted_gguf(registry)  # a promoted entry runs only when the chain holds: test_trust
    for m in models:
        m.status, m.failed_gates = "rejected", ["min_class_agreement"]
    registry.write_text(reg.model_dump_json())
    with pytest.raises(LookupError, match="no model is promoted .*Q8_0: min_class_agreement"):
        predict.promoted_gguf(registry)


def _params(tmp_path, **toolchain):
    import yaml

    from tuneforge.llm import toolchain as installed

    from .conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["toolchain"] = {k: v.split("+")[0] for k, v in installed(list(params["toolchain"])).items()}
    params["toolchain"].update(toolchain)  # installed (the check passes) unless a test says otherwise
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def _fake_decoder(monkeypatch):
    calls = []
    monkeypatch.setattr(decode, "json_gbnf", lambda schema: 'root ::= "x"\n')
    monkeypatch.setattr(decode, "gguf_answers",
                        lambda path, prompts, gbnf, **kw: calls.append(str(path)) or [Answer("{}")] * len(prompts))
    return calls


def test_schema_prints_each_entrys_own_schema_and_runs_no_model(tmp_path, monkeypatch, capsys):
    """--schema: the JSON schema each entry's answer is decoded under, one line per entry, for
    Ollama's `format`; a commit's `ignore` narrowed to its diff's junk paths. No model is loaded."""
    from tuneforge.tasks import get_task

    calls = _fake_decoder(monkeypatch)
    diff = ("diff --git a/src/a.c b/src/a.c\n--- a/src/a.c\n+++ b/src/a.c\n@@ -1 +1 @@\n-x\n+y\n"
            "diff --git a/.env b/.env\nnew file mode 100644\n--- /dev/null\n+++ b/.env\n@@ -0,0 +1 @@\n+K=1\n")
    entries = tmp_path / "in.diff"
    entries.write_text(diff)
    assert predict.main([str(entries), "--task", "commit-messages", "--schema", "--params", _params(tmp_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    printed = json.loads(line)
    assert printed == get_task("commit-messages").output_schema(diff)
    assert printed["properties"]["ignore"]["const"] == [".env"] and calls == []


@pytest.mark.parametrize("fmt", ["git", "json"])
def test_format_git_notes_the_junk_to_unstage_on_stderr(tmp_path, monkeypatch, capsys, caplog, fmt):
    """A git message cannot hold `ignore`: predict says on stderr which staged paths to leave
    out (Task.advice), as one `predict: note:` line the hook passes on; --format json holds them."""
    answer = json.dumps({"type": "fix", "scope": None, "subject": "Fix the read", "body": None,
                         "breaking": False, "ignore": [".env"]})
    monkeypatch.setattr(decode, "gguf_answers", lambda path, prompts, gbnf, **kw: [Answer(answer)] * len(prompts))
    model, entries = tmp_path / "m.gguf", tmp_path / "in.diff"
    model.write_bytes(b"gguf")
    (tmp_path / "SHA256SUMS").write_text(f"{sha256_file(model)}  m.gguf\n")
    entries.write_text(DIFF)
    assert predict.main([str(entries), "--model", str(model), "--task", "commit-messages", "--format", fmt,
                         "--params", _params(tmp_path)]) == 0
    out = capsys.readouterr().out
    # logged as `predict: note: ...` (predict's log format; test_hook passes such a line on)
    notes = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.getMessage().startswith("note: ")]
    if fmt == "json":
        assert json.loads(out)["ignore"] == [".env"] and notes == []
    else:
        assert out == "fix: Fix the read\n" and notes == [
            "predict: note: staged junk to leave out of this commit: .env (unstage with: git restore --staged -- PATH)"]


def test_an_unpinned_model_is_refused_unless_the_user_says_so(tmp_path, monkeypatch, capsys):
    calls = _fake_decoder(monkeypatch)
    model, entries = tmp_path / "m.gguf", tmp_path / "in.txt"
    model.write_bytes(b"not pinned anywhere")
    entries.write_text("Fixed a crash.\n")
    args = [str(entries), "--model", str(model), "--task", "changelog-actions", "--params", _params(tmp_path)]
    with pytest.raises(PinMismatch, match=r"m\.gguf is not pinned .*--allow-unpinned"):
        predict.main(args)
    assert calls == []
    assert predict.main([*args, "--allow-unpinned"]) == 1  # ran it: '{}' does not parse
    assert calls == [str(model)]


def test_predict_checks_the_toolchain_before_loading(tmp_path, monkeypatch):
    calls = _fake_decoder(monkeypatch)
    model, entries = tmp_path / "m.gguf", tmp_path / "in.txt"
    model.write_bytes(b"gguf")
    entries.write_text("Fixed a crash.\n")
    (tmp_path / "SHA256SUMS").write_text(f"{sha256_file(model)}  m.gguf\n")
    args = [str(entries), "--model", str(model), "--task", "changelog-actions",
            "--params", _params(tmp_path, llama_cpp_python="0.0.1")]
    with pytest.raises(RuntimeError, match="toolchain mismatch .*llama_cpp_python: params 0.0.1"):
        predict.main(args)
    assert calls == []


DIFF = f"""diff --git a/src/http.c b/src/http.c
index 1111111..2222222 100644
--- a/src/http.c
+++ b/src/http.c
@@ -10,7 +10,8 @@ static int read_chunk(struct chunk *ch)
 {{
-    if (ch->len)
+    if (ch->len  &&  ch->trailer)
+        free(ch->trailer);  /* token {TOKEN} */

     return 0;
"""


def _document_task(**changes):
    """changelog-actions with a task's document reading and formats: the task package of a
    document task (commit-messages) is not what these tests are about."""
    from dataclasses import replace

    from tuneforge.tasks import get_task
    return replace(get_task("changelog-actions"), **changes)


def test_a_document_is_one_entry_its_lines_kept_and_redacted():
    (entry,) = predict.read_entries("<stdin>", DIFF, None, "curl", "document")
    assert entry["text"] == DIFF.replace(TOKEN, "[REDACTED:github_token]")  # spacing and blank line kept
    assert entry["hint"] is None and entry["product"] == "curl"
    assert len(predict.read_entries("<stdin>", DIFF, None, None)) == 10  # a line task: one per line
    assert predict.read_entries("<stdin>", " \n\n\t\n", None, None, "document") == []
    (row,) = predict.read_entries("in.jsonl", json.dumps({"text": DIFF, "product": "x"}), None, None, "document")
    assert row["text"] == entry["text"] and row["product"] == "x"  # a .jsonl row of a document task too


def test_a_task_reads_lines_or_documents_and_nothing_else():
    from tuneforge.tasks import register

    with pytest.raises(ValueError, match="input_kind 'documents' is neither 'line' nor 'document'"):
        register(_document_task(name="a-typo", input_kind="documents"))


def test_stdin_of_a_document_task_is_one_prompt(tmp_path, monkeypatch, capsys):
    import io

    task = _document_task(input_kind="document")
    monkeypatch.setattr(predict, "get_task", lambda name: task)
    seen = []
    answer = task.render_label({"kind": "fix", "severity": "low", "subject": "chunk trailer",
                                "action_text": "Upgrade.", "deadline": None, "tags": ["http"]})
    monkeypatch.setattr(decode, "json_gbnf", lambda schema: 'root ::= "x"\n')
    monkeypatch.setattr(decode, "gguf_answers", lambda path, prompts, gbnf, **kw: seen.extend(prompts)
                        or [Answer(answer)] * len(prompts))
    monkeypatch.setattr(predict.sys, "stdin", io.TextIOWrapper(io.BytesIO(DIFF.encode())))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"gguf")
    rc = predict.main(["--model", str(model), "--allow-unpinned", "--format", "json", "--product", "curl",
                       "--task", "changelog-actions", "--params", _params(tmp_path)])
    assert rc == 0
    (prompt,) = seen
    assert prompt[1]["content"] == task.render_user(DIFF.replace(TOKEN, "[REDACTED:github_token]"), None, "curl")
    assert capsys.readouterr().out == answer + "\n"


def test_render_gives_json_and_the_tasks_own_formats():
    task = _document_task(formats={"shout": lambda label: label["subject"].upper() + "!\n"})
    label = {"kind": "fix", "severity": "low", "subject": "chunk trailer", "action_text": "Upgrade.",
             "deadline": None, "tags": ["http"]}
    assert list(predict.renderers(task)) == ["json", "shout"]
    assert predict.render(task, label, "json") == task.render_label(label)
    assert predict.render(task, label, "shout") == "CHUNK TRAILER!"  # predict prints the line end itself


@pytest.mark.parametrize("label,message", [
    ({"type": "fix", "scope": "http_chunks", "subject": "Reset the trailer to avoid a memory leak",
      "body": "Curl_httpchunk_read kept the trailer buffer between chunks.", "breaking": False, "ignore": []},
     "fix(http_chunks): Reset the trailer to avoid a memory leak\n\n"
     "Curl_httpchunk_read kept the trailer buffer between chunks."),
    ({"type": "feat", "scope": None, "subject": "Drop the --legacy option", "body": None, "breaking": True,
      "ignore": [".env"]},
     "feat!: Drop the --legacy option"),
], ids=["scope-body", "breaking-no-scope"])
def test_format_git_is_a_ready_commit_message(label, message):
    """The commit-messages task's git format, as predict --format git prints it: `type(scope)!:
    subject`, a blank line, the body (issue 19 item 6)."""
    pytest.importorskip("tuneforge.tasks.commit_messages.schema",
                        reason="the commit-messages task package (branch h19-task) is not merged yet")
    from tuneforge.tasks import get_task

    task = get_task("commit-messages")
    assert task.input_kind == "document"  # a diff is one entry
    assert list(predict.renderers(task)) == ["json", "git"]
    assert predict.render(task, label, "git") == message


def test_a_format_the_task_lacks_is_one_line_naming_the_ones_it_has(tmp_path, monkeypatch, capsys):
    calls = _fake_decoder(monkeypatch)
    monkeypatch.setattr(predict, "get_task", lambda name: _document_task(formats={"git": str}))
    entries = tmp_path / "in.txt"
    entries.write_text("Fixed a crash.\n")
    with pytest.raises(SystemExit) as e:
        predict.main([str(entries), "--format", "xml", "--task", "changelog-actions", "--params", _params(tmp_path)])
    assert e.value.code == 2 and calls == []
    err = capsys.readouterr().err.splitlines()
    assert err == ["python -m tuneforge.predict: error: --format xml: task changelog-actions has no such format; "
                   "available: json, git (see --help)"]
