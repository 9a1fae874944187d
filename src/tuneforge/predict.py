"""Run a built model on new entries: one strict-JSON answer per entry, decoded as eval does.

Run: python -m tuneforge.predict [--task T] [--model GGUF] [--hint H] [--product P] [--format F] [FILE ...]
     python -m tuneforge.predict [--task T] --schema [FILE ...]
In:  entries from each FILE (or stdin), UTF-8: a .jsonl file holds {"text", "hint"?, "product"?} per
     line; any other file is plain text, read as the task's input_kind says: one entry per line
     (blank lines skipped; changelog-actions) or the whole file as one entry, its line breaks kept
     (a document: commit-messages reads a diff, `git diff --staged | python -m tuneforge.predict
     --task commit-messages`)
Out: JSONL on stdout, one line per entry, in input order:
     {"entry", "hint", "product", "output", "label", "error", "closed_by_decoder", "steered"}
     (`label` is the parsed answer, null with an `error` when it does not parse;
     `closed_by_decoder` is true when the answer was still open at eval.max_tokens, a model
     looping, usually, and the decoder closed it: it parses, but the model never finished it;
     `steered` counts the answer's tokens the task's answer check chose over the model's
     first choice: commit-messages names only what the diff shows);
     with --format, each parsed label alone, rendered: `json` (the task's canonical JSON, one
     line) or one of the task's own formats (commit-messages: `git`, a ready commit message),
     entries apart by a blank line, an answer that does not parse named on stderr instead,
     and a `predict: note: ...` line on stderr for what that format cannot show (Task.advice:
     a commit's `ignore` paths, to unstage);
     exit 1 when any answer did not parse; with --schema, no model runs: each entry's line is the
     JSON schema its answer is decoded under (the task's, narrowed to that input where the task
     narrows: Ollama's `format` for the same constraint); a bad input (a missing file, bytes that are not
     UTF-8, a bad .jsonl row, a --model that does not exist, a --format the task lacks) is
     one line on stderr, exit 2

The model is the promoted one in the task's registry (models/<task>/registry.json), run only while its bytes
are the ones register promoted and eval's verdict passed (tuneforge.verdict.check_promoted),
unless --model names a GGUF; either must match the SHA256SUMS pin beside it (a file with
no pin runs only with --allow-unpinned). The toolchain is checked as eval checks it.
Entries are redacted as backfill does for training data, and a line entry is whitespace-normalised
as backfill does (a document keeps its lines), so the model sees what it was trained on and no
secret reaches the prompt or the output.
Decoding is eval's own (tuneforge.decode): greedy, the GGUF's own chat template, the task's prompt, a grammar
compiled from the task's output schema narrowed to the entry (Task.narrow_schema: a commit's `ignore`
is the diff's junk paths by the contract's list), eval.max_tokens / n_ctx / n_threads / repeat_penalty /
repeat_last_n from params.yaml.
"""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from tuneforge import config
from tuneforge.cli import ArgumentParser, UserError, decode_utf8, read_input, run
from tuneforge.decode import Settings, decode
from tuneforge.names import TaskPaths
from tuneforge.names.shapes import Registry, read_model
from tuneforge.redact import redact
from tuneforge.tasks import Task, get_task
from tuneforge.text import normalise_ws
from tuneforge.toolchain import check_toolchain
from tuneforge.verdict import check_promoted, pinned_sha256

log = logging.getLogger("predict")


def clean(text: str) -> str:
    """A line entry (or a hint) as backfill cleans one: spacing normalised, secrets redacted."""
    return redact(normalise_ws(text))[0]


def clean_document(text: str) -> str:
    """A document entry (a diff): secrets redacted, every line and its spacing kept."""
    return redact(text)[0]


def jsonl_rows(name: str, text: str) -> list[tuple[str, str | None, str | None]]:
    """(text, hint, product) of each .jsonl row; a bad line fails naming file, line and fix."""
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            entry, hint, product = row["text"], row.get("hint"), row.get("product")
            if not isinstance(entry, str) or not entry.strip():
                raise ValueError("'text' must be a non-empty string")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"{name}:{i}: not an entry object ({type(e).__name__}: {e}); each line "
                            'must be {"text": "...", "hint"?: "...", "product"?: "..."}') from None
        rows.append((entry, hint, product))
    return rows


def read_inputs(files: list[str], what: str) -> list[tuple[str, str]]:
    """(name shown, text) of each input file ('-' or none: stdin), read and decoded first, so a bad
    input fails before any model is looked at; a .jsonl file's rows are checked now too."""
    inputs = []
    for name in files or ["-"]:
        shown = "<stdin>" if name == "-" else name
        inputs.append((shown, decode_utf8(read_input(name, what), shown)))
        if shown.endswith(".jsonl"):
            jsonl_rows(shown, inputs[-1][1])  # its rows are entries whatever the task
    return inputs


def read_entries(name: str, text: str, hint: str | None, product: str | None,
                 input_kind: str = "line") -> list[dict]:
    """Entries as {"text", "hint", "product"}: each .jsonl row, or, in a plain-text input, each
    non-blank line ("line") or the whole text, when it is not blank ("document")."""
    if name.endswith(".jsonl"):
        rows = jsonl_rows(name, text)
    elif input_kind == "document":
        rows = [(text, None, None)] if text.strip() else []
    else:
        rows = [(line, None, None) for line in text.splitlines() if line.strip()]
    clean_text = clean_document if input_kind == "document" else clean
    entries = []
    for entry, row_hint, row_product in rows:
        row_hint, row_product = row_hint or hint, row_product or product
        entries.append({"text": clean_text(entry), "hint": clean(row_hint) if row_hint else None,
                        "product": row_product})
    return entries


def renderers(task: Task) -> dict[str, Callable[[dict], str]]:
    """--format's choices: json (the task's canonical rendering) and the task's own formats."""
    return {"json": task.render_label, **task.formats}


def render(task: Task, label: dict, fmt: str) -> str:
    """A parsed label as --format `fmt` prints it; predict ends each rendering itself, so a
    renderer's own final newline goes."""
    return renderers(task)[fmt](label).rstrip("\n")


def promoted_gguf(registry: Path) -> Path:
    reg = read_model(registry, Registry, "build first (dvc repro) or pass --model")
    promoted = next((m for m in reg.models if m.status == "promoted"), None)
    if promoted is None:
        failed = "; ".join(f"{m.quantization}: {', '.join(m.failed_gates) or m.status}" for m in reg.models)
        raise LookupError(f"{registry}: no model is promoted (every one failed its release gates: "
                          f"{failed}); pass --model to run one anyway")
    check_promoted(registry, reg, promoted)  # the file, its registry entry and its verdict agree
    return Path(promoted.gguf)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    ap = ArgumentParser(prog="python -m tuneforge.predict", description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="entry files (.txt: one per line; .jsonl); default stdin")
    ap.add_argument("--model", help="a pinned GGUF (default: the registry's promoted model)")
    ap.add_argument("--hint", help="section heading for entries that carry none")
    ap.add_argument("--product", help="product name for entries that carry none")
    ap.add_argument("--allow-unpinned", action="store_true",
                    help="run a --model GGUF that no SHA256SUMS pins (a pinned file that changed never runs)")
    ap.add_argument("--task", help="a key of params.yaml's tasks (default: the only one listed)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--format", help="print each parsed label alone, rendered: json, or one of the task's own "
                    "formats (commit-messages: git); default: one JSONL record per entry")
    ap.add_argument("--schema", action="store_true",
                    help="run no model: print, one line per entry, the JSON schema its answer is decoded under "
                    "(pass it as Ollama's `format` for eval's constraint)")
    args = ap.parse_args(argv)
    if not Path(args.params).is_file():
        ap.error(f"--params {args.params}: no such file; run from the project root or pass --params FILE")
    if args.model and not Path(args.model).is_file():
        ap.error(f"--model {args.model}: no such GGUF; name a built one (models/<task>/gguf/*.gguf) or leave "
                 "--model out to run the registry's promoted model")
    inputs = read_inputs(args.files, "entry file")

    params, name = config.for_command(args.params, args.task)
    task, cfg = get_task(name), params.eval.model_dump()
    if args.format is not None and args.format not in renderers(task):
        ap.error(f"--format {args.format}: task {name} has no such format; available: "
                 f"{', '.join(renderers(task))}")
    entries = [e for shown, text in inputs
               for e in read_entries(shown, text, args.hint, args.product, task.input_kind)]
    if not entries:
        log.warning("no entries in %s", ", ".join(args.files) or "stdin")
        return 0
    if args.schema:
        for entry in entries:
            print(json.dumps(task.output_schema(entry["text"]), ensure_ascii=False, sort_keys=True))
        return 0

    check_toolchain(params.toolchain.model_dump(), ["llama_cpp_python"])  # the runtime eval decoded with
    model = Path(args.model) if args.model else promoted_gguf(TaskPaths(name).registry)
    sha256 = pinned_sha256(model, args.allow_unpinned)

    answers = decode(model, task, entries, Settings.from_eval(cfg))
    failed = closed = printed = 0
    for i, (entry, (output, closed_by_decoder, steered)) in enumerate(zip(entries, answers, strict=True), 1):
        try:
            label, error = task.parse_label(output).model_dump(mode="json"), None
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            label, error = None, str(e).splitlines()[0]
            failed += 1
        closed += closed_by_decoder
        if args.format is None:
            print(json.dumps({"entry": entry["text"], "hint": entry["hint"], "product": entry["product"],
                              "output": output, "label": label, "error": error,
                              "closed_by_decoder": closed_by_decoder, "steered": steered}, ensure_ascii=False))
        elif label is None:
            log.error("entry %d: the answer does not parse (%s); nothing printed for it", i, error)
        else:
            if printed and args.format != "json":
                print()  # a multi-line rendering (a commit message) ends where the next begins
            print(render(task, label, args.format))
            printed += 1
            if args.format != "json" and task.advice is not None and (note := task.advice(label)):
                log.warning("note: %s", note)  # what this format cannot show (the hook passes it on)
    log.info("%d entries, %d answers parsed (%d of them closed by the decoder at max_tokens), %s (sha256 %s)",
             len(entries), len(entries) - failed, closed, model, sha256[:16])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.predict"))
