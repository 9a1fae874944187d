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
    entries = predict.read_entries("notes.txt", lines, hint="Bug fixes", product="demo")
    assert [e["text"] for e in entries][0] == "Fixed a crash in `foo`."
    assert TOKEN not in entries[1]["text"] and "[REDACTED:github_token]" in entries[1]["text"]
    assert all(e["hint"] == "Bug fixes" and e["product"] == "demo" for e in entries)


def test_jsonl_rows_carry_their_own_hint_and_product():
    lines = [json.dumps({"text": "Added `--json`.", "hint": "Features", "product": "git"}),
             json.dumps({"text": "Dropped Python 3.8."})]
    first, second = predict.read_entries("in.jsonl", lines, hint="Changes", product="tool")
    assert (first["hint"], first["product"]) == ("Features", "git")
    assert (second["hint"], second["product"]) == ("Changes", "tool")  # the defaults fill in


@pytest.mark.parametrize("line", ['{"text": ""}', '{"hint": "x"}', "[1, 2]", "not json", '{"text": 3}'])
def test_a_bad_jsonl_line_names_file_and_line(line):
    with pytest.raises(ValueError, match=r"^in\.jsonl:2: not an entry object"):
        predict.read_entries("in.jsonl", [json.dumps({"text": "ok"}), line], None, None)


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


def test_an_unpinned_model_is_refused_unless_the_user_says_so(tmp_path, monkeypatch, capsys):
    calls = _fake_decoder(monkeypatch)
    model, entries = tmp_path / "m.gguf", tmp_path / "in.txt"
    model.write_bytes(b"not pinned anywhere")
    entries.write_text("Fixed a crash.\n")
    args = [str(entries), "--model", str(model), "--params", _params(tmp_path)]
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
    args = [str(entries), "--model", str(model), "--params", _params(tmp_path, llama_cpp_python="0.0.1")]
    with pytest.raises(RuntimeError, match="toolchain mismatch .*llama_cpp_python: params 0.0.1"):
        predict.main(args)
    assert calls == []
