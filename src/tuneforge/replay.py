"""Replay: the task model on new inputs with retrieved worked examples, a deterministic
validation gate, escalation only on failure, and every run logged (issue 22 item 3; the
runtime of ../shared/seeds/003-distillation-pipeline-commits.txt, phase 7).

Run: python -m tuneforge.replay --task T [FILE ...] [--k N] [--no-retrieval]
                                [--allow-escalation] [--model GGUF] [--log PATH]

For each input (read as predict reads it: lines or a whole document, normalised and redacted):
1. retrieve the k labeled records of the task's RAG export (data/<task>/exports/rag/rag.jsonl)
   most similar to it, by BM25 over word tokens, computed in DuckDB (the index is built once
   per export and kept in the cache, keyed by the export's SHA-256); `--no-retrieval` is the
   explicit baseline without them. k defaults to the task's eval.retrieval_k, the figure eval
   measures with and without examples on every build: a task that sets it to 0 (measured worse
   with examples) replays without them unless --k asks;
2. put them in the prompt as worked examples (user turn, the record's label as the assistant
   turn; the most similar nearest the input), as many as fit the context;
3. decode greedily under the task's output grammar, as eval and predict do;
4. validate deterministically: the answer parses as the task's JSON, its STYLE checks pass
   (tuneforge.tasks' style_problems: every contract rule code can check) and the decoder did
   not have to close it at the token cap;
5. only when that fails and --allow-escalation is given, ask the teacher endpoint
   (params.yaml evidence.teacher; key from TEACHER_API_KEY) and validate its answer the same way;
6. append one ReplayRecord (schemas/replay_record.schema.json) to the append-only replay log
   and print it as a JSON line.
Exit 1 when an input ends without an accepted answer.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from tuneforge import config, teacher
from tuneforge.cli import ArgumentParser, UserError, run
from tuneforge.decode import Decoder, Settings, task_check, task_gbnf
from tuneforge.io import sha256_text
from tuneforge.llama_private import CLOSE_RESERVE
from tuneforge.names import TaskPaths
from tuneforge.names.shapes import ReplayRecord, ReplayVerdict, Retrieved
from tuneforge.predict import promoted_gguf, read_entries, read_inputs
from tuneforge.retrieval import Index, messages, token_fit
from tuneforge.tasks import Task, get_task
from tuneforge.toolchain import check_toolchain
from tuneforge.verdict import pinned_sha256

log = logging.getLogger("replay")

# the log's record: tuneforge.names.shapes.ReplayRecord (the evidence stage reads the log)


# ---------------------------------------------------------------- validation

def problems(task: Task, answer: str, entry: dict, closed_by_decoder: bool = False) -> tuple[list[str], dict | None]:
    """Why an answer fails the gate (empty: it passes), and its label when it parses."""
    try:
        label = task.parse_label(answer).model_dump(mode="json")
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        return [f"not_schema_valid: {str(e).splitlines()[0]}"], None
    found = [f"style: {code}" for code in task.style_problems(label, entry["text"], entry["hint"])]
    if closed_by_decoder:
        found.append("closed_by_decoder")
    return found, label


# ---------------------------------------------------------------- the command

def append(path: Path, record: ReplayRecord) -> None:
    """One line per run, flushed: a killed run loses at most the line it was writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(record.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    ap = ArgumentParser(prog="python -m tuneforge.replay", description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="input files (as predict reads them); default stdin")
    ap.add_argument("--task", help="a key of params.yaml's tasks (default: the only one listed)")
    ap.add_argument("--model", help="a pinned GGUF (default: the registry's promoted model)")
    ap.add_argument("--k", type=int, help="worked examples retrieved per input (default: the task's "
                                          "eval.retrieval_k; 0 = none, as --no-retrieval)")
    ap.add_argument("--no-retrieval", action="store_true", help="the baseline: no worked examples")
    ap.add_argument("--allow-escalation", action="store_true",
                    help="ask the teacher endpoint (params evidence.teacher) when an answer fails validation")
    ap.add_argument("--log", help="the replay log to append to (default params.yaml tasks.<task>.replay_log, "
                                  "which evidence reads)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    if not Path(args.params).is_file():
        ap.error(f"--params {args.params}: no such file; run from the project root or pass --params FILE")
    if args.k is not None and args.k < 0:
        ap.error(f"--k {args.k}: must be 0 or more")
    inputs = read_inputs(args.files, "input file")

    params, name = config.for_command(args.params, args.task)
    if args.k is None:  # what eval measures for this task (its override applied)
        args.k = params.eval.retrieval_k
        if args.k == 0 and not args.no_retrieval:
            log.info("%s: eval.retrieval_k is 0 for this task (eval measured it worse with worked examples): "
                     "no retrieval; --k N retrieves anyway", name)
    args.no_retrieval = args.no_retrieval or args.k == 0
    task, paths = get_task(name), TaskPaths(name)
    entries = [e for shown, text in inputs for e in read_entries(shown, text, None, None, task.input_kind)]
    if not entries:
        log.warning("no inputs")
        return 0
    check_toolchain(params.toolchain.model_dump(), ["llama_cpp_python"])
    model = Path(args.model) if args.model else promoted_gguf(paths.registry)
    model_sha = pinned_sha256(model)
    rag = paths.rag
    if not args.no_retrieval and not rag.is_file():
        raise UserError(f"{rag}: no RAG export to retrieve from: build it (dvc repro export@{name}) "
                        "or pass --no-retrieval")
    index = None if args.no_retrieval else Index(rag)
    teach = params.evidence.teacher
    log_path = Path(args.log) if args.log else params.tasks[name].replay_log

    settings = Settings.from_eval(params.eval.model_dump())
    decoder = Decoder(model, settings)  # each entry's own grammar (task_gbnf)
    # the prompt must leave room for the answer and the decoder's closing reserve
    budget = settings.n_ctx - settings.max_tokens - CLOSE_RESERVE

    fits = token_fit(lambda text: len(decoder.llm.tokenize(text.encode(), add_bos=False)), budget)

    unresolved = 0
    for entry in entries:
        found = [] if index is None else index.search(entry["text"], args.k)
        chat, kept = messages(task, entry, found, fits)
        answer = decoder.answer(chat, task_gbnf(task, entry["text"]), task_check(task, entry["text"]))
        bad, label = problems(task, answer.text, entry, answer.closed_by_decoder)
        verdict: ReplayVerdict = "rejected" if bad else "accepted"
        t_answer = t_bad = None
        if bad and args.allow_escalation:
            try:
                t_answer = teacher.ask(teach.base_url, teach.model, task.messages(entry["text"], entry["hint"],
                                                                                  entry["product"]), teach.timeout_s)
                t_bad, t_label = problems(task, t_answer, entry)
            except OSError as e:  # URLError, timeouts: the teacher was asked and did not answer
                t_bad, t_label = [f"teacher_unreachable: {type(e).__name__}: {e}"], None
            verdict = "escalated_rejected" if t_bad else "escalated_accepted"
            label = None if t_bad else t_label
        elif bad:
            label = None
        record = ReplayRecord(
            task=name, input_sha256=sha256_text(entry["text"]), text=entry["text"], hint=entry["hint"],
            product=entry["product"], model_sha256=model_sha,
            retrieval=None if index is None else [Retrieved(id=e["id"], score=e["score"]) for e in kept],
            answer=answer.text, closed_by_decoder=answer.closed_by_decoder, problems=bad,
            escalated=t_bad is not None, teacher_answer=t_answer, teacher_problems=t_bad, verdict=verdict,
            label=label)
        append(log_path, record)
        print(record.model_dump_json())
        unresolved += label is None
    log.info("%d inputs, %d accepted (%s), log %s", len(entries), len(entries) - unresolved,
             "no retrieval" if index is None else f"k={args.k}", log_path)
    return 1 if unresolved else 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.replay"))
