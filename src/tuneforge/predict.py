"""Run a built model on new entries: one strict-JSON answer per entry, decoded as eval does.

Run: python -m tuneforge.predict [--task T] [--model GGUF] [--hint H] [--product P] [FILE ...]
In:  entries from each FILE (or stdin): a text file holds one entry per line (blank
     lines skipped); a .jsonl file holds {"text", "hint"?, "product"?} per line; both UTF-8
Out: JSONL on stdout, one line per entry, in input order:
     {"entry", "hint", "product", "output", "label", "error", "closed_by_decoder"}
     (`label` is the parsed answer, null with an `error` when it does not parse;
     `closed_by_decoder` is true when the answer was still open at eval.max_tokens, a model
     looping, usually, and the decoder closed it: it parses, but the model never finished it);
     exit 1 when any answer did not parse; a bad input (a missing file, bytes that are not
     UTF-8, a bad .jsonl row, a --model that does not exist) is one line on stderr, exit 2

The model is the promoted one in the task's registry (models/<task>/registry.json), run only while its bytes
are the ones register promoted and eval's verdict passed (tuneforge.verdict.check_promoted),
unless --model names a GGUF; either must match the SHA256SUMS pin beside it (a file with
no pin runs only with --allow-unpinned). The toolchain is checked as eval checks it.
Entries are whitespace-normalised and redacted as backfill does for training data, so the
model sees what it was trained on and no secret reaches the prompt or the output.
Decoding is eval's own (tuneforge.decode): greedy, the GGUF's own chat template, the task's prompt, a grammar
compiled from the task's output schema, eval.max_tokens / n_ctx / n_threads from params.yaml.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from tuneforge import config
from tuneforge.cli import ArgumentParser, UserError, decode_utf8, read_input, run
from tuneforge.decode import Settings, decode
from tuneforge.names import TaskPaths
from tuneforge.names.shapes import Registry, read_model
from tuneforge.redact import redact
from tuneforge.tasks import get_task
from tuneforge.text import normalise_ws
from tuneforge.toolchain import check_toolchain
from tuneforge.verdict import check_promoted, pinned_sha256

log = logging.getLogger("predict")


def clean(text: str) -> str:
    return redact(normalise_ws(text))[0]


def read_entries(name: str, lines: list[str], hint: str | None, product: str | None) -> list[dict]:
    """Entries as {"text", "hint", "product"}; a bad .jsonl line fails naming file, line and fix."""
    entries = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if name.endswith(".jsonl"):
            try:
                row = json.loads(line)
                text, row_hint, row_product = row["text"], row.get("hint"), row.get("product")
                if not isinstance(text, str) or not text.strip():
                    raise ValueError("'text' must be a non-empty string")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                raise UserError(f"{name}:{i}: not an entry object ({type(e).__name__}: {e}); each line "
                                'must be {"text": "...", "hint"?: "...", "product"?: "..."}') from None
        else:
            text, row_hint, row_product = line, None, None
        row_hint, row_product = row_hint or hint, row_product or product
        entries.append({"text": clean(text), "hint": clean(row_hint) if row_hint else None,
                        "product": row_product})
    return entries


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
    args = ap.parse_args(argv)
    if not Path(args.params).is_file():
        ap.error(f"--params {args.params}: no such file; run from the project root or pass --params FILE")
    if args.model and not Path(args.model).is_file():
        ap.error(f"--model {args.model}: no such GGUF; name a built one (models/<task>/gguf/*.gguf) or leave "
                 "--model out to run the registry's promoted model")
    entries = []  # read first: a bad input fails before any model is looked at
    for name in args.files or ["-"]:
        text = decode_utf8(read_input(name, "entry file"), "<stdin>" if name == "-" else name)
        entries += read_entries("<stdin>" if name == "-" else name, text.splitlines(), args.hint, args.product)
    if not entries:
        log.warning("no entries in %s", ", ".join(args.files) or "stdin")
        return 0

    params, name = config.for_command(args.params, args.task)
    task, cfg = get_task(name), params.eval.model_dump()
    check_toolchain(params.toolchain.model_dump(), ["llama_cpp_python"])  # the runtime eval decoded with
    model = Path(args.model) if args.model else promoted_gguf(TaskPaths(name).registry)
    sha256 = pinned_sha256(model, args.allow_unpinned)

    answers = decode(model, task, entries, Settings.from_eval(cfg))
    failed = closed = 0
    for entry, (output, closed_by_decoder) in zip(entries, answers, strict=True):
        try:
            label, error = task.parse_label(output).model_dump(mode="json"), None
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            label, error = None, str(e).splitlines()[0]
            failed += 1
        print(json.dumps({"entry": entry["text"], "hint": entry["hint"], "product": entry["product"],
                          "output": output, "label": label, "error": error,
                          "closed_by_decoder": closed_by_decoder}, ensure_ascii=False))
        closed += closed_by_decoder
    log.info("%d entries, %d answers parsed (%d of them closed by the decoder at max_tokens), %s (sha256 %s)",
             len(entries), len(entries) - failed, closed, model, sha256[:16])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.predict"))
