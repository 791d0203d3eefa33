"""A wire-faithful loopback OpenAI chat-completions server: the official SDK talks to it as
it talks to api.openai.com (facts in ../shared/reference/cloud-wire.md, OpenAI section).

`POST /v1/chat/completions` with `Authorization: Bearer KEY`:

- streaming (`"stream": true`): `data: {chunk}` SSE lines, then `data: [DONE]`. A text turn
  sends a role chunk, one chunk per token and a last chunk with `finish_reason: "stop"`
  (`"length"` when cut by `max_completion_tokens`). A tool turn sends per call (`index`
  0, 1, ...) a first delta with `id`, `type`, `function.name` and empty `arguments`, then
  the arguments in fragments, and ends with `finish_reason: "tool_calls"`. With
  `stream_options.include_usage` every chunk carries `"usage": null` and a final chunk has
  `choices: []` and the usage.
- non-streaming: one `chat.completion` object.
- OpenAI's 400s for requests the real API refuses (a `tool` message that answers no
  `tool_calls`, tool calls left unanswered, `stream_options` without `stream`,
  `parallel_tool_calls` or `tool_choice` without `tools`), its 401 for a wrong key, and its
  error bodies for scripted failures.

Replies are scripted per request (`script(Reply(...))`, first in first out, or a
`responder(body) -> Reply`), with a first-token delay, a per-token delay and failures: an
HTTP status before the body, a dropped connection or a read stall after `n` chunks. Every
request is recorded (`requests`), so a test counts retries on the server side.

Run it alone (the same scripts over HTTP: `POST /_fake/script`, `GET /_fake/requests`,
`POST /_fake/reset`):

    python -m tests.wire.openai_server --port 8911 --api-key sk-test --first-token-delay 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.wire.threaded import QUIET_DROPS, Dropped, ThreadedServer

# An alias resolves to a dated snapshot in the `model` field of every response.
SNAPSHOTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}
_TOKEN = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class Call:
    """A tool call the model makes; `arguments` as a str goes on the wire as it is
    (e.g. malformed JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)

    def raw(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """One scripted response. A stream's chunks are counted after the headers: each text
    token (the role chunk travels with the first) and each tool-call delta is one, the
    finishing chunk the last."""

    text: str = ""
    calls: tuple[Call, ...] = ()
    status: int | None = None  # answer with this HTTP error (OpenAI's body) before any body
    drop_after: int | None = None  # streaming: close the connection after this many chunks
    stall_after: int | None = None  # send nothing more after this many chunks (a read stall)
    first_token_delay_s: float | None = None  # None: the server's default
    token_delay_s: float | None = None
    fragment_chars: int = 6  # tool-call arguments arrive in pieces this long
    retry_after_s: float | None = None  # a `retry-after-ms` header on an error status

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Reply:
        calls = tuple(Call(c["name"], c.get("arguments", {})) for c in d.get("calls", ()))
        return Reply(**{**d, "calls": calls})


Responder = Callable[[dict[str, Any]], Reply]


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])


_ERRORS: dict[int, tuple[str, str, str | None]] = {  # status: (message, type, code)
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("Project does not have access to this model.", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    408: ("Request timed out.", "timeout", None),
    409: ("Conflict.", "invalid_request_error", None),
    422: ("Unprocessable entity.", "invalid_request_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}  # fmt: skip


def error_response(
    status: int, message: str | None = None, *, param: str | None = None, code: str | None = None
) -> JSONResponse:
    default, kind, default_code = _ERRORS.get(status, ("Error.", "server_error", None))
    body = {
        "error": {
            "message": message or default,
            "type": kind,
            "param": param,
            "code": code or default_code,
        }
    }
    return JSONResponse(body, status_code=status)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _count(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def prompt_tokens(body: dict[str, Any]) -> int:
    """A deterministic estimate: about four characters a token, three per message."""
    n = sum(3 + _count(_content_text(m.get("content"))) for m in body.get("messages") or [])
    return n + _count(json.dumps(body["tools"])) if body.get("tools") else n


def _invalid(body: dict[str, Any]) -> JSONResponse | None:
    """OpenAI's 400 for requests it refuses, None for a valid one."""
    if not body.get("model"):
        return error_response(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_response(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.",
            param="messages",
            code="empty_array",
        )
    if body.get("stream_options") is not None and not body.get("stream"):
        return error_response(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    for name in ("parallel_tool_calls", "tool_choice"):
        if body.get(name) is not None and not body.get("tools"):
            return error_response(
                400,
                f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are specified.",
                param=name,
            )
    open_ids: list[str] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "tool":
            if m.get("tool_call_id") not in open_ids:
                return error_response(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            open_ids.remove(m["tool_call_id"])
            continue
        if open_ids:
            break
        if role == "assistant":
            open_ids = [c.get("id") for c in m.get("tool_calls") or []]
        elif role not in ("system", "developer", "user"):
            return error_response(400, f"Invalid value: '{role}'.", param=f"messages.[{i}].role")
    if open_ids:
        return error_response(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            "to each 'tool_call_id'. The following tool_call_ids did not have response "
            f"messages: {', '.join(open_ids)}",
            param="messages",
        )
    return None


class FakeOpenAI:
    """The server, on its own thread and event loop: `with FakeOpenAI() as fake:` (or
    `start()` / `stop()`); point the SDK at `fake.base_url` with `fake.api_key`."""

    def __init__(
        self,
        *,
        api_key: str = "sk-test",
        port: int | None = None,
        first_token_delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        responder: Responder | None = None,
    ) -> None:
        from tests.ports import free_port

        self.api_key = api_key
        self.port = port or free_port()
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s
        self.responder = responder
        self.requests: list[Recorded] = []
        self.hung_up = 0  # streams the client closed before their end (a barge-in, a timeout)
        self._hang_up = threading.Event()
        self._replies: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()  # set on the server's loop: stalled streams end
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/_fake/script", self._script_route, methods=["POST"]),
                Route("/_fake/requests", self._requests_route, methods=["GET"]),
                Route("/_fake/reset", self._reset_route, methods=["POST"]),
            ]
        )
        self._serving = ThreadedServer(self.app, self.port, "fake-openai")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ----------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request takes the first. Empty queue: `responder`, else an
        echo of the last user message."""
        self._replies.extend(replies)

    def reset(self) -> None:
        self._replies.clear()
        self.requests.clear()
        self.hung_up = 0
        self._hang_up.clear()

    def wait_hang_up(self, timeout_s: float) -> bool:
        """Whether a client closes a stream before its end within `timeout_s` (blocking: call
        it with `asyncio.to_thread` from a test's loop)."""
        return self._hang_up.wait(timeout_s)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        if self._replies:
            return self._replies.popleft()
        if self.responder is not None:
            return self.responder(body)
        users = [m for m in body["messages"] if m.get("role") == "user"]
        said = _content_text(users[-1].get("content")) if users else ""
        return Reply(text=f"You said: {said}")

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        def on_loop() -> None:
            self._closing = asyncio.Event()

        self._serving.start(on_loop)
        return self

    def stop(self) -> None:
        if self._serving.loop is not None:
            self._serving.loop.call_soon_threadsafe(self._closing.set)
        self._serving.stop()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the API ------------------------------------------------------------------------

    async def _completions(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            body = None
        self.requests.append(
            Recorded(body if isinstance(body, dict) else {}, dict(request.headers))
        )
        key = request.headers.get("authorization", "")
        if not key.startswith("Bearer "):
            return error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if key.removeprefix("Bearer ") != self.api_key:
            return error_response(401)
        if not isinstance(body, dict):
            return error_response(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly.)",
            )
        if (invalid := _invalid(body)) is not None:
            return invalid
        reply = self._next_reply(body)
        if reply.status is not None:
            response = error_response(reply.status)
            if reply.retry_after_s is not None:
                response.headers["retry-after-ms"] = str(int(reply.retry_after_s * 1000))
            return response
        completion = _Completion(self, body, reply, next(self._ids))
        headers = {
            "x-request-id": f"req_{completion.n:032x}",
            "openai-processing-ms": "1",
            "openai-version": "2020-10-01",
        }
        if body.get("stream"):
            return StreamingResponse(
                completion.sse(),
                media_type="text/event-stream; charset=utf-8",
                headers=headers,
            )
        return JSONResponse(await completion.whole(), headers=headers)

    async def _stall(self) -> None:
        """Send nothing until the client gives up (Starlette cancels us) or the server stops."""
        await self._closing.wait()
        raise Dropped("server stopping")

    # -- control, for the standalone server -----------------------------------------------

    async def _script_route(self, request: Request) -> Response:
        body = await request.json()
        self.script(*(Reply.from_dict(r) for r in body.get("replies", [])))
        return JSONResponse({"queued": len(self._replies)})

    async def _requests_route(self, _: Request) -> Response:
        return JSONResponse([{"body": r.body, "headers": r.headers} for r in self.requests])

    async def _reset_route(self, _: Request) -> Response:
        self.reset()
        return JSONResponse({})


class _Completion:
    """One response: its chunks (streaming) or its object (not)."""

    def __init__(self, server: FakeOpenAI, body: dict[str, Any], reply: Reply, n: int) -> None:
        self.server, self.body, self.reply, self.n = server, body, reply, n
        self.id = f"chatcmpl-{n:024x}"
        self.created = int(time.time())
        self.model = SNAPSHOTS.get(body["model"], body["model"])
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        tokens = _tokens(reply.text)
        self.cut = limit is not None and len(tokens) > int(limit)
        self.tokens = tokens[: int(limit)] if limit is not None else tokens
        parallel = body.get("parallel_tool_calls", True) is not False
        self.calls = list(reply.calls if parallel else reply.calls[:1]) if body.get("tools") else []
        self.call_ids = [f"call_{n:08x}{i:016x}" for i in range(len(self.calls))]
        self.first_delay = _or(reply.first_token_delay_s, server.first_token_delay_s)
        self.token_delay = _or(reply.token_delay_s, server.token_delay_s)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.calls else "length" if self.cut else "stop"

    def usage(self) -> dict[str, Any]:
        completion = len(self.tokens) + sum(_count(c.name + c.raw()) + 1 for c in self.calls)
        prompt = prompt_tokens(self.body)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    # -- streaming ----------------------------------------------------------------------

    def _deltas(self) -> list[dict[str, Any]]:
        """One delta per chunk, before the finishing one."""
        deltas: list[dict[str, Any]] = []
        if self.tokens or not self.calls:
            deltas.append({"role": "assistant", "content": "", "refusal": None})
            deltas += [{"content": t} for t in self.tokens]
        size = max(1, self.reply.fragment_chars)
        for index, (call, call_id) in enumerate(zip(self.calls, self.call_ids, strict=True)):
            first: dict[str, Any] = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            if not deltas:
                deltas.append(
                    {"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}
                )
            else:
                deltas.append({"tool_calls": [first]})
            raw = call.raw()
            deltas += [
                {"tool_calls": [{"index": index, "function": {"arguments": raw[i : i + size]}}]}
                for i in range(0, len(raw), size)
            ]
        return deltas

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake000001",
            "choices": choices,
        }
        if (self.body.get("stream_options") or {}).get("include_usage"):
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def _steps(self) -> list[list[dict[str, Any]]]:
        """The choices of each step: a token or a tool-call delta (the role chunk travels with
        the first), then the finishing chunk."""
        deltas = self._deltas()
        steps = [[_choice(d)] for d in deltas]
        if len(steps) > 1 and deltas[0].get("content") == "":
            steps[:2] = [steps[0] + steps[1]]  # the text's role chunk, then its first token
        steps.append([_choice({}, self.finish_reason)])
        return steps

    async def sse(self) -> AsyncIterator[bytes]:
        """`drop_after` / `stall_after` count steps: tokens and tool-call deltas."""
        reply = self.reply
        try:
            await asyncio.sleep(self.first_delay)
            for i, step in enumerate(self._steps()):
                if i == reply.drop_after:
                    raise Dropped(f"scripted drop after {i} chunks")
                if i == reply.stall_after:
                    await self.server._stall()
                if i > 0:
                    await asyncio.sleep(self.token_delay)
                for choice in step:
                    yield self._chunk([choice])
        except asyncio.CancelledError:  # Starlette saw the client disconnect
            self.server.hung_up += 1
            self.server._hang_up.set()
            raise
        if (self.body.get("stream_options") or {}).get("include_usage"):
            yield self._chunk([], self.usage())
        yield b"data: [DONE]\n\n"

    # -- not streaming ------------------------------------------------------------------

    async def whole(self) -> dict[str, Any]:
        if self.reply.stall_after is not None:
            await self.server._stall()
        n = len(self.tokens) + len(self.calls)
        await asyncio.sleep(self.first_delay + self.token_delay * max(0, n - 1))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.tokens) if self.tokens or not self.calls else None,
            "refusal": None,
            "annotations": [],
        }
        if self.calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": c.name, "arguments": c.raw()}}
                for c, i in zip(self.calls, self.call_ids, strict=True)
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_fake000001",
        }


def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8911)
    parser.add_argument("--api-key", default="sk-test")
    parser.add_argument("--first-token-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--token-delay", type=float, default=0.0, metavar="S")
    args = parser.parse_args()
    fake = FakeOpenAI(
        api_key=args.api_key,
        port=args.port,
        first_token_delay_s=args.first_token_delay,
        token_delay_s=args.token_delay,
    )
    logging.getLogger("uvicorn.error").addFilter(QUIET_DROPS)
    print(f"fake OpenAI at http://{args.host}:{args.port}/v1 (key {args.api_key})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(fake.app, host=args.host, port=args.port, http="h11", log_level="info")


if __name__ == "__main__":
    main()
