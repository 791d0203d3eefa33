"""A wire-faithful loopback Deepgram server: prerecorded `POST /v1/listen` and live `/v1/listen`.

Message shapes follow ../shared/reference/cloud-wire.md (checked against deepgram-sdk 7.x):
`Authorization: Token KEY`, query parameters validated strictly (booleans are `true`/`false`),
`Results` / `SpeechStarted` / `UtteranceEnd` / `Metadata` / `Error` messages, `KeepAlive`,
`Finalize` and `CloseStream` from the client, and close 1011 with the NET-0001 payload after
`no_audio_timeout_s` without audio or a text message.

Nothing is recognised: transcripts are scripted. `script(*texts)` queues one text per segment of
speech (a REST request or a live utterance); with the queue empty, `transcribe(voiced_seconds)`
makes the text. Speech is found by level: a 10 ms block of PCM16 whose peak reaches
`VOICED_PEAK` is speech, anything quieter is silence. Endpointing and `utterance_end_ms` are
measured on the audio timeline (as Deepgram does), never on the wall clock, so tests that send
audio get the same messages on any machine; only the no-audio timeout and the injected latency
(`http_delay_s`, `ws_delay_s`) are wall-clock.

Scripted failures: `fail_next_http(429)`, `fail_next_handshake(503)`, `await drop_live()`
(close 1011 mid-stream). A bad key gets 401, at the handshake for the live socket.

    python -m tests.wire.deepgram_server --port 8089 --key test-key
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import logging
import re
import socket
import time
import uuid
import wave
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

VOICED_PEAK = 500  # int16 peak of a 10 ms block that counts as speech (about -36 dBFS)
BLOCK_S = 0.01
NET_0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)
DROP_REASON = "NET-0000: internal server error (scripted drop)"
MODEL_UUID = "1ed36bac-f71c-4f3f-a31f-02fd6525c489"
MODEL_INFO = {"name": "2-general-nova", "version": "2024-01-09.29447", "arch": "nova-2"}
MODEL_RE = re.compile(r"^(nova-3|nova-2|nova|enhanced|base|whisper)(-[a-z0-9]+)*$")
ENCODINGS = frozenset(
    {"linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus"}
    | {"speex", "g729"}
)
BOOL_PARAMS = frozenset(
    {"interim_results", "vad_events", "smart_format", "punctuate", "diarize", "multichannel"}
    | {"numerals", "profanity_filter", "dictation", "filler_words", "detect_language"}
    | {"paragraphs", "utterances", "mip_opt_out", "no_delay", "detect_entities"}
)
ERR_CODES = {400: "Bad Request", 401: "INVALID_AUTH", 402: "ASR_PAYMENT_REQUIRED"} | {
    403: "INSUFFICIENT_PERMISSIONS",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
}


def default_transcribe(voiced_s: float) -> str:
    return f"{voiced_s:.1f} seconds of speech"


class WireError(Exception):
    """A request Deepgram would refuse: answered as an HTTP error with Deepgram's body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class HttpRecord:
    """One prerecorded request as received."""

    params: dict[str, str]
    authorization: str
    content_type: str
    body_bytes: int = 0
    status: int = 0


@dataclass
class LiveRecord:
    """One live socket: what the client sent and how it ended."""

    params: dict[str, str]
    received: list[str] = field(default_factory=list)  # `type` of each text message, in order
    sent: list[str] = field(default_factory=list)  # `type` of each message sent, in order
    audio_bytes: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed: bool = False

    @property
    def keepalives(self) -> int:
        return self.received.count("KeepAlive")


def _error_body(status: int, message: str) -> dict[str, str]:
    code = ERR_CODES.get(status, "Bad Request" if status < 500 else "INTERNAL_SERVER_ERROR")
    return {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}


def _error_response(status: int, message: str) -> web.Response:
    return web.json_response(_error_body(status, message), status=status)


def parse_params(query: Mapping[str, str], *, live: bool) -> dict[str, Any]:
    """Validate the query string the way the API does; raise WireError(400) on a bad value."""
    p: dict[str, Any] = {"model": query.get("model", "base")}
    if not MODEL_RE.match(p["model"]):
        raise WireError(400, f"Bad Request: No such model/language/tier combination: {p['model']}")
    for name in BOOL_PARAMS & query.keys():
        if query[name] not in ("true", "false"):
            raise WireError(400, f"Bad Request: {name} must be true or false, got {query[name]!r}")
        p[name] = query[name] == "true"
    for name in ("sample_rate", "channels", "utterance_end_ms"):
        if name in query:
            if not query[name].isdigit() or int(query[name]) <= 0:
                raise WireError(400, f"Bad Request: {name} must be a positive integer")
            p[name] = int(query[name])
    endpointing = query.get("endpointing", "10")  # the API's default is 10 ms
    if endpointing == "false":
        p["endpointing"] = None
    elif endpointing.isdigit():
        p["endpointing"] = int(endpointing)
    else:
        raise WireError(400, "Bad Request: endpointing must be false or an integer (ms)")
    if "encoding" in query:
        if query["encoding"] not in ENCODINGS:
            raise WireError(400, f"Bad Request: unknown encoding {query['encoding']!r}")
        if query["encoding"] != "linear16":
            raise WireError(400, "Bad Request: this loopback server decodes linear16 only")
        p["encoding"] = "linear16"
        if "sample_rate" not in p:
            raise WireError(400, "Bad Request: sample_rate is required with encoding")
    elif live:
        raise WireError(400, "Bad Request: this loopback server streams raw linear16 only")
    if p.get("channels", 1) != 1:
        raise WireError(400, "Bad Request: this loopback server takes mono audio only")
    if "language" in query:
        p["language"] = query["language"]
    return p


def voiced_blocks(pcm: np.ndarray, rate: int) -> np.ndarray:
    """One bool per whole 10 ms block of int16 mono samples: does it hold speech?"""
    n = rate // 100
    blocks = len(pcm) // n
    if blocks == 0:
        return np.zeros(0, dtype=bool)
    peaks = np.abs(pcm[: blocks * n].astype(np.int32)).reshape(blocks, n).max(axis=1)
    return np.asarray(peaks >= VOICED_PEAK)


def _words(text: str, start: float, end: float, *, formatted: bool) -> list[dict[str, Any]]:
    tokens = text.split()
    step = (end - start) / max(1, len(tokens))
    out = []
    for i, token in enumerate(tokens):
        word: dict[str, Any] = {
            "word": re.sub(r"[^\w']", "", token.lower()) or token,
            "start": round(start + i * step, 3),
            "end": round(start + (i + 1) * step, 3),
            "confidence": 0.99,
        }
        if formatted:
            word["punctuated_word"] = token
        out.append(word)
    return out


def _alternative(text: str, start: float, end: float, *, formatted: bool) -> dict[str, Any]:
    words = _words(text, start, end, formatted=formatted)
    transcript = text if formatted else " ".join(w["word"] for w in words)
    return {"transcript": transcript, "confidence": 0.99 if words else 0.0, "words": words}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _LiveStream:
    """One live socket: audio in, Deepgram's messages out (through a delay line)."""

    def __init__(
        self,
        server: DeepgramServer,
        ws: web.WebSocketResponse,
        params: dict[str, Any],
        query: dict[str, str],
    ) -> None:
        self.server = server
        self.ws = ws
        self.params = params
        self.record = LiveRecord(params=query)
        self.request_id = str(uuid.uuid4())
        self._rate: int = params["sample_rate"]
        self._block_bytes = self._rate // 100 * 2
        self._leftover = b""
        self._sha = hashlib.sha256()
        self._formatted = bool(params.get("smart_format") or params.get("punctuate"))
        endpointing = params.get("endpointing")
        self._endpointing_s = None if endpointing is None else endpointing / 1000
        ue_ms = params.get("utterance_end_ms") if params.get("interim_results") else None
        self._utterance_end_s = None if ue_ms is None else ue_ms / 1000
        self._interim_every_s = server.interim_every_s
        self._t = 0.0  # audio seconds received (whole blocks)
        self._window_start = 0.0  # start of the audio not yet covered by a final
        self._seg_start: float | None = None  # first voiced block of the open segment
        self._seg_text: str | None = None  # the scripted text of the open segment, if any
        self._voiced_s = 0.0
        self._last_voice_end = 0.0
        self._last_interim_t = 0.0
        self._interims = 0
        self._ue_pending: float | None = None  # last word end awaiting an UtteranceEnd
        self._out: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self._closing = False

    # -- transport ---------------------------------------------------------------------------

    def _emit(self, msg: dict[str, Any]) -> None:
        self.record.sent.append(msg["type"])
        self.server._touch()
        self._out.put_nowait((time.monotonic() + self.server.ws_delay_s, json.dumps(msg)))

    async def _send_loop(self) -> None:
        while True:
            due, text = await self._out.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_str(text)
            self._out.task_done()

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        deadline = time.monotonic() + self.server.no_audio_timeout_s
        try:
            while not self.ws.closed and not self._closing:
                try:
                    msg = await self.ws.receive(timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    await self.close(1011, NET_0001)
                    break
                if msg.type == WSMsgType.BINARY:
                    deadline = time.monotonic() + self.server.no_audio_timeout_s
                    if not msg.data:  # an empty frame ends the stream, like CloseStream
                        await self._close_stream()
                        break
                    self._audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    deadline = time.monotonic() + self.server.no_audio_timeout_s
                    if await self._control(msg.data):
                        break
                else:  # CLOSE / CLOSING / CLOSED / ERROR: the client went away
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if not self.record.closed:
                self.record.closed = True
                self.record.close_code = self.ws.close_code
            self.server._live_open.discard(self)
            self.server._touch()

    async def close(self, code: int, reason: str) -> None:
        """Close at once (NET-0001, a scripted drop, shutdown): messages not yet sent are lost."""
        if self._closing:
            return
        self._closing = True
        self.record.closed = True
        self.record.close_code, self.record.close_reason = code, reason
        await self.ws.close(code=code, message=reason.encode())

    # -- client messages ---------------------------------------------------------------------

    async def _control(self, data: str) -> bool:
        """Handle one text frame; True when the stream is over."""
        try:
            msg = json.loads(data)
            kind = msg["type"] if isinstance(msg, dict) else None
        except (ValueError, KeyError):
            kind = None
        self.record.received.append(kind if isinstance(kind, str) else "?")
        self.server._touch()
        if kind == "KeepAlive":
            return False
        if kind == "Finalize":
            self._final(speech_final=False, from_finalize=True, always=True)
            return False
        if kind == "CloseStream":
            await self._close_stream()
            return True
        self._emit(
            {
                "type": "Error",
                "variant": "SchemaError",
                "description": "could not parse the client message",
                "message": data[:200],
            }
        )
        return False

    async def _close_stream(self) -> None:
        self._final(speech_final=False, from_finalize=False, always=False)
        self._emit(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": self._sha.hexdigest(),
                "created": _now_iso(),
                "duration": round(self._t, 3),
                "channels": 1,
                "models": [MODEL_UUID],
                "model_info": {MODEL_UUID: MODEL_INFO},
            }
        )
        await self._out.join()
        await self.close(1000, "")

    def _audio(self, data: bytes) -> None:
        self.record.audio_bytes += len(data)
        self.server._touch()
        self._sha.update(data)
        buf = self._leftover + data
        whole = len(buf) // self._block_bytes * self._block_bytes
        self._leftover = buf[whole:]
        pcm = np.frombuffer(buf[:whole], dtype="<i2")
        for voiced in voiced_blocks(pcm, self._rate):
            self._block(bool(voiced))

    # -- the audio timeline ------------------------------------------------------------------

    def _block(self, voiced: bool) -> None:
        start, end = self._t, self._t + BLOCK_S
        self._t = end
        if voiced:
            if self._seg_start is None:
                self._seg_start = start
                self._seg_text = self.server._take_script()
                self._voiced_s = 0.0
                self._interims = 0
                self._last_interim_t = start
                if self.params.get("vad_events"):
                    self._emit({"type": "SpeechStarted", "channel": [0], "timestamp": start})
            self._voiced_s += BLOCK_S
            self._last_voice_end = end
            self._ue_pending = end
        elif self._seg_start is not None:
            silent = end - self._last_voice_end
            if self._endpointing_s is not None and silent >= self._endpointing_s - 1e-9:
                self._final(speech_final=True, from_finalize=False, always=False)
        if (
            self._seg_start is not None
            and self.params.get("interim_results")
            and end - self._last_interim_t >= self._interim_every_s - 1e-9
        ):
            self._last_interim_t = end
            self._interims += 1
            self._results(self._transcript(final=False), is_final=False)
        if (
            not voiced
            and self._ue_pending is not None
            and self._utterance_end_s is not None
            and end - self._ue_pending >= self._utterance_end_s - 1e-9
        ):
            self._emit(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self._ue_pending}
            )
            self._ue_pending = None

    def _transcript(self, *, final: bool) -> str:
        if self._seg_start is None:
            return ""
        if self._seg_text is None:
            return self.server.transcribe(round(self._voiced_s, 2))
        words = self._seg_text.split()
        return self._seg_text if final else " ".join(words[: max(1, self._interims)])

    def _final(self, *, speech_final: bool, from_finalize: bool, always: bool) -> None:
        """Close the open segment with a final result (`always`: even when nothing is open)."""
        if self._seg_start is None and not always:
            return
        self._results(
            self._transcript(final=True),
            is_final=True,
            speech_final=speech_final,
            from_finalize=from_finalize,
        )
        self._seg_start = None
        self._seg_text = None
        self._window_start = self._t

    def _results(
        self, text: str, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False
    ) -> None:
        words_start = self._seg_start if self._seg_start is not None else self._t
        words_end = self._last_voice_end if self._seg_start is not None else self._t
        self._emit(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": round(self._t - self._window_start, 3),
                "start": round(self._window_start, 3),
                "is_final": is_final,
                "speech_final": speech_final,
                "from_finalize": from_finalize,
                "channel": {
                    "alternatives": [
                        _alternative(text, words_start, words_end, formatted=self._formatted)
                    ]
                },
                "metadata": {
                    "request_id": self.request_id,
                    "model_info": MODEL_INFO,
                    "model_uuid": MODEL_UUID,
                },
            }
        )


class DeepgramServer:
    """The loopback server. `async with DeepgramServer() as dg:` starts it on a free port."""

    def __init__(
        self,
        *,
        api_keys: tuple[str, ...] = ("test-key",),
        host: str = "127.0.0.1",
        port: int = 0,
        no_audio_timeout_s: float = 10.0,
        http_delay_s: float = 0.0,
        ws_delay_s: float = 0.0,
        interim_every_s: float = 0.5,
        transcribe: Callable[[float], str] = default_transcribe,
    ) -> None:
        self.api_keys = set(api_keys)
        self.host = host
        self.port = port
        self.no_audio_timeout_s = no_audio_timeout_s
        self.http_delay_s = http_delay_s  # before every prerecorded answer (errors included)
        self.ws_delay_s = ws_delay_s  # added to every live message
        self.interim_every_s = interim_every_s  # audio seconds between interim results
        self.transcribe = transcribe
        self.http_requests: list[HttpRecord] = []
        self.live: list[LiveRecord] = []  # accepted sockets
        self.handshakes = 0  # live handshakes, refused ones included
        self._script: deque[str] = deque()
        self._fail_http: deque[int] = deque()
        self._fail_handshake: deque[int] = deque()
        self._live_open: set[_LiveStream] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_post("/v1/listen", self._prerecorded)
        app.router.add_get("/v1/listen", self._live)
        self._app = app

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> DeepgramServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, shutdown_timeout=0.25
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        for stream in list(self._live_open):
            await stream.close(1001, "server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DeepgramServer:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *texts: str) -> None:
        """Queue transcripts: one per segment of speech (a REST request or a live utterance)."""
        self._script.extend(texts)

    def fail_next_http(self, *statuses: int) -> None:
        """The next prerecorded requests get these HTTP statuses, one each."""
        self._fail_http.extend(statuses)

    def fail_next_handshake(self, *statuses: int) -> None:
        """The next live handshakes are refused with these HTTP statuses, one each."""
        self._fail_handshake.extend(statuses)

    async def drop_live(self, *, code: int = 1011, reason: str = DROP_REASON) -> int:
        """Close every open live socket mid-stream; returns how many were open."""
        streams = list(self._live_open)
        for stream in streams:
            await stream.close(code, reason)
        return len(streams)

    @property
    def open_live(self) -> int:
        return len(self._live_open)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Wait for a condition on the server's records (a gate, not a sleep)."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _touch(self) -> None:
        """A record changed: wake `wait_until`."""
        self._changed.set()

    def _take_script(self) -> str | None:
        return self._script.popleft() if self._script else None

    # -- handlers ----------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "token" and key.strip() in self.api_keys

    async def _prerecorded(self, request: web.Request) -> web.Response:
        record = HttpRecord(
            params=dict(request.query),
            authorization=request.headers.get("Authorization", ""),
            content_type=request.content_type,
        )
        self.http_requests.append(record)
        response = await self._answer(request, record)
        record.status = response.status
        self._touch()
        return response

    async def _answer(self, request: web.Request, record: HttpRecord) -> web.Response:
        body = await request.read()
        record.body_bytes = len(body)
        if self.http_delay_s:
            await asyncio.sleep(self.http_delay_s)
        if not self._authorized(request):
            return _error_response(401, "Invalid credentials.")
        if self._fail_http:
            status = self._fail_http.popleft()
            return _error_response(status, f"scripted failure {status}")
        try:
            params = parse_params(request.query, live=False)
            if request.content_type != "application/octet-stream" and not (
                request.content_type.startswith("audio/")
            ):
                raise WireError(400, "Bad Request: send audio bytes (application/octet-stream)")
            pcm, rate = _decode_prerecorded(body, params)
        except WireError as e:
            return _error_response(e.status, e.message)
        voiced = voiced_blocks(pcm, rate)
        voiced_s = round(float(voiced.sum()) * BLOCK_S, 2)
        text = "" if voiced_s == 0 else (self._take_script() or self.transcribe(voiced_s))
        duration = len(pcm) / rate
        formatted = bool(params.get("smart_format") or params.get("punctuate"))
        return web.json_response(
            {
                "metadata": {
                    "transaction_key": "deprecated",
                    "request_id": str(uuid.uuid4()),
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "created": _now_iso(),
                    "duration": round(duration, 3),
                    "channels": 1,
                    "models": [MODEL_UUID],
                    "model_info": {MODEL_UUID: MODEL_INFO},
                },
                "results": {
                    "channels": [
                        {"alternatives": [_alternative(text, 0.0, duration, formatted=formatted)]}
                    ]
                },
            }
        )

    async def _live(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        self._touch()
        if not self._authorized(request):
            return _error_response(401, "Invalid credentials.")
        if self._fail_handshake:
            status = self._fail_handshake.popleft()
            return _error_response(status, f"scripted failure {status}")
        try:
            params = parse_params(request.query, live=True)
        except WireError as e:
            return _error_response(e.status, e.message)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        stream = _LiveStream(self, ws, params, dict(request.query))
        self.live.append(stream.record)
        self._live_open.add(stream)
        self._touch()
        await stream.run()
        return ws


def _decode_prerecorded(body: bytes, params: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Int16 mono samples and rate of a prerecorded body: a PCM16 WAV, or raw linear16."""
    if not body:
        raise WireError(400, "Bad Request: the payload is empty")
    if body[:4] == b"RIFF" and body[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(body)) as w:
                if w.getsampwidth() != 2:
                    raise WireError(400, "Bad Request: this loopback server decodes PCM16 WAV only")
                rate, channels = w.getframerate(), w.getnchannels()
                frames = w.readframes(w.getnframes())
        except (wave.Error, EOFError) as e:
            raise WireError(
                400, "Bad Request: failed to process audio: corrupt or unsupported data"
            ) from e
        pcm = np.frombuffer(frames, dtype="<i2")[::channels]
        return pcm, rate
    if params.get("encoding") == "linear16":
        return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2"), int(params["sample_rate"])
    raise WireError(400, "Bad Request: failed to process audio: corrupt or unsupported data")


async def _serve_forever(server: DeepgramServer) -> None:
    await server.start()
    print(f"loopback Deepgram on {server.base_url} (ws on the same port)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument("--key", action="append", help="an accepted API key (repeatable)")
    ap.add_argument("--no-audio-timeout", type=float, default=10.0, help="NET-0001 after (s)")
    ap.add_argument("--http-delay", type=float, default=0.0, help="prerecorded latency (s)")
    ap.add_argument("--ws-delay", type=float, default=0.0, help="live message latency (s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = DeepgramServer(
        api_keys=tuple(args.key or ["test-key"]),
        host=args.host,
        port=args.port,
        no_audio_timeout_s=args.no_audio_timeout,
        http_delay_s=args.http_delay,
        ws_delay_s=args.ws_delay,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(server))


if __name__ == "__main__":
    main()
