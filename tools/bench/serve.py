"""The serve section (issue 22): `make serve`'s requests per second and latency at 1 and 4
concurrent clients on loopback, beside predict's in-process rate on the same inputs in the same
run; and the retrieval index's latency per query at the full RAG export size.

The server is started as a user starts it (`python -m tuneforge.serve --task T`, the promoted
GGUF, every core); the baseline opens the same GGUF in this process (tuneforge.decode.Decoder,
as predict does) and answers the same messages the server's defaults build (serve.with_task_defaults),
one after another.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tools.bench.common import ROOT
from tuneforge.decode import Decoder, Settings, task_check
from tuneforge.names import TaskPaths, eval_order, gguf_name
from tuneforge.predict import promoted_gguf
from tuneforge.retrieval import Index
from tuneforge.scoring import load_gold
from tuneforge.serve import with_task_defaults
from tuneforge.tasks import get_task

CLIENTS = (1, 4)


def quantiles(latencies: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds (statistics' inclusive method: no value outside the sample)."""
    cuts = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
    return {"p50_ms": round(statistics.median(latencies) * 1000, 1), "p95_ms": round(cuts[18] * 1000, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> tuple[float, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        reply = json.loads(r.read())
    return time.perf_counter() - t0, reply


def start_server(task: str, model: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "tuneforge.serve", "--task", task, "--model", f"{task}={model}",
           "--port", str(port), "--threads", str(threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=5):
                return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"tuneforge.serve did not come up:\n{proc.communicate()[0][-3000:]}") from None
            time.sleep(0.5)


def bench_serve(params, task_name: str, n: int = 16, queries: int = 200) -> dict[str, Any]:
    task, paths = get_task(task_name), TaskPaths(task_name)
    promoted = True
    try:
        model = promoted_gguf(paths.registry)
    except LookupError:  # a build that promoted nothing still serves: time its report model, pinned
        promoted = False
        model = paths.gguf_dir / gguf_name(params.tasks[task_name].model_name, params.eval.report_model)
        print(f"bench serve: {task_name} promoted no model; timing its {model.name} instead", flush=True)
    settings = Settings.from_eval(params.eval.model_dump())
    gold = load_gold(ROOT / params.tasks[task_name].gold, task)
    rows = eval_order(gold, n)
    raw = [r["text"] for r in rows]
    bodies = [with_task_defaults({"messages": [{"role": "user", "content": t}]}, task, settings.repeat_penalty)
              for t in raw]

    # baseline: predict's way, in this process, one after another
    latencies, tokens = [], 0
    with Decoder(model, settings) as decoder:
        t0 = time.perf_counter()
        for body, text in zip(bodies, raw, strict=True):  # each under the grammar the server decodes it under
            t = time.perf_counter()
            decoder.answer(body["messages"], body["grammar"], task_check(task, text))  # as predict and the server
            latencies.append(time.perf_counter() - t)
            tokens += decoder.last["usage"]["completion_tokens"]
        wall = time.perf_counter() - t0
    out: dict[str, Any] = {"model": model.name, "promoted": promoted, "requests": len(raw),
                           "threads": settings.n_threads,
                           "in_process": {"requests_per_s": round(len(raw) / wall, 3),
                                          "completion_tokens": tokens, **quantiles(latencies)}}

    proc, base = start_server(task_name, model, settings.n_threads)
    try:
        url = f"{base}/v1/chat/completions"
        bodies = [{"model": task_name, "messages": [{"role": "user", "content": t}],
                   "max_tokens": settings.max_tokens} for t in raw]
        post(url, bodies[0])  # warm: the first request pays for the first decode
        for clients in CLIENTS:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                done = list(pool.map(lambda b: post(url, b), bodies))
            wall = time.perf_counter() - t0
            for _, reply in done:  # every answer parses as the task's JSON (the server's grammar default)
                task.parse_label(reply["choices"][0]["message"]["content"])
            out[f"served_{clients}_clients"] = {
                "requests_per_s": round(len(bodies) / wall, 3),
                "completion_tokens": sum(r["usage"]["completion_tokens"] for _, r in done),
                **quantiles([lat for lat, _ in done])}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    out["served_vs_in_process"] = round(out["served_1_clients"]["requests_per_s"]
                                        / out["in_process"]["requests_per_s"], 3)

    # retrieval: the BM25 index over the whole RAG export, built cold in a scratch cache
    rag, k = paths.rag, params.eval.retrieval_k or 3
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as scratch:
        t0 = time.perf_counter()
        index = Index(rag, Path(scratch))
        build_s = time.perf_counter() - t0
        texts = [r["text"] for r in eval_order(gold, 0)]
        searched = [texts[i % len(texts)] for i in range(queries)]
        lat = []
        for q in searched:
            t = time.perf_counter()
            index.search(q, k)
            lat.append(time.perf_counter() - t)
        index.db.close()
    out["retrieval"] = {"rag_rows": index.n, "index_build_s": round(build_s, 2), "queries": queries,
                        "k": k, **quantiles(lat)}
    out["cores"] = os.cpu_count()
    return out
