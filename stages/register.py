"""register: pinned GGUFs + eval's gate verdict -> Ollama Modelfiles and registry entries.

Run: python -m stages.register
In:  <gguf_dir>/<convert.model_name>-<TYPE>.gguf + SHA256SUMS, <eval_dir>/verdict.json,
     paths.metrics, params.register
     paths.adapter + paths.base_model sidecars (the card's training recipe and base origin; the
     base name, dataset and adapter hashes come from each GGUF's provenance, which convert wrote),
     <eval_dir>/predictions.jsonl, paths.gold, paths.fidelity (the card's fidelity section)
Out: <modelfile_dir>/<name>-<TYPE>.Modelfile, paths.registry (models/registry.json),
     paths.model_card (what ships, how it was built, its figures and limits),
     <receipts_dir>/register.json

It runs after eval (dvc.yaml says why): the verdict decides what happens. A GGUF whose
SHA-256 differs from its pin, or from the SHA-256 the verdict judged, is refused, as is a
verdict made with other eval params or another gold file; every check and metadata read
runs before anything is written or `ollama create`d. The registry names the verdict
(path and SHA-256) it acted on, so predict can check the chain. Each Modelfile's TEMPLATE is derived from
the chat template inside that GGUF, its stop tokens from the GGUF's EOS/EOT tokens.
With `ollama` on PATH (register.ollama: auto) every passing model is `ollama create`d;
otherwise the registry file alone records it. A model failing a gate is marked
`rejected` and never created nor promoted; the smallest passing one is `promoted`.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuneforge import config, modelcard, names
from tuneforge.gguf_tools import provenance_of, read_metadata, verify_pin
from tuneforge.io import read_jsonl, read_models, sha256_file, write_json, write_text
from tuneforge.names import SIDECAR, prediction_id
from tuneforge.names.shapes import (
    AdapterSidecar,
    BaseSidecar,
    FidelityReport,
    FileHash,
    GgufProvenance,
    Prediction,
    Registry,
    RegistryEntry,
    RegistryMetrics,
    read_model,
    read_sidecar,
    where,
)
from tuneforge.ollama import (
    check_ollama_name,
    derive_turns,
    modelfile,
    ollama_available,
    ollama_create,
    stop_tokens,
)
from tuneforge.receipts import Receipt
from tuneforge.tasks import Task, get_task
from tuneforge.template_check import check_templates
from tuneforge.verdict import Verdict, check_judged, check_made_on, load_verdict

log = logging.getLogger("register")

TOKEN_KEYS = ["tokenizer.chat_template", "tokenizer.ggml.tokens", "tokenizer.ggml.bos_token_id",
              "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "general.name",
              "general.license"]


def template_and_stops(gguf: Path) -> tuple[Any, list[str], str, str | None]:
    """The GGUF's chat template as per-role turns, its stop strings, general.name and
    general.license (None when unset), from one read of its metadata."""
    meta = read_metadata(gguf, TOKEN_KEYS)
    if "tokenizer.chat_template" not in meta:
        raise ValueError(f"{gguf}: no tokenizer.chat_template; cannot derive a Modelfile TEMPLATE")
    tokens = meta["tokenizer.ggml.tokens"]

    def tok(key: str) -> str:
        return tokens[meta[key]] if key in meta else ""

    fmt = derive_turns(meta["tokenizer.chat_template"], tok("tokenizer.ggml.bos_token_id"),
                       tok("tokenizer.ggml.eos_token_id"))
    stops = stop_tokens(fmt, [tok("tokenizer.ggml.eos_token_id"),
                              tok("tokenizer.ggml.eot_token_id")])
    return fmt, stops, meta.get("general.name", ""), meta.get("general.license")


def status_of(qtype: str, verdict: Verdict) -> str:
    if verdict.models[qtype].verdict != "pass":
        return "rejected"
    return "promoted" if verdict.promoted == qtype else "candidate"


def gguf_provenance(gguf: Path, adapter: AdapterSidecar, adapter_path: Path) -> GgufProvenance:
    """What convert wrote into the GGUF (quantize copies it on), bound to the adapter sidecar
    the card takes its training recipe from: the recipe must be the one that made this file."""
    try:
        prov = GgufProvenance.model_validate(provenance_of(gguf))
    except ValidationError as e:
        raise ValueError(f"{gguf}: general.description is not the provenance convert writes "
                         f"({where(e)}): rerun convert (dvc repro)") from None
    if prov.kind != "finetuned" or prov.adapter_sha256 != adapter.adapter_sha256:
        raise ValueError(f"{gguf} was converted from adapter {prov.adapter_sha256} ({prov.kind}), not "
                         f"the one {adapter_path} describes ({adapter.adapter_sha256}): rebuild (dvc repro)")
    return prov


def card_examples(predictions: Path, gold: Path, model: str, n: int = 2) -> list[dict]:
    """The first `n` holdout rows eval answered with `model` (with hints), joined with the
    gold entry text by eval's row id."""
    rows = [r for r in read_models(predictions, Prediction) if r.model == model and r.variant == "hint"]
    by_id = {prediction_id(g["text"]): g for g in read_jsonl(gold)}
    return [{**r.model_dump(), "text": by_id[r.id]["text"], "hint": by_id[r.id].get("hint")}
            for r in rows[:n]]


def template_conversations(task: Task, gold: list[dict]) -> list[list[dict]]:
    """What the chat-template round trip renders: every gold row's prompt (system + user turn,
    as eval and predict send it), and one two-turn conversation (a prompt, its gold answer,
    the next row's question), so the template's assistant branch is rendered too."""
    convs = [task.messages(r["text"], r.get("hint"), r.get("product")) for r in gold]
    if len(gold) > 1:
        answer = {"role": "assistant", "content": task.render_label(gold[0]["label"])}
        convs.append([*convs[0], answer, convs[1][-1]])
    return convs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    params = config.from_argv("register", argv)
    cfg, paths, task = params.section("register"), params.paths, get_task(params.task_name)
    name, types = params.task.model_name, params.quantize.types
    backend = "ollama" if cfg["ollama"] == "auto" and ollama_available() else "registry-file"
    receipt = Receipt("register", params.declared(), packages=["pydantic"])
    verdict_path = paths.verdict
    verdict = load_verdict(verdict_path)
    verdict_sha = sha256_file(verdict_path)
    check_made_on(verdict, verdict_path, params, params.task.gold)
    metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    missing = sorted(set(types) - set(verdict.models))
    if missing:
        raise ValueError(f"{verdict_path} has no verdict for {missing}: rerun eval")
    gguf_dir, mf_dir = paths.gguf_dir, paths.modelfile_dir
    receipt.inputs += [verdict_path, paths.metrics]

    # Every check and read first; nothing is written or created until all of them pass.
    conversations = template_conversations(task, list(read_jsonl(params.task.gold)))
    fidelity = read_model(paths.fidelity, FidelityReport, "rerun eval, which writes it (dvc repro)")  # the card's
    receipt.inputs.append(paths.fidelity)
    template_prompts = 0
    entries: list[RegistryEntry] = []
    modelfiles, promoted = [], None
    for qtype in types:
        gguf = gguf_dir / names.gguf_name(name, qtype)
        sha = verify_pin(gguf)  # refuses a file that is not the one quantize pinned
        judged = check_judged(verdict, verdict_path, qtype, gguf, sha)  # ... nor the one eval judged
        receipt.inputs.append(gguf)
        tag = qtype.lower()
        full = check_ollama_name(f"{cfg['namespace']}/{name}:{tag}" if cfg["namespace"]
                                 else f"{name}:{tag}")
        fmt, stops, gguf_name, licence = template_and_stops(gguf)
        mf_path = mf_dir / names.modelfile_name(name, qtype)
        header = (f"{full}: generated by tuneforge register from {gguf.name}\n"
                  f"sha256 {sha}; general.name {gguf_name}; gate verdict {judged.verdict}")
        text = modelfile(
            os.path.relpath(gguf, mf_path.parent), fmt, stops, task.system_prompt, {
                # the context, token cap and repeat penalty eval measured the model with (the
                # task's own eval overrides: a commit diff needs 2048 tokens where a changelog
                # entry needs 1024)
                "temperature": 0, "num_predict": params.eval.max_tokens,
                "repeat_penalty": params.eval.repeat_penalty, "repeat_last_n": params.eval.repeat_last_n,
                "num_ctx": params.eval.n_ctx},
            header, licence)
        # The Modelfile's TEMPLATE (Go-template semantics), the GGUF's embedded template (as
        # llama-cpp-python renders it) and the merged model's HF template must render every
        # conversation to the same string, with the same stop tokens; a mismatch stops here.
        check = check_templates(paths.merged, gguf, text, conversations)
        template_prompts = check["prompts"]
        log.info("%s: chat templates agree on %d conversations; stops %s", mf_path.name, check["prompts"],
                 check["stops"]["modelfile"])
        modelfiles.append((mf_path, text))
        status = status_of(qtype, verdict)
        if status == "promoted":
            promoted = full
        entries.append(RegistryEntry(
            name=full, model=name, tag=tag, quantization=qtype, gguf=str(gguf), sha256=sha,
            size_bytes=gguf.stat().st_size, modelfile=str(mf_path), stop=stops, verdict=judged.verdict,
            failed_gates=judged.failed, status=status, license=licence,
            # created below, before anything reads it; a failing `ollama create` stops the run
            ollama_created=backend == "ollama" and status != "rejected",
            metrics=RegistryMetrics.of(metrics.get(qtype, {}), task.fields),
        ))
    adapter_path, base_path = paths.adapter / SIDECAR, paths.base_model / SIDECAR
    adapter, base = read_sidecar(paths.adapter, AdapterSidecar), read_sidecar(paths.base_model, BaseSidecar).root
    provenances = {e.quantization: gguf_provenance(Path(e.gguf), adapter, adapter_path) for e in entries}
    predictions = paths.predictions
    shown = verdict.promoted or types[0]  # a GGUF this build ships, never the f16 parity check
    if base.name != provenances[shown].base_model:
        raise ValueError(f"{base_path} is base {base.name!r}, but {shown} was converted from "
                         f"{provenances[shown].base_model!r}: rebuild (dvc repro)")
    card = modelcard.render(
        task_name=task.name,
        description=task.output_model.model_json_schema().get("description", ""),
        schema_path=f"schemas/{task.name}.output.schema.json", entries=entries,
        promoted=promoted, verdict=verdict, metrics=metrics,
        provenance=provenances[shown], adapter=adapter, base=base,
        examples=card_examples(predictions, Path(params.task.gold), shown),
        backend=backend, fields=task.fields, notes=task.card_notes,
        fidelity=fidelity, template_prompts=template_prompts, narrowed=task.narrow_schema is not None,
        penalty=(params.eval.repeat_penalty, params.eval.repeat_last_n))

    for (mf_path, text), entry in zip(modelfiles, entries, strict=True):
        write_text(mf_path, text)
        if entry.ollama_created:
            ollama_create(entry.name, mf_path)
        receipt.outputs.append(mf_path)
        log.info("%s: %s%s", entry.name, entry.status, " (ollama create)" if entry.ollama_created else "")
    # the verdict this registry acted on: predict trusts an entry only while it is unchanged
    registry = Registry(backend=backend, release=verdict.release, promoted=promoted,
                        verdict=FileHash(path=str(verdict_path), sha256=verdict_sha), models=entries)
    write_json(paths.registry, registry.model_dump(mode="json"))
    receipt.outputs.append(paths.registry)

    write_text(paths.model_card, card)
    receipt.inputs += [adapter_path, base_path, predictions, params.task.gold]
    receipt.outputs.append(paths.model_card)
    rejected = sum(e.status == "rejected" for e in entries)
    receipt.finish(paths.receipt("register"), records_in=len(entries),
                   records_out=len(entries), extra={"rejected": rejected,
                                                    "ollama_created": sum(e.ollama_created
                                                                          for e in entries)})
    where = ("ollama create for each passing model" if backend == "ollama"
             else f"ollama not on PATH: recorded in {paths.registry} only")
    log.info("registered %d models (%d rejected, promoted %s): %s", len(entries), rejected,
             promoted or "none", where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
