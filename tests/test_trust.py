"""The trust chain from eval's gate to what register promotes and predict runs: a verdict
names the files it judged, and nothing downstream serves a file no gate saw.

The stages run for real on a scratch root whose GGUFs are a few bytes each: only the
decoders (llama.cpp, transformers) and the GGUF metadata read are replaced, so each test
is fast and what it checks is the stages' own bookkeeping.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages import eval as eval_stage
from stages import register
from tuneforge import decode, evaluate, fidelity, predict
from tuneforge.decode import Answer
from tuneforge.fetch import PinMismatch
from tuneforge.gates import fidelity_failures
from tuneforge.gguf_tools import write_sums
from tuneforge.io import sha256_file, write_jsonl
from tuneforge.llm import toolchain
from tuneforge.names.shapes import FileHash, TokenizerRoundTrip
from tuneforge.ollama import TurnFormat
from tuneforge.tasks import get_task

from . import shape_examples
from .conftest import ROOT

TASK = get_task("changelog-actions")
NAME = "tuneforge-changelog-actions"
ENTRIES = [
    ("Fixed a crash when `--output` points to a directory.", "Bug fixes", "git"),
    ("Removed the deprecated `foo` command; use `bar` instead.", "Breaking changes", "npm"),
    ("Added a `--json` flag to the `status` command.", "Features", "git"),
    ("Documented the `core.fsmonitor` setting.", "Documentation", "git"),
]
# file sizes: the smallest passing quantisation is promoted, here Q4_K_M
SIZES = {"base-f16": 900, "f16": 800, "Q8_0": 400, "Q6_K": 300, "Q4_K_M": 200}
CHATML = TurnFormat(prefix={r: f"<|im_start|>{r}\n" for r in ("system", "user", "assistant")},
                    suffix={r: "<|im_end|>\n" for r in ("system", "user", "assistant")},
                    generation_prompt="<|im_start|>assistant\n")


def gguf(root: Path, key: str) -> Path:
    return root / "models/changelog-actions/gguf" / f"{NAME}-{key}.gguf"


def requantize(root: Path, key: str) -> None:
    """What `dvc repro quantize` does to a file: new bytes, and SHA256SUMS rewritten to match."""
    path = gguf(root, key)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    write_sums(path.parent, sorted(path.parent.glob("*.gguf")))


class FakeCheck:
    """What eval's fidelity checks measure, for the stand-in GGUFs (no model to force): each
    type eval measures gets fixed figures; the types in `over` a KL mean above their bound."""

    def __init__(self, over: tuple[str, ...]):
        self.over, self.rows, self.measured = over, [], []
        self.memo = fidelity.KLMemo(None)
        self.seconds = self.round_trip_s = 0.0
        self.forced = self.hits = 0

    def measure(self, key, sha256, llm, i) -> None:
        self.measured.append(key)

    def figures(self) -> dict[str, dict]:
        return {key: {"kl_mean": 0.5 if key in self.over else 1e-4, "kl_p99": 1e-3, "kl_max": 1e-2,
                      "kl_max_row": "0" * 16, "top1": 0.99, "tokens": 100, "rows": 4}
                for key in SIZES if key != "base-f16"}

    def close(self) -> None:
        pass


def plant_fidelity(monkeypatch, over: tuple[str, ...] = ()) -> None:
    """Eval's fidelity checks replaced: the round trip and the forced rows need real GGUFs."""
    monkeypatch.setattr(eval_stage, "start_fidelity", lambda *a, **k: (
        FakeCheck(over), TokenizerRoundTrip(gold_texts=8, train_texts=0, ggufs=4), None))


@pytest.fixture
def fake_decoders(monkeypatch, stand_in_ggufs):
    """Every decoder answers one valid label; the calls are recorded. The base GGUF's and
    Q8_0's answers are ones the decoder closed at the token cap (a looping model's)."""
    answer = TASK.render_label(TASK.rule_label(*ENTRIES[0], "1.0")[0])
    calls: list[dict] = []

    def generate(path, prompts, gbnf, **kw):
        calls.append({"path": str(path), "n": len(prompts), **kw})
        return [Answer(answer, "-base-" in str(path) or "Q8_0" in str(path))] * len(prompts)

    monkeypatch.setattr(decode, "gguf_answers", generate)  # eval, predict and by-hand eval decode here
    monkeypatch.setattr(decode, "json_gbnf", lambda schema: 'root ::= "x"\n')
    monkeypatch.setattr(decode, "hf_generate", lambda d, prompts, n, **kw: [answer] * len(prompts))
    monkeypatch.setattr(register, "template_and_stops", lambda path: (CHATML, ["<|im_end|>"], NAME, "mit"))
    # the GGUFs here are stand-in bytes: the template round trip has its own tests (test_template_check)
    monkeypatch.setattr(register, "check_templates",
                        lambda *a, **k: {"prompts": 0, "stops": {"modelfile": ["<|im_end|>"]}})
    prov = shape_examples.provenance(shape_examples.adapter()).dump()  # what convert wrote
    monkeypatch.setattr(register, "provenance_of", lambda path: prov)
    return calls


@pytest.fixture
def built(tmp_path, monkeypatch, fake_decoders) -> Path:
    """A root after eval and register, where every gate passes (gates set to 0)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["toolchain"] = {k: v.split("+")[0] for k, v in toolchain(list(params["toolchain"])).items()}  # installed
    params["eval"].update(holdout_limit=0, hf_subset=2, base_hf=False, retrieval_k=0, fidelity_only=[],  # no RAG here
                          gates={**params["eval"]["gates"], "min_class_agreement": 0.0, "max_parse_errors": 100,
                                 "min_parity": 0.0, "max_p_labeler_better": None})
    params["register"]["ollama"] = "never"
    params["quantize"]["types"] = [k for k in SIZES if "f16" not in k]  # the stand-in ladder below
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")  # each stage's declared params
    gold = [{"text": t, "hint": h, "product": p, "version": "1.0",
             "label": TASK.rule_label(t, h, p, "1.0")[0]} for t, h, p in ENTRIES]
    write_jsonl(tmp_path / params["tasks"]["changelog-actions"]["gold"], gold)
    for key, size in SIZES.items():
        gguf(tmp_path, key).parent.mkdir(parents=True, exist_ok=True)
        gguf(tmp_path, key).write_bytes(key.encode() * (size // len(key)))
    write_sums(tmp_path / "models/changelog-actions/gguf", [gguf(tmp_path, k) for k in SIZES])
    measured = [k for k in SIZES if k != "base-f16"]  # the converter's output and the ladder
    params["fidelity"].update(max_kl_mean=dict.fromkeys(measured, 1e-2), max_kl_p99=dict.fromkeys(measured, 1e-1))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    plant_fidelity(monkeypatch)
    write_jsonl(tmp_path / "data/changelog-actions/exports/sft/train.jsonl", [])  # no product trained on
    sidecars = {"merged": {}, "adapter": shape_examples.adapter().model_dump(mode="json"),
                "base": shape_examples.base().model_dump(mode="json")}
    dirs = {"merged": "models/changelog-actions/merged", "adapter": "models/changelog-actions/adapter",
            "base": "models/base"}
    for d, files in (("merged", ("model.safetensors", "config.json")), ("adapter", ()), ("base", ())):
        (tmp_path / dirs[d]).mkdir(parents=True)
        (tmp_path / dirs[d] / "tuneforge.json").write_text(json.dumps(sidecars[d]))
        for f in files:
            (tmp_path / dirs[d] / f).write_text(f"{d}/{f}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert eval_stage.main(["changelog-actions"]) == 0
    assert register.main(["changelog-actions"]) == 0
    return tmp_path


def entries(tmp_path: Path) -> str:
    path = tmp_path / "entries.txt"
    path.write_text("Fixed a crash in `foo`.\n")
    return str(path)


# ---------------------------------------------------------------- eval -> verdict

def test_the_verdict_names_every_file_it_judged_and_the_params(built):
    verdict = json.loads((built / "reports/changelog-actions/eval/verdict.json").read_text())
    for key in ("Q8_0", "Q6_K", "Q4_K_M"):
        assert verdict["models"][key]["sha256"] == sha256_file(gguf(built, key))
        assert verdict["models"][key]["gguf"] == f"models/changelog-actions/gguf/{NAME}-{key}.gguf"
    files = {"base": "base-f16", "f16": "f16", "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q4_K_M": "Q4_K_M"}
    assert {k: v["sha256"] for k, v in verdict["ggufs"].items()} == {
        k: sha256_file(gguf(built, f)) for k, f in files.items()}
    assert verdict["gold"]["sha256"] == sha256_file(built / "data/gold/holdout.jsonl")
    merged = verdict["hf_models"]["merged_hf"]
    assert merged["files"] == {f: sha256_file(built / "models/changelog-actions/merged" / f)
                               for f in ("config.json", "model.safetensors", "tuneforge.json")}
    params = yaml.safe_load((built / "params.yaml").read_text())
    assert verdict["params"]["eval"] == params["eval"] and verdict["params"]["task"] == "changelog-actions"
    assert verdict["promoted"] == "Q4_K_M"


# ---------------------------------------------------------------- register

def test_register_refuses_a_gguf_no_gate_saw(built):
    """`dvc repro quantize` (or a repro that stops there) leaves new GGUFs whose pins match
    and an old verdict: register must not promote them."""
    (built / "models/changelog-actions/registry.json").unlink()
    requantize(built, "Q4_K_M")
    with pytest.raises(ValueError, match=r"Q4_K_M\.gguf: sha256 \w+ is not the file eval judged"):
        register.main(["changelog-actions"])
    assert not (built / "models/changelog-actions/registry.json").exists()


def test_register_checks_everything_before_writing(built):
    """A later type's broken pin stops register before it writes any Modelfile."""
    for p in (built / "models/changelog-actions/modelfiles").iterdir():
        p.unlink()
    q6 = gguf(built, "Q6_K")
    q6.write_bytes(q6.read_bytes()[:-1] + b"!")
    before = (built / "models/changelog-actions/registry.json").read_bytes()
    with pytest.raises(PinMismatch, match="Q6_K.gguf: sha256 .* does not match its pin"):
        register.main(["changelog-actions"])
    assert list((built / "models/changelog-actions/modelfiles").iterdir()) == []
    assert (built / "models/changelog-actions/registry.json").read_bytes() == before


@pytest.mark.parametrize("change", ["gold", "gates"])
def test_register_refuses_a_verdict_made_on_other_inputs(built, change):
    if change == "gold":
        gold = built / "data/gold/holdout.jsonl"
        gold.write_text(gold.read_text() + gold.read_text().splitlines()[0] + "\n")
        match = r"holdout\.jsonl: sha256 \w+ is not the gold file eval judged"
    else:
        params = yaml.safe_load((built / "params.yaml").read_text())
        params["eval"]["gates"]["min_class_agreement"] = 0.9
        (built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        match = r"verdict\.json was made with other params \(eval\.gates\.min_class_agreement\)"
    with pytest.raises(ValueError, match=match):
        register.main(["changelog-actions"])


def test_registry_names_the_verdict_it_acted_on(built):
    reg = json.loads((built / "models/changelog-actions/registry.json").read_text())
    assert reg["schema_version"] == 2
    assert reg["verdict"] == {"path": "reports/changelog-actions/eval/verdict.json",
                              "sha256": sha256_file(built / "reports/changelog-actions/eval/verdict.json")}
    assert reg["promoted"].endswith(":q4_k_m")


def test_answers_the_decoder_closed_show_in_metrics_report_and_predictions(built):
    metrics = json.loads((built / "reports/changelog-actions/metrics.json").read_text())
    n = len(ENTRIES)
    assert (metrics["base"]["closed_by_decoder"], metrics["base"]["closed_by_decoder_rate"]) == (n, 1.0)
    assert (metrics["Q8_0"]["closed_by_decoder"], metrics["Q4_K_M"]["closed_by_decoder"]) == (n, 0)
    assert metrics["base"]["parse_errors"] == 0  # they parse: only the new figure tells them apart
    assert "closed_by_decoder" not in metrics["merged_hf"]  # no grammar, nothing closed
    header = next(line for line in (built / "reports/changelog-actions/eval/report.md").read_text().splitlines()
                  if line.startswith("| model | n |"))
    assert "| closed_by_decoder | closed_by_decoder_rate |" in header
    preds = [json.loads(line)
             for line in (built / "reports/changelog-actions/eval/predictions.jsonl").read_text().splitlines()]
    assert {p["closed_by_decoder"] for p in preds if p["model"] == "base"} == {True}
    assert {p["closed_by_decoder"] for p in preds if p["model"] == "Q4_K_M"} == {False}
    reg = json.loads((built / "models/changelog-actions/registry.json").read_text())
    assert {m["quantization"]: m["metrics"]["closed_by_decoder"] for m in reg["models"]} == {
        "Q8_0": n, "Q6_K": 0, "Q4_K_M": 0}
    card = (built / "models/changelog-actions/MODEL_CARD.md").read_text()
    assert "| parse rate (closed by decoder) |" in card and f"| 1.000 ({n}) |" in card


def test_a_quantisation_over_its_kl_bound_fails_the_gate_and_is_not_promoted(built, monkeypatch):
    """Planted: the fidelity checks find Q4_K_M (the smallest, promoted so far) over its bound."""
    plant_fidelity(monkeypatch, over=("Q4_K_M",))
    assert eval_stage.main(["changelog-actions"]) == 0
    verdict = json.loads((built / "reports/changelog-actions/eval/verdict.json").read_text())
    assert verdict["models"]["Q4_K_M"]["verdict"] == "fail"
    assert verdict["models"]["Q4_K_M"]["failed"] == ["fidelity KL mean 0.5 (bound 0.01), p99 0.001 (bound 0.1)"]
    assert verdict["promoted"] == "Q6_K"
    assert register.main(["changelog-actions"]) == 0
    reg = json.loads((built / "models/changelog-actions/registry.json").read_text())
    assert {m["quantization"]: m["status"] for m in reg["models"]}["Q4_K_M"] == "rejected"
    card = (built / "models/changelog-actions/MODEL_CARD.md").read_text()
    assert "## Is the GGUF the trained model?" in card and "teacher-forced on 100 answer tokens of 4" in card
    # sizes as eval writes them (MB, one decimal): the stand-in GGUFs are a few hundred bytes
    assert "| Q4_K_M | 0.0 | 0.5 (0.01) | 0.001 (0.1) | 0.9900 | **no** |" in card
    assert "| Q6_K | 0.0 | 0.0001 (0.01) | 0.001 (0.1) | 0.9900 | yes |" in card


def test_modelfiles_take_the_context_and_cap_eval_measured(built):
    """A Modelfile's num_ctx and num_predict are eval's (the task's own overrides included):
    commit-messages measured with 2048 and 192 while register wrote 1024 and 160 for it."""
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["eval"].update(n_ctx=1536, max_tokens=200)
    (built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert eval_stage.main(["changelog-actions"]) == 0
    assert register.main(["changelog-actions"]) == 0
    for path in (built / "models/changelog-actions/modelfiles").iterdir():
        text = path.read_text()
        assert "PARAMETER num_ctx 1536\n" in text and "PARAMETER num_predict 200\n" in text, path


def test_the_gates_refuse_fidelity_figures_of_other_bytes(built):
    """The gates read eval's fidelity.json and take its figures only for the bytes eval judges:
    a report on other bytes (a requantised Q6_K), or none, is refused."""
    path = built / "reports/changelog-actions/fidelity.json"
    judged = {k: FileHash(path=str(gguf(built, k)), sha256=sha256_file(gguf(built, k))) for k in ("f16", "Q6_K")}
    assert fidelity_failures(path, judged, ["f16", "Q6_K"])[0] == {"f16": [], "Q6_K": []}
    requantize(built, "Q6_K")
    judged["Q6_K"] = FileHash(path=str(gguf(built, "Q6_K")), sha256=sha256_file(gguf(built, "Q6_K")))
    with pytest.raises(ValueError, match=r"fidelity.json: Q6_K's figures were measured on sha256 \w+, but eval "
                                         r"judges .*Q6_K.gguf with sha256 \w+: eval writes it"):
        fidelity_failures(path, judged, ["f16", "Q6_K"])
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"fidelity.json not found: eval writes it"):
        fidelity_failures(path, judged, ["f16", "Q6_K"])


def test_a_gguf_whose_answers_the_decoder_closed_fails_the_gate(built):
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["eval"]["gates"]["max_closed_by_decoder"] = 0
    (built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert eval_stage.main(["changelog-actions"]) == 0
    verdict = json.loads((built / "reports/changelog-actions/eval/verdict.json").read_text())
    assert verdict["models"]["Q8_0"]["failed"] == [f"closed_by_decoder {len(ENTRIES)} > 0"]
    assert verdict["models"]["Q4_K_M"]["verdict"] == "pass" and verdict["promoted"] == "Q4_K_M"


# ---------------------------------------------------------------- predict

def test_predict_runs_the_promoted_model_when_the_chain_holds(built, fake_decoders, capsys):
    assert predict.main(["--task", "changelog-actions", entries(built)]) == 0
    assert fake_decoders[-1]["path"] == f"models/changelog-actions/gguf/{NAME}-Q4_K_M.gguf"
    line = json.loads(capsys.readouterr().out)
    assert line["error"] is None and line["closed_by_decoder"] is False


def test_predict_says_when_the_decoder_closed_an_answer(built, fake_decoders, capsys):
    assert predict.main(["--task", "changelog-actions", entries(built), "--model", str(gguf(built, "Q8_0"))]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["error"] is None and line["closed_by_decoder"] is True


def test_predict_refuses_a_promoted_file_that_changed(built, fake_decoders):
    requantize(built, "Q4_K_M")  # the pin matches the new bytes; the registry and verdict do not
    n = len(fake_decoders)
    with pytest.raises(ValueError, match=r"Q4_K_M\.gguf: sha256 \w+ is not the file register promoted"):
        predict.main(["--task", "changelog-actions", entries(built)])
    assert len(fake_decoders) == n  # nothing was loaded


def test_predict_refuses_when_the_verdict_changed(built):
    verdict = built / "reports/changelog-actions/eval/verdict.json"
    v = json.loads(verdict.read_text())
    v["models"]["Q4_K_M"].update(verdict="fail", failed=["min_class_agreement"])
    verdict.write_text(json.dumps(v))
    with pytest.raises(ValueError, match=r"verdict\.json changed since register"):
        predict.main(["--task", "changelog-actions", entries(built)])
    reg = json.loads((built / "models/changelog-actions/registry.json").read_text())
    reg["verdict"]["sha256"] = sha256_file(verdict)  # a registry made to agree: the verdict says fail
    (built / "models/changelog-actions/registry.json").write_text(json.dumps(reg))
    with pytest.raises(ValueError, match=r"Q4_K_M did not pass its gates"):
        predict.main(["--task", "changelog-actions", entries(built)])


# ---------------------------------------------------------------- by hand

def by_hand(root: Path, model: Path, *extra: str) -> int:
    return evaluate.main(["--task", "changelog-actions", "--gold", str(root / "data/gold/holdout.jsonl"),
                          "--model", str(model), *extra])


def test_by_hand_eval_refuses_an_unpinned_gguf_unless_told(built, fake_decoders, tmp_path, capsys):
    loose = tmp_path / "elsewhere" / "m.gguf"
    loose.parent.mkdir()
    loose.write_bytes(b"unpinned")
    with pytest.raises(PinMismatch, match=r"m\.gguf is not pinned .*--allow-unpinned"):
        by_hand(built, loose)
    assert not any(c["path"] == str(loose) for c in fake_decoders)
    assert by_hand(built, loose, "--allow-unpinned") == 0
    assert json.loads(capsys.readouterr().out)["m"]["n"] == len(ENTRIES)


def test_by_hand_eval_decodes_with_the_params_settings(built, fake_decoders, tmp_path):
    assert by_hand(built, gguf(built, "Q8_0"), "--limit", "1") == 0
    settings = fake_decoders[-1]["settings"]
    assert settings.max_tokens == 160 and settings.n_ctx == 1024
    # no params file: an error naming it, never settings of its own
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        by_hand(built, gguf(built, "Q8_0"), "--params", str(tmp_path / "nowhere.yaml"))


def test_by_hand_eval_checks_the_toolchain(built, fake_decoders):
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["toolchain"]["llama_cpp_python"] = "0.0.1"
    (built / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    n = len(fake_decoders)
    with pytest.raises(RuntimeError, match="toolchain mismatch .*llama_cpp_python: params 0.0.1"):
        by_hand(built, gguf(built, "Q8_0"))
    assert len(fake_decoders) == n
