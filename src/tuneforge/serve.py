"""make serve: llama-cpp-python's own OpenAI-compatible server (llama_cpp.server, the pinned
version) over each task's promoted GGUF, one model name per task.

Run: python -m tuneforge.serve [--task T ...] [--model T=GGUF ...] [--host 127.0.0.1] [--port 8000]

Each task in params.yaml is served under its own name (`"model": "commit-messages"` in a request):
the registry's promoted GGUF, run only while its bytes are the ones register promoted and eval's
verdict passed (as predict does), or a pinned GGUF given with --model. A task with no promoted
model is not served (said on stderr); with none at all the command stops.

What the server adds to a chat completion request, so that an OpenAI client gets what eval
measured (the Ollama Modelfile pins the same things):
- no `system` message: the request holds the task's raw input (a changelog entry, a staged
  diff) as its last user message; it is cleaned as predict cleans an input (spacing
  normalised for a line entry, secrets redacted for both kinds: a token pasted with a diff
  never reaches the model or the server's log), rendered with the task's own view (the user
  turn training saw), and the task's system prompt goes first. A request with a system
  message is passed on as written.
- no `response_format` and no `grammar`: the answer is decoded under the task's output grammar
  (tuneforge.grammar, bounded strings), so it parses as the task's JSON; for a raw input, the
  grammar narrowed to it as eval decodes (decode.task_gbnf: a commit's `ignore` is exactly the
  diff's junk paths);
- no `temperature`: 0 (greedy, as eval decodes); no `repeat_penalty`: the task's
  eval.repeat_penalty, as eval decodes and the Modelfile pins (llama_cpp.server's own default is
  1.1 whatever eval measured). Its window is the last eval.repeat_last_n tokens of the context,
  prompt included, as eval, llama-server and Ollama count them (tuneforge.llama_private.penalise;
  llama_cpp.server's own sampler would count the answer's tokens only).
- for a raw input decoded greedily, the task's answer check (Task.answer_check, commit-messages:
  no identifier or scope the diff does not show) on every token, and an answer still open at
  max_tokens (the task's eval.max_tokens when the request gives none) closed the shortest way
  the grammar allows, as eval's decoder closes it (decode.chat_greedy): each model is loaded
  with eval's grammar-first sampler (ServedLlama), and the request's check and cap reach it
  through a context variable the middleware sets. A request that samples (temperature above 0)
  gets llama.cpp's own sampler chain, with neither. Ollama adds neither: its answers may name
  what the diff does not show, as often as eval's metrics say the check had to steer
  (`steered_rate`).
A model name the server does not serve is refused (404); llama_cpp.server itself would answer
with its first model instead. Only loopback by default: the server has no authentication
unless --api-key is given.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
from pathlib import Path
from typing import Any, NamedTuple

from tuneforge import config, llama_private
from tuneforge.cli import ArgumentParser, UserError, run
from tuneforge.decode import task_check, task_gbnf
from tuneforge.llama_private import CLOSE_RESERVE
from tuneforge.names import TaskPaths
from tuneforge.predict import clean, clean_document, promoted_gguf
from tuneforge.tasks import Task, get_task
from tuneforge.toolchain import check_toolchain
from tuneforge.verdict import pinned_sha256

log = logging.getLogger("serve")


def served_models(params_path: str, tasks: list[str] | None, overrides: list[str]) -> dict[str, Path]:
    """task -> its pinned GGUF: --model TASK=GGUF, else the registry's promoted one."""
    listed = list(config.load(params_path).tasks)
    given: dict[str, Path] = {}
    for item in overrides:
        task, sep, path = item.partition("=")
        if not sep or task not in listed:
            raise UserError(f"--model {item}: expected TASK=GGUF with TASK one of {', '.join(listed)}")
        given[task] = Path(path)
    out = {}
    for task in tasks or listed:
        if task not in listed:
            raise UserError(f"--task {task}: not in {params_path}'s tasks ({', '.join(listed)})")
        if task in given:
            pinned_sha256(given[task])  # a pinned file whose bytes changed never runs
            out[task] = given[task]
            continue
        try:
            out[task] = promoted_gguf(TaskPaths(task).registry)
        except (LookupError, FileNotFoundError) as e:
            log.warning("%s is not served: %s", task, e)
    if not out:
        raise UserError("no task has a model to serve: build one (dvc repro) or pass --model TASK=GGUF")
    return out


class Decoding(NamedTuple):
    """What eval's decoder adds to one greedy answer that llama_cpp.server's call cannot carry:
    the input's answer check (None: the grammar alone) and the token count after which an
    answer still open is closed (None: not closed)."""
    check: Any
    close_after: int | None


# set by TaskDefaults for the request being answered, read by ServedLlama when the completion
# starts (the server runs it in a worker thread, which gets a copy of the request's context)
REQUEST: contextvars.ContextVar[Decoding | None] = contextvars.ContextVar("tuneforge_served_request", default=None)


def raw_input(body: dict[str, Any], task: Task) -> str | None:
    """The request's raw input, cleaned as predict cleans it: its last user message when the
    request has no system message (so the server renders it), else None."""
    messages = body.get("messages") or []
    if not messages or any(m.get("role") == "system" for m in messages):
        return None
    users = [m for m in messages if m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), str):
        return None
    return (clean_document if task.input_kind == "document" else clean)(users[-1]["content"])


def decoding(body: dict[str, Any], task: Task, text: str | None, max_tokens: int) -> tuple[dict[str, Any], Decoding]:
    """`body` (with the task's defaults) with room for the closing reserve, and what its greedy
    answer is decoded under besides (Decoding), as eval decodes: the answer check of `text` (the
    raw input, raw_input; None: none); closed after the request's max_tokens, or `max_tokens`
    (the task's eval.max_tokens) when it gives none. A request that samples, or names its own
    format or a logit bias (a logits processor: llama.cpp's chain), gets neither."""
    if body.get("temperature", 0.0) != 0.0 or body.get("response_format") is not None or body.get("logit_bias"):
        return body, Decoding(None, None)
    cap = body.get("max_tokens") or max_tokens
    return {**body, "max_tokens": cap + CLOSE_RESERVE}, Decoding(task_check(task, text), cap)


def with_task_defaults(body: dict[str, Any], task: Task, repeat_penalty: float) -> dict[str, Any]:
    """The request as the model should see it (the module docstring's defaults; `repeat_penalty`:
    the task's eval.repeat_penalty)."""
    body = dict(body)
    messages = list(body.get("messages") or [])
    text = raw_input(body, task)  # when the request gives one, its grammar is narrowed to it
    if messages and not any(m.get("role") == "system" for m in messages):
        if text is not None:
            last = max(i for i, m in enumerate(messages) if m.get("role") == "user")
            messages[last] = {**messages[last], "content": task.render_user(text, None, None)}
        messages.insert(0, {"role": "system", "content": task.system_prompt})
        body["messages"] = messages
    if body.get("response_format") is None and body.get("grammar") is None:
        body["grammar"] = task_gbnf(task, text)
    body.setdefault("temperature", 0.0)
    body.setdefault("repeat_penalty", repeat_penalty)
    return body


class TaskDefaults:
    """ASGI middleware: reads a chat completion request's JSON body, refuses a model name not
    served, applies the task's defaults, and hands the rewritten body on (streaming or not:
    llama_cpp.server's streaming path calls Llama.create_chat_completion on the class, so the
    request itself is the one place both paths share)."""

    def __init__(self, app, tasks: dict[str, Task], penalties: dict[str, float], caps: dict[str, int]):
        self.app, self.tasks, self.penalties, self.caps = app, tasks, penalties, caps

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except json.JSONDecodeError as e:
            return await self.reply(send, 400, f"request body is not JSON: {e.msg} at line {e.lineno}")
        name = body.get("model") or (next(iter(self.tasks)) if len(self.tasks) == 1 else None)
        if name not in self.tasks:
            return await self.reply(send, 404, f"model {body.get('model')!r} is not served here; "
                                               f"served: {', '.join(self.tasks)}")
        task = self.tasks[name]
        served, decoded = decoding(with_task_defaults({**body, "model": name}, task, self.penalties[name]), task,
                                   raw_input(body, task), self.caps[name])
        data = json.dumps(served).encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # a disconnect, as the server would have seen it
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}

        token = REQUEST.set(decoded)
        try:
            return await self.app({**scope, "headers": headers}, replay, send)
        finally:
            REQUEST.reset(token)

    @staticmethod
    async def reply(send, status: int, message: str):
        data = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def build_app(models: dict[str, Path], params_path: str, n_threads: int = 0, n_ctx: int = 0,
              api_key: str | None = None):
    """llama_cpp.server's app over `models`, loading each GGUF as every model here is loaded;
    each with its task's eval.n_ctx (the context eval measured it in) unless `n_ctx` is given,
    and its task's repeat penalty window (eval.repeat_last_n)."""
    import llama_cpp.server.app as server_app
    from llama_cpp.server.model import LlamaProxy
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    evals = {t: config.for_command(params_path, t)[0].eval for t in models}

    class TaskProxy(LlamaProxy):
        # llama_cpp.server loads with llama_cpp.Llama, which on an AMX CPU segfaults on the first
        # quantised decode (tuneforge.llama_private says why); every load here goes through
        # tuneforge.llama_private's classes instead (ServedLlama). This is the server's own
        # extension point, a static method.
        @staticmethod
        def load_llama_from_model_settings(settings: ModelSettings):
            llama_private.check_version()  # before anything private is touched
            return served_llama_class()(settings.model, n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                                        n_batch=min(512, settings.n_ctx),
                                        last_n_tokens_size=settings.last_n_tokens_size, seed=0, verbose=False)

    threads = {"n_threads": n_threads} if n_threads else {}  # else llama_cpp.server's default
    settings = [ModelSettings(model=str(path), model_alias=task, n_ctx=n_ctx or evals[task].n_ctx,
                              last_n_tokens_size=evals[task].repeat_last_n, **threads)
                for task, path in models.items()]
    server_app.LlamaProxy = TaskProxy  # create_app builds its proxy from this module global
    app = server_app.create_app(server_settings=ServerSettings(api_key=api_key), model_settings=settings)
    return TaskDefaults(app, {t: get_task(t) for t in models}, {t: evals[t].repeat_penalty for t in models},
                        {t: evals[t].max_tokens for t in models})


_SERVED = None


def served_llama_class():
    """eval's grammar-first Llama (tuneforge.llama_private) for a server: a greedy completion
    takes its answer check and closing cap from the request being answered (REQUEST, set by
    TaskDefaults); a sampled one (temperature above 0, or logits processors) runs llama.cpp's
    own chain, as the plain class does. Built lazily: llama_cpp is an optional import."""
    global _SERVED
    if _SERVED is not None:
        return _SERVED
    grammar_first, plain = llama_private._grammar_first_class(), llama_private._plain_llama_class()
    if plain not in grammar_first.__mro__:
        raise RuntimeError("tuneforge.llama_private's grammar-first class no longer extends its plain-buffers "
                           "class: ServedLlama's sampled path would not run llama.cpp's chain")

    class ServedLlama(grammar_first):
        _sampled_chain = False  # this completion samples: llama.cpp's chain, none of eval's additions

        def _init_sampler(self, *, temp: float = 0.8, logits_processor=None, **kwargs: Any):
            self._sampled_chain = temp != 0.0 or bool(logits_processor)
            if self._sampled_chain:
                self.answer_check = self.close_after = None
                return plain._init_sampler(self, temp=temp, logits_processor=logits_processor, **kwargs)
            request = REQUEST.get() or Decoding(None, None)  # None: a call outside a request
            self.answer_check, self.close_after = request.check, request.close_after
            return super()._init_sampler(temp=temp, **kwargs)

        def sample(self, *, idx: int | None = None, **kwargs: Any) -> int:
            if self._sampled_chain:
                return plain.sample(self, idx=idx, **kwargs)
            return super().sample(idx=idx, **kwargs)

    _SERVED = ServedLlama
    return _SERVED


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    ap = ArgumentParser(prog="python -m tuneforge.serve", description=__doc__.split("\n")[0])
    ap.add_argument("--task", action="append", help="serve only this task (repeatable; default: every task "
                    "with a promoted model)")
    ap.add_argument("--model", action="append", default=[], metavar="TASK=GGUF",
                    help="serve this pinned GGUF for TASK instead of its promoted one (repeatable)")
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: llama_cpp.server's default)")
    ap.add_argument("--n-ctx", type=int, default=0, help="context tokens (0: each task's eval.n_ctx)")
    ap.add_argument("--api-key", help="require this bearer token (set one before listening beyond loopback)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    if not Path(args.params).is_file():
        ap.error(f"--params {args.params}: no such file; run from the project root or pass --params FILE")
    check_toolchain(config.load(args.params).toolchain.model_dump(), ["llama_cpp_python"])
    models = served_models(args.params, args.task, args.model)
    app = build_app(models, args.params, args.threads, args.n_ctx, args.api_key)
    import uvicorn

    log.info("serving %s on http://%s:%d/v1", ", ".join(f"{t} ({p})" for t, p in models.items()),
             args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m tuneforge.serve"))
