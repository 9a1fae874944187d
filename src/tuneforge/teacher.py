"""Optional teacher: any OpenAI-compatible chat endpoint, off by default.

Answers are cached append-only (one JSON line per answer, keyed by model and
prompt hash), so an interrupted run resumes without asking again. Requests run
concurrently under a bound, each with its own timeout; a transient failure (no
connection, a reset, a timeout, HTTP 429 or 5xx) is retried with exponential backoff
(tenacity), any other (a 4xx: a bad request, a wrong key) is not. A prompt that still
fails is reported, not cached, and asked again on the next run. The API key comes from
the environment (TEACHER_API_KEY), never from params, and is never logged.
"""
from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm import tqdm

from tuneforge.io import canonical_json, sha256_text

log = logging.getLogger("teacher")


def prompt_key(model: str, messages: list[dict]) -> str:
    return sha256_text(canonical_json({"model": model, "messages": messages}))


def load_cache(path: str | Path) -> dict[str, dict]:
    """Last answer wins; a torn last line (killed mid-write) is ignored and re-asked."""
    cache: dict[str, dict] = {}
    if not Path(path).exists():
        return cache
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            cache[row["key"]] = row
    return cache


ATTEMPTS = 4  # a request and 3 retries, waiting 0.5, 1, 2 s (wait_exponential below)


def transient(e: BaseException) -> bool:
    """Worth asking again: the server was busy or unreachable, not the request wrong."""
    if isinstance(e, urllib.error.HTTPError):
        return e.code == 429 or e.code >= 500
    return isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionError))


@retry(retry=retry_if_exception(transient), stop=stop_after_attempt(ATTEMPTS),
       wait=wait_exponential(multiplier=0.5, max=8), reraise=True)
def ask(base_url: str, model: str, messages: list[dict], timeout_s: float) -> str:
    body = json.dumps({"model": model, "messages": messages, "temperature": 0,
                       "response_format": {"type": "json_object"}}).encode()
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get("TEACHER_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", data=body,
                                 headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        payload = json.load(resp)
    return payload["choices"][0]["message"]["content"]


def label_all(prompts: dict[str, list[dict]], cfg: dict, cache_path: str | Path
              ) -> tuple[dict[str, dict], int]:
    """Map record id -> cache row ({key, content} or {key, error}) for every prompt,
    and the number of requests this call made (0 when everything was cached)."""
    model = cfg["model"]
    cache = load_cache(cache_path)
    keys = {rid: prompt_key(model, msgs) for rid, msgs in prompts.items()}
    todo = sorted(rid for rid, k in keys.items() if k not in cache)
    log.info("teacher: %d cached, %d to ask", len(prompts) - len(todo), len(todo))

    def one(rid: str) -> dict:
        try:
            content = ask(cfg["base_url"], model, prompts[rid], cfg["timeout_s"])
            return {"key": keys[rid], "model": model, "content": content}
        except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
            return {"key": keys[rid], "model": model, "error": f"{type(e).__name__}: {e}"}

    Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
    with open(cache_path, "a", encoding="utf-8") as f, \
            ThreadPoolExecutor(max_workers=cfg["concurrency"]) as pool:
        for row in tqdm(pool.map(one, todo), total=len(todo), desc="teacher", disable=None):
            if "error" not in row:  # errors are retried next run, not cached
                f.write(canonical_json(row) + "\n")
                f.flush()
            cache[row["key"]] = row
    return {rid: cache[k] for rid, k in keys.items()}, len(todo)
