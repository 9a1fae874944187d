"""The chat-template round trip (tuneforge.template_check): the Go-template subset renderer and
the Modelfile reader on their own, then the whole check on the tiny model chain (merged model,
converted GGUF, the register stage's Modelfile), passing as built and failing, with a message
that says where, on each planted defect: a changed GGUF template, a wrong Modelfile TEMPLATE,
a Modelfile SYSTEM that is not the eval prompt's, a missing stop token."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tuneforge.template_check import (
    GoTemplateError,
    TemplateMismatch,
    check_templates,
    ollama_render,
    parse_go,
    parse_modelfile,
)

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi  there\n"}]


# ---------------------------------------------------------------- Go subset, no model needed

def test_go_subset_renders_what_go_template_emits():
    from tuneforge.ollama import TurnFormat, go_template

    fmt = TurnFormat({"system": "<s>\n", "user": "<u>\n", "assistant": "<a>\n"},
                     {"system": "</s>\n", "user": "</u>\n", "assistant": "</a>\n"}, "<a>\n")
    conv = [*CONV, {"role": "assistant", "content": "A"}, {"role": "user", "content": "U2"}]
    assert ollama_render(go_template(fmt), conv) == fmt.render(conv, True)


def test_go_subset_trim_markers_if_and_collate():
    # {{- trims the whitespace before it, -}} the whitespace after; .System joins system turns;
    # consecutive turns of one role are merged with a blank line (Ollama's collate)
    tpl = ("{{ if .System }}[{{ .System }}]{{ end }}  \n {{- range .Messages -}} \n\t"
           "{{ if eq .Role \"user\" }}U:{{ .Content }};{{ else }}{{ .Role }}{{ end }}{{ end }}")
    msgs = [{"role": "system", "content": "s1"}, {"role": "user", "content": "a"},
            {"role": "user", "content": "b"}]
    assert ollama_render(tpl, msgs) == "[s1]systemU:a\n\nb;"
    assert ollama_render(tpl, msgs[1:]) == "U:a\n\nb;"  # empty .System is false


@pytest.mark.parametrize("tpl, named", [
    ("{{ range $i, $m := .Messages }}{{ end }}", "$variable"),
    ("{{ range .Messages }}{{ .Content | json }}{{ end }}", "pipeline"),
    ("{{ range .Messages }}{{ .ToolCalls }}{{ end }}", "field .ToolCalls"),
    ("{{ if .Tools }}x{{ end }}{{ range .Messages }}{{ end }}", "field .Tools"),
    ("{{ range .Messages }}{{ .System }}{{ end }}", "inside range .Messages"),
    ("{{ with .System }}{{ . }}{{ end }}{{ .Messages }}", "(with)"),
    ("{{/* note */}}{{ range .Messages }}{{ end }}", "comment"),
    ("{{ range .Messages }}{{ if and .Role .Content }}x{{ end }}{{ end }}", "outside the rendered subset"),
    ("{{ range .Messages }}{{ .Content }}", "no {{ end }}"),
    ("{{ range .Messages }}{{ else }}{{ end }}", "outside an if"),
    ("{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}", "field .Prompt"),
])
def test_go_subset_refuses_what_it_does_not_render(tpl, named):
    with pytest.raises(GoTemplateError, match=None) as e:
        parse_go(tpl)
    assert named in str(e.value), str(e.value)


def test_legacy_template_without_messages_is_refused():
    with pytest.raises(GoTemplateError, match="legacy"):
        ollama_render("{{ if .System }}{{ .System }}{{ end }}", CONV)


def test_modelfile_reader_matches_ollamas_parser():
    text = ('# header\nFROM ../x.gguf\nTEMPLATE """{{ range .Messages }}{{ .Content }}\n'
            '{{ end }}  \n"""\nSYSTEM """two\nlines"""\nPARAMETER temperature 0\n'
            'PARAMETER stop "<|im_end|>"\nPARAMETER stop <x y>\nLICENSE """mit"""\n')
    mf = parse_modelfile(text)
    assert mf["template"] == "{{ range .Messages }}{{ .Content }}\n{{ end }}  \n"
    assert mf["system"] == "two\nlines" and mf["stops"] == ["<|im_end|>", "<x y>"]
    assert parse_modelfile('FROM x\nTEMPLATE "{{ .Prompt }}"\n')["system"] is None
    # Ollama strips the quotes and does not unescape: a backslash stays in the stop string
    assert parse_modelfile('FROM x\nTEMPLATE t\nPARAMETER stop "a\\"b"\n')["stops"] == ['a\\"b']
    for bad, why in (('FROM x\nTEMPLATE """open\n', "line 2: TEMPLATE \"\"\" is never closed"),
                     ('FROM x\nTEMPLATE t\nMESSAGE user hi\n', "line 3: MESSAGE"),
                     ('FROM x\nTEMPLATE t\nTEMPLATE u\n', "line 3: a second TEMPLATE"),
                     ("FROM x\n", "no TEMPLATE")):
        with pytest.raises(ValueError, match=None) as e:
            parse_modelfile(bad)
        assert why in str(e.value), str(e.value)


# ---------------------------------------------------------------- the tiny chain

@pytest.fixture(scope="module")
def built(chain) -> dict:
    """The session's model chain (conftest), with the eval prompts of its gold rows."""
    pytest.importorskip("llama_cpp")  # tiny_base skips without torch
    from tests.test_model_chain import TASK, TASK_NAME
    from tuneforge.decode import prompts
    from tuneforge.io import read_jsonl

    root = chain
    model = root / "models" / TASK_NAME
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    gold = list(read_jsonl(root / params["tasks"][TASK_NAME]["gold"]))
    mf = sorted((model / "modelfiles").glob("*.Modelfile"))[0]
    gguf = model / "gguf" / mf.name.replace(".Modelfile", ".gguf")
    return {"merged": model / "merged", "gguf": gguf, "modelfile": mf.read_text(encoding="utf-8"),
            "convs": prompts(TASK, gold)}


def check(b: dict, **over):
    args = {"merged_dir": b["merged"], "gguf_path": b["gguf"], "modelfile_text": b["modelfile"],
            "conversations": b["convs"], **over}
    return check_templates(**args)


@pytest.mark.model
def test_chain_templates_agree(built):
    report = check(built)
    n = len(built["convs"])
    assert report["ok"] and report["prompts"] == n >= 5 and report["first_mismatch"] is None
    assert report["equal"] == {"gguf": n, "ollama": n, "ollama_default_system": n}
    assert report["stops"]["problems"] == [] and "<|im_end|>" in report["stops"]["modelfile"]
    assert report["stops"]["hf"] and set(report["stops"]["hf"]) <= set(report["stops"]["gguf"])


def changed_template_gguf(src: Path, dst: Path, old: str, new: str) -> Path:
    """A copy of `src` (tensors and metadata) whose tokenizer.chat_template has `old` -> `new`."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(str(src), "r")
    template = reader.fields[gguf.Keys.Tokenizer.CHAT_TEMPLATE].contents()
    assert old in template
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(
        gguf.GGUFValueType.STRING, template.replace(old, new))}, [])
    return dst


@pytest.mark.model
def test_changed_gguf_template_fails(built, tmp_path):
    bad = changed_template_gguf(built["gguf"], tmp_path / "bad.gguf", "message['role'] + '\n'",
                                "message['role'] + ': '")
    with pytest.raises(TemplateMismatch, match=r"prompt 0: the gguf rendering differs from HF "
                                               r"apply_chat_template at character 18") as e:
        check(built, gguf_path=bad)
    assert "'<|im_start|>system: " in str(e.value)


@pytest.mark.model
@pytest.mark.parametrize("old, new, renderer", [
    ('"user" }}<|im_start|>user\n{{', '"user" }}<|im_start|>user{{', "ollama"),  # a missing newline
    ('"user" }}<|im_start|>user\n', '"user" }}<|im_start|>human\n', "ollama"),  # a wrong role marker
    ('{{ end }}<|im_start|>assistant\n', '{{ end }}<|im_start|>assistant', "ollama"),  # generation prompt
])
def test_wrong_modelfile_template_fails(built, old, new, renderer):
    assert old in built["modelfile"]
    report = check(built, modelfile_text=built["modelfile"].replace(old, new), strict=False)
    first = report["first_mismatch"]
    assert not report["ok"] and first["prompt"] == 0 and first["renderer"] == renderer
    assert report["equal"]["gguf"] == len(built["convs"]) and report["equal"]["ollama"] == 0
    hf = first["expected"]
    assert hf != first["got"] and f"character {first['position']}" in report["error"]
    with pytest.raises(TemplateMismatch, match=f"the {renderer} rendering differs"):
        check(built, modelfile_text=built["modelfile"].replace(old, new))


@pytest.mark.model
def test_wrong_assistant_turn_needs_a_multi_turn_conversation(built):
    """The eval prompts (system + user) never render the assistant branch; a conversation
    with an answered turn does, so a caller that passes one catches a wrong assistant turn."""
    text = built["modelfile"].replace("<|im_end|>\n{{ end }}{{ end }}", "<|im_end|>{{ end }}{{ end }}")
    assert text != built["modelfile"] and check(built, modelfile_text=text)["ok"]
    turns = [*built["convs"][0], {"role": "assistant", "content": "{}"}, {"role": "user", "content": "again"}]
    with pytest.raises(TemplateMismatch, match="prompt 1: the ollama rendering differs"):
        check(built, modelfile_text=text, conversations=[built["convs"][0], turns])


@pytest.mark.model
def test_modelfile_system_other_than_the_eval_prompt_fails(built):
    text = built["modelfile"].replace('SYSTEM """', 'SYSTEM """Old prompt. ', 1)
    with pytest.raises(TemplateMismatch, match="the ollama_default_system rendering differs"):
        check(built, modelfile_text=text)


@pytest.mark.model
def test_missing_or_plain_text_stop_token_fails(built):
    line = 'PARAMETER stop "<|im_end|>"\n'
    assert line in built["modelfile"]
    with pytest.raises(TemplateMismatch, match=re.escape("Modelfile has no PARAMETER stop '<|im_end|>'")):
        check(built, modelfile_text=built["modelfile"].replace(line, ""))
    with pytest.raises(TemplateMismatch, match="PARAMETER stop '###' is not a control token"):
        check(built, modelfile_text=built["modelfile"] + 'PARAMETER stop "###"\n')
