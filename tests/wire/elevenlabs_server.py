"""A wire-faithful loopback ElevenLabs text-to-speech server: the official SDK and our socket
client talk to it as they talk to api.elevenlabs.io (facts in
../shared/reference/cloud-wire.md, ElevenLabs section).

- `POST /v1/text-to-speech/{voice}/stream?output_format=pcm_16000` (and the unstreamed
  `POST /v1/text-to-speech/{voice}`) with `xi-api-key` and a JSON body {text, model_id,
  voice_settings}: raw s16le mono at the asked rate, chunked. 401 for a wrong key, FastAPI's
  422 for a body it cannot validate.
- `WS /v1/text-to-speech/{voice}/stream-input`: `{"text": " ", ...}` opens, text is buffered
  until the `chunk_length_schedule` or a `flush` says generate, `{"text": ""}` ends; replies
  `{"audio": base64, "isFinal": null, "normalizedAlignment": {...}, "alignment": {...}}`, then
  `{"isFinal": true}` and close 1000.
- `WS /v1/text-to-speech/{voice}/multi-stream-input`: the same per `context_id`, replies carry
  `contextId` (or `context_id`: `context_id_key`); `close_context` drops unflushed text,
  finishes what was flushed, then sends `{"isFinal": true, "contextId": ...}`; `close_socket`
  does that for every context and closes 1000. A sixth open context gets the
  `max_active_conversations` error frame and close 1008.
- A socket that hears nothing from its client for `inactivity_timeout` seconds (query
  parameter, else the server's default: 20 s like the real one, short in tests) gets the
  `input_timeout_exceeded` error frame and close 1008.

What it says: `synth_pcm(text, rate)`, a tone `MS_PER_CHAR` long per character whose pitch
depends on the text, so a test can rebuild the exact audio it expects, clause by clause.

Scripted faults: `fail_next(status, on="http"|"ws")` (an error status before the body or at
the handshake), `cut_next_stream(after_bytes)` (the connection closes mid-body),
`drop_sockets(*numbers)` (sockets close without a close frame), `first_audio_delay_s` and
`chunk_delay_s`. Everything received is recorded (`http_requests`, refused ones too,
`socket_requests`, `socket_messages`, `generations`, `closes`).

Run it alone (faults over HTTP: `POST /_fake/fail {"status": 503, "on": "http"}`,
`POST /_fake/drop_sockets`, `GET /_fake/log`):

    python -m tests.wire.elevenlabs_server --port 8912 --api-key test-key --inactivity-timeout 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import threading
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.wire.threaded import Dropped, ThreadedServer

PCM_RATES = frozenset({8000, 16000, 22050, 24000, 32000, 44100, 48000})
MS_PER_CHAR = 10
DEFAULT_SCHEDULE = (120.0, 160.0, 250.0, 290.0)
MAX_CONTEXTS = 5
_MAX_ACTIVE = (
    "Maximum simultaneous contexts per WebSocket connection exceeded ({n}). "
    "Please close an existing context before opening a new one."
)
_INPUT_TIMEOUT = (
    "Have not received a new text input within the timeout of {t} seconds. "
    "Streaming input will now close the connection."
)


def synth_pcm(text: str, sample_rate: int) -> bytes:
    """The audio the server speaks for `text`: s16le mono, `MS_PER_CHAR` per character of the
    stripped text, a tone whose pitch depends on the text."""
    spoken = text.strip()
    n = len(spoken) * MS_PER_CHAR * sample_rate // 1000
    pitch = 200.0 + (zlib.crc32(spoken.encode()) % 40) * 20.0
    t = np.arange(n) / sample_rate
    return (np.sin(2 * np.pi * pitch * t) * 8000).astype("<i2").tobytes()


def _pcm_rate(output_format: str) -> int | None:
    codec, _, rate = output_format.partition("_")
    return int(rate) if codec == "pcm" and rate.isdigit() and int(rate) in PCM_RATES else None


def _chunks(pcm: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(pcm), size):
        yield pcm[i : i + size]


def _alignment(text: str, start_ms: int, end_ms: int) -> dict[str, list[Any]] | None:
    """The characters spoken in [start_ms, end_ms) of `text`, times relative to the chunk."""
    spoken = text.strip()
    first, last = start_ms // MS_PER_CHAR, min(len(spoken), -(-end_ms // MS_PER_CHAR))
    if first >= last:
        return None
    return {
        "chars": list(spoken[first:last]),
        "charStartTimesMs": [i * MS_PER_CHAR - start_ms for i in range(first, last)],
        "charDurationsMs": [MS_PER_CHAR] * (last - first),
    }


class _VoiceSettings(BaseModel):
    stability: float | None = Field(None, ge=0.0, le=1.0)
    similarity_boost: float | None = Field(None, ge=0.0, le=1.0)
    style: float | None = Field(None, ge=0.0, le=1.0)
    use_speaker_boost: bool | None = None
    speed: float | None = Field(None, ge=0.7, le=1.2)


class _SpeechBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str = Field(min_length=1)
    model_id: str = "eleven_multilingual_v2"
    voice_settings: _VoiceSettings | None = None


def _detail(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": kind, "message": message}}, status_code=status)


_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_argument", "Invalid argument received."),
    401: ("invalid_api_key", "Invalid API key"),
    403: ("missing_permissions", "The API key you used is missing the permission to do this."),
    404: ("voice_not_found", "A voice with the voice_id was not found."),
    429: ("too_many_concurrent_requests", "Too many concurrent requests for your plan."),
    500: ("internal_server_error", "An internal server error occurred."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "The service is temporarily unavailable."),
}


def error_response(status: int) -> JSONResponse:
    kind, message = _ERRORS.get(status, ("error", "Error."))
    return _detail(status, kind, message)


@dataclass(frozen=True)
class HttpRequest:
    """A request as the server received it (every one, refused or not)."""

    voice_id: str
    params: dict[str, str]
    body: Any  # the parsed JSON, None if it was not JSON
    api_key: str | None


@dataclass(frozen=True)
class SocketRequest:
    """A socket handshake the server accepted."""

    voice_id: str
    multi: bool
    params: dict[str, str]
    api_key: str | None


@dataclass(frozen=True)
class Generation:
    """One piece of text the server turned into audio."""

    socket: int
    context_id: str | None  # None on the single-context socket
    text: str


@dataclass(frozen=True)
class Close:
    socket: int
    code: int | None  # None: dropped without a close frame
    reason: str


class ElevenLabsServer:
    """The server, on its own thread and event loop: `with ElevenLabsServer() as fake:` (or
    `start()` / `stop()`); point clients at `fake.base_url` with `fake.api_key`."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        port: int | None = None,
        inactivity_timeout_s: float = 20.0,
        max_contexts: int = MAX_CONTEXTS,
        chunk_ms: int = 50,
        first_audio_delay_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        context_id_key: Literal["contextId", "context_id"] = "contextId",
        final_on_close_context: bool = True,
    ) -> None:
        from tests.ports import free_port

        self.api_key = api_key
        self.port = port or free_port()
        self.inactivity_timeout_s = inactivity_timeout_s
        self.max_contexts = max_contexts
        self.chunk_ms = chunk_ms
        self.first_audio_delay_s = first_audio_delay_s
        self.chunk_delay_s = chunk_delay_s
        self.context_id_key = context_id_key
        # False: a context closed without a flush just before (a barge-in) ends without
        # `isFinal`, a server that forgets it quietly
        self.final_on_close_context = final_on_close_context
        self.http_requests: list[HttpRequest] = []
        self.socket_requests: list[SocketRequest] = []
        self.socket_messages: dict[int, list[dict[str, Any]]] = {}
        self.generations: list[Generation] = []
        self.closes: list[Close] = []
        self._faults: dict[str, deque[int]] = {"http": deque(), "ws": deque()}
        self._cuts: deque[int] = deque()
        self._sessions: set[_Session] = set()
        self.app = Starlette(
            routes=[
                Route("/v1/text-to-speech/{voice_id}/stream", self._speech, methods=["POST"]),
                Route("/v1/text-to-speech/{voice_id}", self._speech, methods=["POST"]),
                WebSocketRoute("/v1/text-to-speech/{voice_id}/stream-input", self._socket),
                WebSocketRoute("/v1/text-to-speech/{voice_id}/multi-stream-input", self._socket),
                Route("/_fake/fail", self._fail_route, methods=["POST"]),
                Route("/_fake/drop_sockets", self._drop_route, methods=["POST"]),
                Route("/_fake/log", self._log_route, methods=["GET"]),
            ]
        )
        self._serving = ThreadedServer(
            self.app, self.port, "fake-elevenlabs", ws="websockets-sansio"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sockets_opened(self) -> int:
        return len(self.socket_messages)

    @property
    def open_sockets(self) -> int:
        return len(self._sessions)

    # -- scripting ----------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, on: Literal["http", "ws"] = "http") -> None:
        """Answer the next `times` requests (`http`) or socket handshakes (`ws`) with `status`
        and ElevenLabs' error body."""
        self._faults[on].extend([status] * times)

    def cut_next_stream(self, after_bytes: int) -> None:
        """The next HTTP audio body stops after `after_bytes` and the connection closes."""
        self._cuts.append(after_bytes)

    def drop_sockets(self, *numbers: int) -> None:
        """Close the open sockets numbered `numbers` (in opening order from 0; all if none)
        without a close frame, a network drop; returns once they are gone."""
        if self._serving.loop is not None:
            drop = self._drop(*numbers)
            asyncio.run_coroutine_threadsafe(drop, self._serving.loop).result(timeout=5)

    async def _drop(self, *numbers: int) -> None:
        sessions = [s for s in self._sessions if not numbers or s.number in numbers]
        for s in sessions:
            s.dropped.set()
        for s in sessions:
            await s.finished.wait()

    def _take_fault(self, on: str) -> int | None:
        faults = self._faults[on]
        return faults.popleft() if faults else None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ElevenLabsServer:
        self._serving.start()
        return self

    def stop(self) -> None:
        if self._serving.running:
            self.drop_sockets()
        self._serving.stop()

    def __enter__(self) -> ElevenLabsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- HTTP -----------------------------------------------------------------------------

    async def _speech(self, request: Request) -> Response:
        try:
            raw = json.loads(await request.body())
        except json.JSONDecodeError:
            raw = None
        key = request.headers.get("xi-api-key")
        voice_id = request.path_params["voice_id"]
        self.http_requests.append(HttpRequest(voice_id, dict(request.query_params), raw, key))
        if key != self.api_key:
            return error_response(401)
        if (status := self._take_fault("http")) is not None:
            return error_response(status)
        if not isinstance(raw, dict):
            detail = [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        try:
            body = _SpeechBody.model_validate(raw)
        except ValidationError as e:
            errors = e.errors(include_url=False, include_context=False, include_input=False)
            detail = [
                {"type": err["type"], "loc": ["body", *err["loc"]], "msg": err["msg"]}
                for err in errors
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        rate = _pcm_rate(request.query_params.get("output_format", "mp3_44100_128"))
        if rate is None:
            return _detail(400, "invalid_output_format", "This fake speaks only pcm_<rate>.")
        cut = self._cuts.popleft() if self._cuts else None
        return StreamingResponse(
            self._body(synth_pcm(body.text, rate), rate, cut),
            media_type="application/octet-stream",
        )

    async def _body(self, pcm: bytes, rate: int, cut: int | None) -> AsyncIterator[bytes]:
        if self.first_audio_delay_s:
            await asyncio.sleep(self.first_audio_delay_s)
        sent = 0
        for chunk in _chunks(pcm, rate * self.chunk_ms // 1000 * 2):
            if cut is not None and sent + len(chunk) > cut:
                yield chunk[: cut - sent]
                raise Dropped("scripted cut mid-stream")
            yield chunk
            sent += len(chunk)
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)

    # -- WebSockets -------------------------------------------------------------------------

    async def _socket(self, ws: WebSocket) -> None:
        key = ws.headers.get("xi-api-key")
        if key is not None and key != self.api_key:
            await ws.send_denial_response(error_response(401))
            return
        if (status := self._take_fault("ws")) is not None:
            await ws.send_denial_response(error_response(status))
            return
        rate = _pcm_rate(ws.query_params.get("output_format", "mp3_44100_128"))
        if rate is None:
            await ws.send_denial_response(
                _detail(400, "invalid_output_format", "This fake speaks only pcm_<rate>.")
            )
            return
        timeout = float(ws.query_params.get("inactivity_timeout", self.inactivity_timeout_s))
        await ws.accept()
        multi = ws.url.path.endswith("/multi-stream-input")
        voice_id = ws.path_params["voice_id"]
        self.socket_requests.append(SocketRequest(voice_id, multi, dict(ws.query_params), key))
        number = len(self.socket_messages)
        self.socket_messages[number] = []
        session = _Session(
            self, ws, number, rate, multi, authorized=key is not None, timeout=timeout
        )
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            session.finished.set()

    # -- control, for the standalone server -----------------------------------------------

    async def _fail_route(self, request: Request) -> Response:
        body = await request.json()
        self.fail_next(
            int(body["status"]), times=int(body.get("times", 1)), on=body.get("on", "http")
        )
        return JSONResponse({})

    async def _drop_route(self, _: Request) -> Response:
        await self._drop()
        return JSONResponse({})

    async def _log_route(self, _: Request) -> Response:
        return JSONResponse(
            {
                "http_requests": [r.__dict__ for r in self.http_requests],
                "socket_requests": [r.__dict__ for r in self.socket_requests],
                "socket_messages": self.socket_messages,
                "generations": [g.__dict__ for g in self.generations],
                "closes": [c.__dict__ for c in self.closes],
            }
        )


class _Context:
    """One context: text buffered until generated, generation units spoken in order."""

    def __init__(self, session: _Session, context_id: str | None, schedule: list[float]) -> None:
        self.id = context_id
        self.schedule = schedule or list(DEFAULT_SCHEDULE)
        self.buffer = ""
        self.triggered = 0
        self.closing = False
        self.final = True  # send isFinal at the end
        self.flushed = False  # the last message flushed
        self.units: asyncio.Queue[str | None] = asyncio.Queue()
        self.task = asyncio.create_task(session.speak(self))

    def add(self, text: str, *, flush: bool) -> None:
        if self.closing:
            return
        self.flushed = flush
        self.buffer += text
        threshold = self.schedule[min(self.triggered, len(self.schedule) - 1)]
        if flush or len(self.buffer.strip()) >= threshold:
            self.triggered += not flush
            self._emit()

    def close(self, *, flush_rest: bool) -> None:
        """No more text: what was flushed is still spoken, then `isFinal`."""
        if self.closing:
            return
        if flush_rest:
            self._emit()
        self.buffer = ""
        self.closing = True
        self.units.put_nowait(None)

    def _emit(self) -> None:
        if self.buffer.strip():
            self.units.put_nowait(self.buffer)
        self.buffer = ""


class _Session:
    """One socket, single- or multi-context."""

    def __init__(
        self,
        server: ElevenLabsServer,
        ws: WebSocket,
        number: int,
        rate: int,
        multi: bool,
        *,
        authorized: bool,
        timeout: float,
    ) -> None:
        self.server, self.ws, self.number, self.rate, self.multi = server, ws, number, rate, multi
        self.authorized = authorized
        self.timeout = timeout
        self.contexts: dict[str | None, _Context] = {}
        self.dropped = asyncio.Event()
        self.finished = asyncio.Event()
        self.closed = False
        self.heard = asyncio.Event()  # set by every client message
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._watch()),
            asyncio.create_task(self.dropped.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self.dropped.is_set() and not self.closed:
                self.server.closes.append(Close(self.number, None, "dropped"))
            everything = tasks + [c.task for c in self.contexts.values()]
            for t in everything:
                t.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
        # Returning without a close frame: uvicorn closes the TCP connection (a drop).

    async def _read(self) -> None:
        while not self.closed:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.closed = True
                self.server.closes.append(Close(self.number, message.get("code"), "by client"))
                return
            self.heard.set()
            try:
                data = json.loads(message.get("text") or message.get("bytes") or b"")
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                await self._fail("invalid_message", "Messages must be JSON objects.")
                return
            self.server.socket_messages[self.number].append(data)
            if not self.authorized:
                if data.get("xi_api_key", data.get("xi-api-key")) != self.server.api_key:
                    await self._fail("invalid_api_key", "Invalid API key")
                    return
                self.authorized = True
            if await (self._on_multi(data) if self.multi else self._on_single(data)):
                return

    async def _on_single(self, data: dict[str, Any]) -> bool:
        """True when the socket is done."""
        ctx = self.contexts.get(None)
        if ctx is None:  # the first message opens: {"text": " ", voice_settings, ...}
            ctx = self.contexts[None] = _Context(self, None, self._schedule(data))
        text = str(data.get("text") or "")
        if text == "" and "text" in data:  # end of input: speak the rest, isFinal, close
            ctx.close(flush_rest=True)
            await ctx.task
            await self._close(1000, "")
            return True
        ctx.add(text, flush=bool(data.get("flush")))
        return False

    async def _on_multi(self, data: dict[str, Any]) -> bool:
        if data.get("close_socket"):
            for c in self.contexts.values():
                c.close(flush_rest=False)
            await asyncio.gather(*(c.task for c in list(self.contexts.values())))
            await self._close(1000, "")
            return True
        cid = str(data.get("context_id") or "default")
        ctx = self.contexts.get(cid)
        if data.get("close_context"):
            if ctx is not None:
                ctx.final = self.server.final_on_close_context or ctx.flushed
                ctx.close(flush_rest=False)
            return False
        if ctx is None:
            if not data.get("text") and not data.get("flush"):
                return False  # keep-alive or flush of a context that is gone
            if len(self.contexts) >= self.server.max_contexts:
                message = _MAX_ACTIVE.format(n=self.server.max_contexts)
                await self._fail("max_active_conversations", message)
                return True
            ctx = self.contexts[cid] = _Context(self, cid, self._schedule(data))
        ctx.add(str(data.get("text") or ""), flush=bool(data.get("flush")))
        return False

    @staticmethod
    def _schedule(data: dict[str, Any]) -> list[float]:
        config = data.get("generation_config") or {}
        return [float(x) for x in config.get("chunk_length_schedule") or ()]

    async def speak(self, ctx: _Context) -> None:
        """Generate the context's units in order, then `isFinal`."""
        key: dict[str, Any] = {self.server.context_id_key: ctx.id} if self.multi else {}
        first = True
        while (unit := await ctx.units.get()) is not None:
            if first and self.server.first_audio_delay_s:
                await asyncio.sleep(self.server.first_audio_delay_s)
            first = False
            self.server.generations.append(Generation(self.number, ctx.id, unit))
            pcm = synth_pcm(unit, self.rate)
            size = self.rate * self.server.chunk_ms // 1000 * 2
            for i, chunk in enumerate(_chunks(pcm, size)):
                start_ms = i * self.server.chunk_ms
                align = _alignment(unit, start_ms, start_ms + self.server.chunk_ms)
                await self._send(
                    {
                        "audio": base64.b64encode(chunk).decode(),
                        "isFinal": None,
                        "normalizedAlignment": align,
                        "alignment": align,
                        **key,
                    }
                )
                if self.server.chunk_delay_s:
                    await asyncio.sleep(self.server.chunk_delay_s)
        if ctx.final:
            await self._send({"isFinal": True, **key})
        self.contexts.pop(ctx.id, None)

    async def _watch(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    await self.heard.wait()
            except TimeoutError:
                t = f"{self.timeout:g}"
                await self._fail("input_timeout_exceeded", _INPUT_TIMEOUT.format(t=t))
                return
            self.heard.clear()

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            if not self.closed:
                await self.ws.send_text(json.dumps(message))

    async def _fail(self, error: str, message: str) -> None:
        """ElevenLabs' error frame, then close 1008."""
        await self._send({"message": message, "error": error, "code": 1008})
        await self._close(1008, error)

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self.closed:
                return
            self.closed = True
            self.server.closes.append(Close(self.number, code, reason))
            await self.ws.close(code, reason)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api-key", default="test-key")
    p.add_argument("--inactivity-timeout", type=float, default=20.0)
    p.add_argument("--first-audio-delay", type=float, default=0.0)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    args = p.parse_args(argv)
    fake = ElevenLabsServer(
        api_key=args.api_key,
        port=args.port,
        inactivity_timeout_s=args.inactivity_timeout,
        first_audio_delay_s=args.first_audio_delay,
        chunk_delay_s=args.chunk_delay,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fake.start()
    print(f"fake ElevenLabs on {fake.base_url} (key {fake.api_key!r}); Ctrl-C stops", flush=True)
    try:
        stop.wait()
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
