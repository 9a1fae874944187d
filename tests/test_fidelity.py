"""The fidelity checks (inside eval) on the tiny model: a faithful conversion passes with KL ~0,
and each planted defect fails its check: a GGUF with one tensor scaled or two swapped fails the
converter's gate before eval decodes, a tokenizer with a changed merge fails the round trip
naming the row and the first token that differs, a quantisation over its bound fails the gates.
The forced rows ride on eval's decoders: their logits equal a fresh pass's bit for bit, and a
rerun takes them from the memo."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tuneforge import fidelity
from tuneforge.chat_text import render

ROOT = Path(__file__).resolve().parents[1]
TASK_NAME = "changelog-actions"
NAME = "tuneforge-changelog-actions"

SECTION = {"max_kl_mean": {"f16": 2.0e-5, "Q8_0": 5.0e-3, "Q6_K": 1.0e-2, "Q4_K_M": 6.0e-2},
           "max_kl_p99": {"f16": 2.5e-4, "Q8_0": 4.0e-2, "Q6_K": 9.0e-2, "Q4_K_M": 6.0e-1},
           "rows": 0, "train_prompts": 2000}


def test_kl_is_zero_for_the_same_distribution_and_matches_a_hand_computed_one():
    logits = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.0]])
    ref = fidelity.log_softmax(logits)
    kl, agree = fidelity.kl_and_agreement(fidelity.Reference.of(ref), logits + 7.0)  # a shift leaves the distribution
    assert np.allclose(kl, 0.0, atol=1e-15) and agree.all()
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    kl, agree = fidelity.kl_and_agreement(fidelity.Reference.of(np.log(p)[None]), np.log(q)[None])
    assert kl[0] == pytest.approx(0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1))
    assert agree.tolist() == [True]  # a tie takes the lowest index on both sides


def test_a_type_without_a_bound_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fidelity": SECTION}))
    with pytest.raises(SystemExit, match=r"params.yaml:\d+: fidelity.max_kl_mean has no bound for Q5_K_M"):
        fidelity.check_bounds(SECTION, ["f16", "Q8_0", "Q5_K_M"], "params.yaml")


# ---------------------------------------------------------------- on the tiny model

def with_stage(root: Path, **changes) -> None:
    """The scratch root's params.yaml with the fidelity section changed."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    for key, value in changes.items():
        params["fidelity"][key].update(value) if isinstance(value, dict) else params["fidelity"].update({key: value})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def built(chain) -> Path:
    """The session's tiny chain (conftest): it ran fidelity once; these tests rerun it on copies."""
    pytest.importorskip("llama_cpp")
    return chain


@pytest.mark.model
def test_answer_span_logits_equal_a_full_pass(built):
    """gguf_logits skips the LM head over the prompt; the rows it returns must be the full
    pass's rows at the same positions (an off-by-one would compare the wrong predictions)."""
    from tuneforge.llama_private import load_llama
    from tuneforge.names import gguf_name

    params = yaml.safe_load((built / "params.yaml").read_text())
    path = built / "models" / TASK_NAME / "gguf" / gguf_name(params["tasks"][TASK_NAME]["model_name"], "f16")
    llm = load_llama(path, n_ctx=128, n_batch=128, logits_all=True, seed=0, verbose=False)
    try:
        ids = llm.tokenize(b"Fixed a crash when the output is a directory; added a --json flag.", add_bos=False)
        llm.reset()
        llm.eval(ids)
        full = np.array(llm.scores[: len(ids)])
        start = len(ids) // 2
        part = np.array(fidelity.gguf_logits(llm, ids, start))
    finally:
        llm.close()
    assert part.shape == (len(ids) - start + 1, full.shape[1])
    assert np.allclose(part, full[start - 1:], atol=1e-4), np.abs(part - full[start - 1:]).max()


@pytest.mark.model
def test_a_row_after_another_reuses_only_the_shared_prefix(built):
    """gguf_logits keeps the KV cache entries the last row shares with this one (the system
    turn); from the first token that differs it evaluates again. A row that shares only a few
    tokens with the last must get the logits of a fresh context (stale entries past the shared
    prefix would shift every figure)."""
    from tuneforge.llama_private import load_llama
    from tuneforge.names import gguf_name

    params = yaml.safe_load((built / "params.yaml").read_text())
    path = built / "models" / TASK_NAME / "gguf" / gguf_name(params["tasks"][TASK_NAME]["model_name"], "f16")
    fresh, reused = (load_llama(path, n_ctx=128, n_batch=128, logits_all=True, seed=0, verbose=False)
                     for _ in range(2))
    try:
        first = fresh.tokenize(b"System: answer in JSON. Fixed a crash when the output is a directory.", add_bos=False)
        second = fresh.tokenize(b"System: answer in JSON. Added a --json flag to every subcommand.", add_bos=False)
        shared = fidelity.first_difference(first, second)
        assert 3 <= shared < len(second) // 2
        fidelity.gguf_logits(reused, first, len(first) - 2)
        assert reused.n_tokens == len(first)
        start = len(second) - 4
        got = np.array(fidelity.gguf_logits(reused, second, start))
        fresh.reset()
        fresh.eval(second)
        want = np.array(fresh.scores[start - 1: len(second)])
    finally:
        fresh.close()
        reused.close()
    assert got.shape == want.shape
    assert np.allclose(got, want, atol=1e-4), np.abs(got - want).max()


def run_in(built: Path, tmp_path: Path, monkeypatch, plant=None, **changes) -> Path:
    """A copy of the built tree, a defect planted in it, eval (with its fidelity checks) run there."""
    root = tmp_path / "w"
    shutil.copytree(built, root)
    with_stage(root, **changes)
    monkeypatch.chdir(root)
    if plant is not None:
        plant(root)
    from stages import eval as stage

    assert stage.main([TASK_NAME]) == 0
    return root


def report(root: Path) -> dict:
    return json.loads((root / f"reports/{TASK_NAME}/fidelity.json").read_text())["models"]


@pytest.mark.model
def test_a_faithful_conversion_is_within_its_bound(built, tmp_path, monkeypatch):
    # Q4_K_M's bound set below anything a quantisation reaches: it fails the gates, eval succeeds
    root = run_in(built, tmp_path, monkeypatch, max_kl_mean={"Q4_K_M": 1e-12})
    out = report(root)
    f16 = out["f16"]
    assert f16["passed"] and f16["kl_mean"] < 1e-6 and f16["top1"] >= 0.99, f16
    assert f16["rows"] == 6 and f16["tokens"] > 6 * 10  # eval.holdout_limit rows, every answer token
    assert out["Q8_0"]["passed"] and out["Q4_K_M"]["passed"] is False
    assert out["Q4_K_M"]["kl_mean"] > out["Q8_0"]["kl_mean"] > f16["kl_mean"]
    # 10 gold rows x (prompt, conversation); the 20 SFT rows; every GGUF checked
    tokenizer = json.loads((root / f"reports/{TASK_NAME}/fidelity.json").read_text())["tokenizer"]
    assert tokenizer == {"gold_texts": 20, "train_texts": 20, "ggufs": 4, "mismatches": 0}
    csv = (root / f"reports/{TASK_NAME}/fidelity/kl_size.csv").read_text().splitlines()
    assert csv[0] == "type,size_mb,kl_mean,kl_p99,top1" and [r.split(",")[0] for r in csv[1:]] == \
        ["f16", "Q8_0", "Q6_K", "Q4_K_M"]
    verdict = json.loads((root / f"reports/{TASK_NAME}/eval/verdict.json").read_text())
    # the random tiny model fails the accuracy gates too: only Q4_K_M's reasons name its KL
    assert [m for m, v in verdict["models"].items() if any(f.startswith("fidelity KL mean ") for f in v["failed"])
            ] == ["Q4_K_M"]
    receipt = json.loads((root / f"reports/{TASK_NAME}/receipts/eval.json").read_text())
    assert receipt["counts"]["extra"]["fidelity_ms"] > 0 and receipt["invariant_holds"]


def edit_gguf(root: Path, edit) -> None:
    """Change the f16 GGUF's tensors in place (gguf-py maps them writable), then re-pin it, as a
    converter that wrote the wrong weights would have: the pin only says the file is the one built."""
    from gguf import GGUFReader

    from tuneforge.gguf_tools import write_sums

    gguf_dir = root / f"models/{TASK_NAME}/gguf"
    reader = GGUFReader(gguf_dir / f"{NAME}-f16.gguf", "r+")
    edit({t.name: t.data for t in reader.tensors})
    reader.data.flush()
    del reader
    write_sums(gguf_dir, sorted(gguf_dir.glob("*.gguf")))


def swap(a: str, b: str):
    def edit(tensors):
        saved = np.array(tensors[a])
        tensors[a][...] = tensors[b]
        tensors[b][...] = saved
    return edit


def scale(name: str, factor: float):
    def edit(tensors):
        tensors[name][...] = tensors[name] * factor
    return edit


# The tiny random model's logits are nearly flat (49k tokens, 64 hidden units), so its KLs are
# orders of magnitude below a real model's: a faithful f16 stays under 1e-6 (the test above), a
# swapped MLP pair moves it to ~1e-5, under the real model's f16 bound; that case runs with a bound
# at the tiny model's scale. A scaled final norm (a norm-offset conversion bug) fails the real bound.
@pytest.mark.model
@pytest.mark.parametrize(("plant", "bound"), [
    (swap("blk.0.ffn_gate.weight", "blk.0.ffn_up.weight"), {"f16": 3e-6}),
    (scale("output_norm.weight", 3.0), {}),
], ids=["swapped", "scaled"])
def test_a_broken_conversion_fails_eval_before_it_decodes(built, tmp_path, monkeypatch, plant, bound):
    monkeypatch.setattr("stages.eval.decode_checked",
                        lambda *a, **k: pytest.fail("eval decoded before the converter's gate"))
    with pytest.raises(RuntimeError, match=r"converter's output \(tuneforge-changelog-actions-f16.gguf\) "
                                           r"is not the merged model: teacher-forced KL mean"):
        run_in(built, tmp_path, monkeypatch, plant=lambda root: edit_gguf(root, plant), max_kl_mean=bound)
    assert report(tmp_path / "w")["f16"]["passed"] is False


@pytest.mark.model
def test_a_row_forced_right_after_its_answer_reuses_the_prompt_and_equals_a_fresh_pass(built):
    """Eval forces a row on the decoder that just answered it: the context still holds the
    prompt, so only the answer's positions are computed, and the logits must be a fresh
    context's bit for bit (else the KL would depend on what eval decoded before)."""
    from transformers import AutoTokenizer

    from tuneforge.decode import Decoder, Settings, prompts, task_gbnf
    from tuneforge.names import eval_order
    from tuneforge.scoring import load_gold
    from tuneforge.tasks import get_task

    task = get_task(TASK_NAME)
    rows = eval_order(load_gold(built / "data/gold/holdout.jsonl", task))[:3]
    forced = fidelity.forced_rows(task, AutoTokenizer.from_pretrained(built / f"models/{TASK_NAME}/merged"), rows)
    path = built / f"models/{TASK_NAME}/gguf/{NAME}-Q8_0.gguf"
    with fidelity.open_ggufs({"Q8_0": path}, 512, 1) as llms:
        fresh = []
        for row in forced:
            llms["Q8_0"].reset()  # nothing kept: a fresh context each row
            fresh.append(fidelity.gguf_logits(llms["Q8_0"], row.ids, row.start))
    with Decoder(path, Settings(max_tokens=24, n_ctx=512, n_threads=1)) as decoder:
        for row, gold, messages, want in zip(forced, rows, prompts(task, rows), fresh, strict=True):
            decoder.answer(messages, task_gbnf(task, gold["text"]))
            held = decoder.llm.input_ids[: decoder.llm.n_tokens].tolist()
            assert fidelity.first_difference(held, row.ids) >= row.start - 1  # the prompt is still there
            got = fidelity.gguf_logits(decoder.llm, row.ids, row.start)
            assert got.shape == want.shape and np.array_equal(got, want), np.abs(got - want).max()
            assert decoder.llm.n_tokens == len(row.ids)


@pytest.mark.model
def test_a_rerun_takes_the_forced_figures_from_the_memo_and_a_bad_entry_is_forced_again(built, tmp_path,
                                                                                        monkeypatch):
    from tuneforge import names

    monkeypatch.setattr(names, "EVAL_CACHE", tmp_path / "memo")  # this test's own memo, empty
    root = run_in(built, tmp_path, monkeypatch)
    first = (root / f"reports/{TASK_NAME}/fidelity.json").read_bytes()

    def counts() -> dict:
        return json.loads((root / f"reports/{TASK_NAME}/receipts/eval.json").read_text())["counts"]["extra"]

    cold = counts()
    assert cold["fidelity_forced"] == 4 * 6 and cold["fidelity_memo_hits"] == 0  # f16 and 3 types, 6 rows
    from stages import eval as stage

    assert stage.main([TASK_NAME]) == 0
    warm = counts()
    assert (warm["fidelity_forced"], warm["fidelity_memo_hits"]) == (0, 24)
    assert (root / f"reports/{TASK_NAME}/fidelity.json").read_bytes() == first
    entry = sorted((tmp_path / "memo" / "kl").rglob("*.json"))[0]
    data = json.loads(entry.read_text())
    data["kl"][0] += 1.0  # a changed figure: its checksum no longer holds
    entry.write_text(json.dumps(data))
    assert stage.main([TASK_NAME]) == 0
    again = counts()
    assert (again["fidelity_forced"], again["fidelity_memo_hits"]) == (1, 23) and again["cache_corrupt"] == 1
    assert (root / f"reports/{TASK_NAME}/fidelity.json").read_bytes() == first


def drop_merge(root: Path) -> tuple[str, int]:
    """Remove, from the merged model's tokenizer.json, the merge that makes a token of the
    first eval row's prompt; returns that row's id and the token's first position."""
    from transformers import AutoTokenizer

    from tuneforge.decode import prompts
    from tuneforge.names import eval_order, prediction_id
    from tuneforge.scoring import load_gold
    from tuneforge.tasks import get_task

    task, merged = get_task(TASK_NAME), root / f"models/{TASK_NAME}/merged"
    first = eval_order(load_gold(root / "data/gold/holdout.jsonl", task))[0]
    tok = AutoTokenizer.from_pretrained(merged)
    ids = fidelity.hf_ids(tok, render(tok, prompts(task, [first])[0], prompt=True))
    spec = json.loads((merged / "tokenizer.json").read_text())
    merges = spec["model"]["merges"]
    made = {"".join(m) if isinstance(m, list) else m.replace(" ", ""): i for i, m in enumerate(merges)}
    pos = next(p for p, t in enumerate(tok.convert_ids_to_tokens(ids)) if len(t) > 3 and t in made)
    del merges[made[tok.convert_ids_to_tokens(ids)[pos]]]
    (merged / "tokenizer.json").write_text(json.dumps(spec))
    return prediction_id(first["text"]), pos


@pytest.mark.model
def test_a_changed_merge_fails_the_round_trip_naming_the_row_and_token(built, tmp_path, monkeypatch):
    planted = {}

    def plant(root: Path) -> None:
        planted["row"], planted["pos"] = drop_merge(root)

    with pytest.raises(fidelity.TokenizerMismatch) as e:
        run_in(built, tmp_path, monkeypatch, plant=plant)
    msg = str(e.value)
    assert f"data/gold/holdout.jsonl row {planted['row']} (prompt)" in msg, msg
    at = int(msg.split("differently from token ")[1].split(" ")[0])
    assert at <= planted["pos"] and ">>" in msg and "text there:" in msg, msg


# ---------------------------------------------------------------- one tokenisation per tokenizer

class CountingVocab:
    """A GGUF stand-in whose tokenize counts its calls and gives the HF tokenizer's ids."""

    def __init__(self, tok, shift: int = 0):
        self.tok, self.shift, self.calls = tok, shift, 0

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        self.calls += 1
        return [i + self.shift for i in fidelity.hf_ids(self.tok, text.decode("utf-8"))]

    def detokenize(self, ids, special=True) -> bytes:
        return self.tok.decode([i - self.shift for i in ids]).encode("utf-8")


def test_the_round_trip_tokenises_once_per_distinct_tokenizer(built):
    from transformers import AutoTokenizer

    from tuneforge.chat_text import Text

    tok = AutoTokenizer.from_pretrained(built / f"models/{TASK_NAME}/merged")
    texts = [Text(f"row {i}", f"Fixed the crash number {i} and the leak") for i in range(5)]
    llms = {k: CountingVocab(tok) for k in ("f16", "Q8_0", "Q4_K_M")}
    assert fidelity.round_trip(tok, llms, texts, {"f16": "a", "Q8_0": "a", "Q4_K_M": "a"}) == 5
    assert [v.calls for v in llms.values()] == [5, 0, 0]
    # a GGUF whose tokenizer bytes differ is tokenised on its own, and its difference is found
    llms["Q4_K_M"] = CountingVocab(tok, shift=1)
    with pytest.raises(fidelity.TokenizerMismatch, match=r"5 of 5 texts .* the Q4_K_M GGUF's vocabulary split"):
        fidelity.round_trip(tok, llms, texts, {"f16": "a", "Q8_0": "a", "Q4_K_M": "b"})
    with pytest.raises(fidelity.TokenizerMismatch, match=r"the f16 GGUF's vocabulary \(and Q8_0, Q4_K_M: the same"):
        fidelity.round_trip(tok, {"f16": CountingVocab(tok, 1), "Q8_0": llms["f16"], "Q4_K_M": llms["f16"]},
                            texts, {"f16": "a", "Q8_0": "a", "Q4_K_M": "a"})


@pytest.mark.model
def test_a_vocabulary_alone_tokenises_as_the_loaded_model_does(built):
    """The round trip's vocab-only Vocab calls llama_tokenize once with its own buffer; its ids
    (special tokens, long texts, non-ASCII) must be Llama.tokenize's on the whole model."""
    from tuneforge.llama_private import load_llama

    path = built / f"models/{TASK_NAME}/gguf/{NAME}-f16.gguf"
    texts = ["<|im_start|>user\nFixed the crash<|im_end|>\n", "Résumé: naïve café 東京 " * 40,
             "x" * 3000, "", "<|im_end|>"]
    llm = load_llama(path, n_ctx=4096, verbose=False)
    vocab = fidelity.Vocab(path)
    try:
        for text in texts:
            for special in (True, False):
                want = llm.tokenize(text.encode(), add_bos=False, special=special)
                assert vocab.tokenize(text.encode(), add_bos=False, special=special) == want, (text[:30], special)
    finally:
        llm.close()
        vocab.close()


def gguf_py_metadata(path: Path) -> dict:
    """Every key/value as gguf-py's GGUFReader decodes it: the reference for
    gguf_tools.read_metadata's own header walk (GGUFReader is ~50x slower on a real vocabulary)."""
    from gguf import GGUFReader, GGUFValueType

    out = {}
    for name, field in GGUFReader(str(path), "r").fields.items():
        if field.types[0] == GGUFValueType.ARRAY and field.types[-1] == GGUFValueType.STRING:
            out[name] = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
        elif field.types[0] == GGUFValueType.ARRAY:
            out[name] = [field.parts[i].tolist()[0] for i in field.data]
        elif field.types[0] == GGUFValueType.STRING:
            out[name] = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        else:
            out[name] = field.parts[field.data[0]].tolist()[0]
    return out


def string_at(data: bytes | bytearray, key: bytes, value: bytes, after: int = 0) -> int:
    """Where a length-prefixed GGUF string `value` first follows metadata key `key`."""
    at = data.index(key, after)
    return data.index(len(value).to_bytes(8, "little") + value, at + len(key)) + 8


@pytest.mark.model
def test_tokenizer_digest_sees_a_swapped_token_and_nothing_else(built, tmp_path):
    """Two GGUFs share a digest only if their tokenizer entries are the same bytes: two token
    strings swapped (every merge intact) change it, and the round trip then fails on that
    GGUF; a changed general.name leaves it, and raw_metadata reads the keys gguf-py reads."""
    from transformers import AutoTokenizer

    from tuneforge.chat_text import Text
    from tuneforge.gguf_tools import raw_metadata, read_metadata, tokenizer_digest
    from tuneforge.llama_private import load_llama

    src = built / f"models/{TASK_NAME}/gguf/{NAME}-f16.gguf"
    assert set(raw_metadata(src)) == {k for k in read_metadata(src) if not k.startswith("GGUF.")}
    assert read_metadata(src) == gguf_py_metadata(src)  # every value, the token arrays included
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(src.read_bytes()[:50_000])
    with pytest.raises(ValueError, match=r"truncated.gguf: metadata entry \d+ of \d+ at byte \d+ is malformed"):
        read_metadata(truncated)
    data = bytearray(src.read_bytes())
    a, b = string_at(data, b"tokenizer.ggml.tokens", "Ġthe".encode()), string_at(data, b"tokenizer.ggml.tokens",
                                                                                  "Ġand".encode())
    n = len("Ġthe".encode())
    data[a:a + n], data[b:b + n] = data[b:b + n], data[a:a + n]
    swapped = tmp_path / "swapped.gguf"
    swapped.write_bytes(data)
    renamed = bytearray(src.read_bytes())
    name = read_metadata(src, ["general.name"])["general.name"].encode()
    at = string_at(renamed, b"general.name", name)
    renamed[at] = ord("x") if renamed[at] != ord("x") else ord("y")
    (tmp_path / "renamed.gguf").write_bytes(renamed)

    assert tokenizer_digest(tmp_path / "renamed.gguf") == tokenizer_digest(src)
    assert tokenizer_digest(swapped) != tokenizer_digest(src)
    tok = AutoTokenizer.from_pretrained(built / f"models/{TASK_NAME}/merged")
    texts = [Text("gold row 1", "Fixed the crash and the leak in the parser")]
    llms = {key: load_llama(path, vocab_only=True, verbose=False) for key, path in
            {"f16": src, "Q8_0": swapped}.items()}
    try:
        vocab = {"f16": tokenizer_digest(src), "Q8_0": tokenizer_digest(swapped)}
        with pytest.raises(fidelity.TokenizerMismatch, match=r"gold row 1: .* the Q8_0 GGUF's vocabulary split"):
            fidelity.round_trip(tok, llms, texts, vocab)
    finally:
        for llm in llms.values():
            llm.close()


# ---------------------------------------------------------------- make bench ONLY=fidelity

@pytest.mark.model
def test_the_bench_times_fidelity_against_a_cold_eval_in_a_copy(built, monkeypatch):
    """The fidelity section runs both stages on a copy of the built tree with an empty machine
    cache: eval decodes every answer again and must write the built metrics.json byte for byte;
    the built tree is not written. With the built tree's cache kept (TUNEFORGE_CACHE not
    replaced), eval would answer from its memo and the section refuses the figure."""
    from tools.bench import fidelity as section
    from tuneforge import config, names

    def digests() -> dict[str, str]:
        from tuneforge.io import sha256_file
        return {str(p.relative_to(built)): sha256_file(p) for p in sorted(built.rglob("*"))
                if p.is_file() and ".cache" not in p.relative_to(built).parts}

    before = digests()
    params = config.load(built / "params.yaml")
    out = section.bench_fidelity(params, root=built, tasks=[TASK_NAME])["tasks"][TASK_NAME]
    assert out["decoded"] > 0 and out["eval"]["wall_s"] > 0 and out["fidelity"]["forced_rows"] == 24
    assert out["share"] == round(out["fidelity"]["s"] / (out["eval"]["stage_s"] - out["fidelity"]["s"]), 4)
    assert digests() == before

    # the planted defect: the copy keeps the memo eval filled when the chain was built
    memo = built / names.CACHE  # an absolute TUNEFORGE_CACHE stays itself
    real_run = section.run

    def keep_cache(cmd, cwd, env):
        return real_run(cmd, cwd, {**env, "TUNEFORGE_CACHE": str(memo)})

    monkeypatch.setattr(section, "run", keep_cache)
    with pytest.raises(RuntimeError, match="did not decode and force cold"):
        section.bench_fidelity(params, root=built, tasks=[TASK_NAME])
