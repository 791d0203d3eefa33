"""Deepgram STT through the official SDK: prerecorded REST (`DeepgramSTT`) and one live
WebSocket per voice session (`DeepgramLiveSession`).

The SDK is an extra (`pip install '.[cloud]'`) imported only when a Deepgram object is made.
It does no keepalive and no reconnect for the live socket, so this module does both: a
KeepAlive whenever no audio went out for `keepalive_s`, and a reconnect with backoff when the
socket drops (a close 1011, a reset). A 4xx is never retried.

Errors: every failure is a `ProviderError`; a transient one (429, 408, 5xx, a timeout, a
dropped or refused connection) is its subclass `TransientProviderError`, so a caller that
retries or falls back to another provider catches that and lets the rest through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.base import SttProvider
from pipeline.providers.streams import (
    Closed,
    FinalTranscript,
    InterimTranscript,
    LiveEvent,
    LiveEventKind,
    Reconnected,
    SpeechStarted,
    SttError,
    SttStream,
    UtteranceEnd,
)
from pipeline.voice.audio import STT_RATE, encode_wav, float_to_pcm16

if TYPE_CHECKING:
    from deepgram import AsyncDeepgramClient
    from deepgram.listen.v1.socket_client import AsyncV1SocketClient

log = logging.getLogger(__name__)
__all__ = [  # the live events live in streams.py (provider-neutral); re-exported here
    "Closed",
    "DeepgramLiveSession",
    "DeepgramLiveStreams",
    "DeepgramSTT",
    "FinalTranscript",
    "InterimTranscript",
    "LiveEvent",
    "LiveEventKind",
    "Reconnected",
    "SpeechStarted",
    "SttError",
    "UtteranceEnd",
]

PROVIDER = "deepgram"
# Close codes after which a new socket cannot help: bad audio (1002/1003/1007), policy (1008),
# a frame too big (1009). Everything else (1000 unasked, 1001, 1006, 1011-1014) is a drop.
_FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009})
_TIMEOUT_GRACE_S = 1.0  # the base class's backstop fires this much after our own timeout


def _import_sdk() -> tuple[Any, type[Exception]]:
    """The SDK module and its ApiError (an HTTP status at a REST call or a WS handshake)."""
    try:
        import deepgram
        from deepgram.core.api_error import ApiError
    except ImportError as e:
        raise ImportError(
            "the Deepgram provider needs the deepgram-sdk package: pip install '.[cloud]'"
        ) from e
    return deepgram, ApiError


def _client(
    api_key: str, base_url: str | None, *, timeout_s: float, http: httpx.AsyncClient | None = None
) -> AsyncDeepgramClient:
    dg, _ = _import_sdk()
    if not api_key:
        raise ValueError("a Deepgram API key is required")
    if base_url is None:
        env = dg.DeepgramClientEnvironment.PRODUCTION
    else:
        origin = base_url.rstrip("/")
        if origin.startswith("https://"):
            ws = "wss://" + origin.removeprefix("https://")
        elif origin.startswith("http://"):
            ws = "ws://" + origin.removeprefix("http://")
        else:
            raise ValueError(f"base_url must be an http(s) origin, got {base_url!r}")
        env = dg.DeepgramClientEnvironment(base=origin, production=ws, agent=ws, agent_rest=origin)
    # max_retries=0: a voice turn cannot wait for the SDK's backoff; retrying is the caller's.
    client: AsyncDeepgramClient = dg.AsyncDeepgramClient(
        api_key=api_key, environment=env, timeout=timeout_s, max_retries=0, httpx_client=http
    )
    return client


def _is_retryable_status(status: int | None) -> bool:
    return status is not None and (status in (408, 429) or status >= 500)


def _api_error(e: Exception, what: str) -> ProviderError:
    """The SDK's ApiError (an HTTP status at the REST call or the WebSocket handshake)."""
    status = getattr(e, "status_code", None)
    message = f"{what} failed with HTTP {status}"
    if _is_retryable_status(status):
        return TransientProviderError(message, provider=PROVIDER, status=status)
    return ProviderError(message, provider=PROVIDER)


class DeepgramSTT(SttProvider):
    """Prerecorded transcription: one REST request per clip (PCM16 WAV), clips in parallel.

    `timeout_s` bounds each request; a timeout is a `TransientProviderError`.
    """

    name = PROVIDER
    local_compute = False  # remote: calls run concurrently, unbatched

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "nova-2",
        language: str | None = None,
        smart_format: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s + _TIMEOUT_GRACE_S)
        self._request_timeout_s = timeout_s
        self._model = model
        self._language = language
        self._smart_format = smart_format
        self._api_error = _import_sdk()[1]
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self._client = _client(api_key, base_url, timeout_s=timeout_s, http=self._http)

    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]:
        try:
            async with asyncio.timeout(self._request_timeout_s), asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._transcribe_one(a)) for a in audios]
        except TimeoutError as e:
            raise TransientProviderError("transcription timed out", provider=self.name) from e
        except BaseExceptionGroup as eg:  # a clip failed and its siblings were cancelled
            first = eg.exceptions[0]
            raise first from first.__cause__
        return [t.result() for t in tasks]

    async def _transcribe_one(self, audio: np.ndarray) -> str:
        wav = encode_wav(float_to_pcm16(audio), STT_RATE)
        try:
            response = await self._client.listen.v1.media.transcribe_file(
                request=wav,
                model=self._model,
                language=self._language,
                smart_format=self._smart_format,
                request_options={"timeout": self._request_timeout_s, "max_retries": 0},
            )
        except self._api_error as e:
            raise _api_error(e, "transcription") from e
        except httpx.TimeoutException as e:
            raise TransientProviderError("transcription timed out", provider=self.name) from e
        except httpx.TransportError as e:
            raise TransientProviderError(
                f"transcription failed: {type(e).__name__}", provider=self.name
            ) from e
        results = getattr(response, "results", None)
        if results is None:  # a callback-style "accepted" answer: not what we asked for
            raise ProviderError("the response holds no results", provider=self.name)
        channels = results.channels or []
        alternatives = (channels[0].alternatives or []) if channels else []
        return (alternatives[0].transcript or "") if alternatives else ""

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()


# -- live ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Drop:
    code: int
    reason: str


class DeepgramLiveSession:
    """One live socket for one voice session, kept open across turns.

        async with DeepgramLiveSession(api_key=key) as stt:
            await stt.send(pcm16)       # 16 kHz mono s16le, any chunk size
            await stt.finalize()        # our VAD heard the end of the turn
            async for event in stt.events(): ...

    Entering raises `ProviderError` on a refused handshake (401, 400) and
    `TransientProviderError` when the service cannot be reached. After that, failures arrive as
    events: a drop is an `SttError(retryable=True)` followed by `Reconnected` (backoff
    `backoff_s[0]` doubling to `backoff_s[1]`), or by `Closed` after `max_quick_failures`
    failures in a row (a socket that lived less than `quick_failure_s` counts as one) or a 4xx.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "nova-2",
        language: str | None = None,
        interim_results: bool = True,
        endpointing_ms: int | None = 300,
        utterance_end_ms: int | None = 1000,
        vad_events: bool = True,
        smart_format: bool = True,
        keepalive_s: float | None = 4.0,
        connect_timeout_s: float = 5.0,
        close_timeout_s: float = 2.0,
        backoff_s: tuple[float, float] = (0.5, 5.0),
        max_quick_failures: int = 3,
        quick_failure_s: float = 5.0,
        reconnect_buffer_s: float = 2.0,
    ) -> None:
        self._client = _client(api_key, base_url, timeout_s=connect_timeout_s)
        self._api_error = _import_sdk()[1]
        self._options: dict[str, Any] = {
            "model": model,
            "encoding": "linear16",
            "sample_rate": STT_RATE,
            "channels": 1,
            "interim_results": interim_results,
            "endpointing": endpointing_ms if endpointing_ms is not None else False,
            "vad_events": vad_events,
            "smart_format": smart_format,
        }
        if utterance_end_ms is not None:
            self._options["utterance_end_ms"] = utterance_end_ms
        if language is not None:
            self._options["language"] = language
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._close_timeout_s = close_timeout_s
        self._backoff_s = backoff_s
        self._max_quick_failures = max_quick_failures
        self._quick_failure_s = quick_failure_s
        self._buffer_max = int(reconnect_buffer_s * STT_RATE) * 2
        self._events: asyncio.Queue[LiveEvent] = asyncio.Queue()
        self._conn: AsyncV1SocketClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._done = False
        self._failure: ProviderError | None = None  # why the session ended, if not by us
        self._last_send = time.monotonic()
        self._pending_finalize: deque[float] = deque()  # finalize() times awaiting an answer
        self._finalize_on_reconnect: float | None = None
        self._buffer = bytearray()  # audio sent while no socket was open
        self._send_lock = asyncio.Lock()  # keeps audio in order across a reconnect
        self.finalize_latencies_s: list[float] = []
        self.reconnects = 0

    # -- public API --------------------------------------------------------------------------

    async def __aenter__(self) -> DeepgramLiveSession:
        conn, stack = await self._open()
        self._conn = conn
        self._runner = asyncio.create_task(self._supervise(conn, stack), name="deepgram-live")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def send(self, pcm16: bytes) -> None:
        """Send audio (16 kHz mono s16le). While reconnecting, the last `reconnect_buffer_s`
        are kept and sent on the new socket. Once the session has ended this raises why."""
        self._check_open()
        if not pcm16:  # an empty frame would end the stream (Deepgram reads it as CloseStream)
            return
        async with self._send_lock:
            conn = self._conn
            if conn is not None:
                try:
                    await conn.send_media(pcm16)
                    self._last_send = time.monotonic()
                    return
                except ConnectionClosed:
                    pass  # the reader sees the drop and reconnects; this audio goes on the next
            self._buffer += pcm16
            del self._buffer[: max(0, len(self._buffer) - self._buffer_max)]

    async def finalize(self) -> None:
        """End of the user's turn (our VAD): ask for the final text of the audio so far now.
        The answer is a `FinalTranscript(from_finalize=True)` carrying the latency."""
        self._check_open()
        now = time.monotonic()
        async with self._send_lock:
            conn = self._conn
            if conn is not None:
                try:
                    self._pending_finalize.append(now)
                    await conn.send_finalize()
                    self._last_send = time.monotonic()
                    return
                except ConnectionClosed:
                    self._pending_finalize.clear()
            self._finalize_on_reconnect = now

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._done or self._closing:
            raise ProviderError("the live session is closed", provider=PROVIDER)

    async def events(self) -> AsyncIterator[LiveEvent]:
        """Transcripts and session events in arrival order; ends after `Closed`."""
        while not (self._done and self._events.empty()):
            event = await self._events.get()
            yield event
            if isinstance(event, Closed):
                return

    async def aclose(self) -> None:
        """Send CloseStream, let the server flush its last results, then close."""
        if self._closing:
            return
        self._closing = True
        runner = self._runner
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(ConnectionClosed):
                await conn.send_close_stream()
        if runner is None:
            return
        if conn is None:  # between sockets: nothing to flush
            runner.cancel()
        _, pending = await asyncio.wait([runner], timeout=self._close_timeout_s)
        if pending:
            runner.cancel()
            await asyncio.wait([runner])

    # -- connection management ---------------------------------------------------------------

    async def _open(self) -> tuple[AsyncV1SocketClient, contextlib.AsyncExitStack]:
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                conn = await stack.enter_async_context(
                    self._client.listen.v1.connect(**self._options)
                )
        except self._api_error as e:
            await stack.aclose()
            raise _api_error(e, "live connect") from e
        except (TimeoutError, OSError, InvalidHandshake) as e:
            await stack.aclose()
            raise TransientProviderError(
                f"live connect failed: {type(e).__name__}", provider=PROVIDER
            ) from e
        return conn, stack

    async def _supervise(self, conn: AsyncV1SocketClient, stack: contextlib.AsyncExitStack) -> None:
        failures = 0  # quick failures in a row: sockets refused or dropped soon after opening
        try:
            while True:
                opened = time.monotonic()
                drop = await self._serve(conn)
                await self._close_quietly(stack)
                if drop is None:
                    return
                quick = time.monotonic() - opened < self._quick_failure_s
                failures = failures + 1 if quick else 0
                self._pending_finalize.clear()  # a dropped socket answers nothing more
                fatal = drop.code in _FATAL_CLOSE_CODES
                self._emit(SttError(f"socket closed: {drop.reason}", drop.code, not fatal))
                log.warning("deepgram live socket dropped (code %s)", drop.code)
                if fatal:
                    self._failure = ProviderError(
                        f"live socket closed with {drop.code}", provider=PROVIDER
                    )
                    return
                opened_again = await self._reconnect(failures)
                if opened_again is None:
                    return
                conn, stack, failures = opened_again
        except Exception as e:  # a bug or a message the SDK could not parse: end visibly
            log.exception("deepgram live session failed")
            self._emit(SttError(f"live session failed: {type(e).__name__}", None, False))
            self._failure = ProviderError("the live session failed", provider=PROVIDER)
        finally:
            self._conn = None
            self._done = True
            await self._close_quietly(stack)  # a no-op unless cancelled mid-socket
            reason = "closed" if self._failure is None else self._failure.message
            self._emit(Closed(reason))

    async def _reconnect(
        self, failures: int
    ) -> tuple[AsyncV1SocketClient, contextlib.AsyncExitStack, int] | None:
        attempt = 0
        while failures < self._max_quick_failures and not self._closing:
            await asyncio.sleep(min(self._backoff_s[0] * 2**attempt, self._backoff_s[1]))
            attempt += 1
            try:
                conn, stack = await self._open()
            except TransientProviderError as e:
                failures += 1
                log.warning("deepgram live reconnect %d failed: %s", attempt, e.message)
                continue
            except ProviderError as e:  # a 4xx: retrying cannot help
                self._emit(SttError(e.message, getattr(e.__cause__, "status_code", None), False))
                self._failure = e
                return None
            self.reconnects += 1
            self._emit(Reconnected(attempt))
            return conn, stack, failures
        if not self._closing:
            message = f"gave up after {failures} failed connections in a row"
            self._emit(SttError(message, None, False))
            self._failure = TransientProviderError(message, provider=PROVIDER)
        return None

    async def _serve(self, conn: AsyncV1SocketClient) -> _Drop | None:
        """Read one socket until it closes: None when we asked for it, else the drop."""
        keepalive = None
        try:
            async with self._send_lock:  # what was sent meanwhile goes first
                await self._resend(conn)
                self._conn = conn
            if self._keepalive_s is not None:
                keepalive = asyncio.create_task(self._keepalive(conn, self._keepalive_s))
            async for message in conn:
                self._dispatch(message)
            return None if self._closing else _Drop(1000, "the server ended the stream")
        except ConnectionClosed as e:
            if self._closing:
                return None
            frame = e.rcvd
            return _Drop(frame.code, frame.reason) if frame else _Drop(1006, "connection lost")
        except OSError as e:
            return None if self._closing else _Drop(1006, f"connection lost: {type(e).__name__}")
        finally:
            self._conn = None
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive

    async def _resend(self, conn: AsyncV1SocketClient) -> None:
        """On a new socket: the audio kept while reconnecting, then a Finalize asked meanwhile."""
        if self._buffer:
            audio, self._buffer = bytes(self._buffer), bytearray()
            await conn.send_media(audio)
            self._last_send = time.monotonic()
        if self._finalize_on_reconnect is not None:
            self._pending_finalize.append(self._finalize_on_reconnect)
            self._finalize_on_reconnect = None
            await conn.send_finalize()

    async def _keepalive(self, conn: AsyncV1SocketClient, every_s: float) -> None:
        """KeepAlive whenever nothing was sent for `every_s` (the server closes after 10 s)."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                idle = time.monotonic() - self._last_send
                if idle >= every_s:
                    await conn.send_keep_alive()
                    self._last_send = time.monotonic()
                    idle = 0.0
                await asyncio.sleep(every_s - idle)

    async def _close_quietly(self, stack: contextlib.AsyncExitStack) -> None:
        """Close a socket's context; bounded, as the SDK's close waits for the server's."""
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            async with asyncio.timeout(self._close_timeout_s):
                await stack.aclose()

    # -- server messages ---------------------------------------------------------------------

    def _emit(self, event: LiveEvent) -> None:
        self._events.put_nowait(event)

    def _dispatch(self, message: object) -> None:
        """One server message to an event. Unknown types (None from the SDK) and audio bytes
        are skipped; a known type missing fields is an error event (the SDK does not validate)."""
        kind = getattr(message, "type", None)
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return
        try:
            handler(self, message)
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            log.warning("deepgram sent a malformed %s message: %s", kind, type(e).__name__)
            self._emit(SttError(f"malformed {kind} message", None, False))

    def _on_results(self, m: Any) -> None:
        alternatives = m.channel.alternatives
        text = (alternatives[0].transcript or "").strip() if alternatives else ""
        confidence = float(alternatives[0].confidence) if alternatives else 0.0
        if not m.is_final:
            if text:  # empty interims carry nothing
                self._emit(InterimTranscript(text, m.start, m.duration, confidence))
            return
        latency = None
        if m.from_finalize and self._pending_finalize:
            latency = time.monotonic() - self._pending_finalize.popleft()
            self.finalize_latencies_s.append(latency)
        self._emit(
            FinalTranscript(
                text,
                m.start,
                m.duration,
                confidence,
                speech_final=bool(m.speech_final),
                from_finalize=bool(m.from_finalize),
                finalize_latency_s=latency,
            )
        )

    def _on_speech_started(self, m: Any) -> None:
        self._emit(SpeechStarted(m.timestamp))

    def _on_utterance_end(self, m: Any) -> None:
        self._emit(UtteranceEnd(m.last_word_end))

    def _on_error(self, m: Any) -> None:
        self._emit(SttError(f"{m.variant}: {m.description}", None, False))

    _handlers: ClassVar[dict[str, Any]] = {
        "Results": _on_results,
        "SpeechStarted": _on_speech_started,
        "UtteranceEnd": _on_utterance_end,
        "Error": _on_error,
    }


class DeepgramLiveStreams:
    """`SttStreams` over Deepgram: each `open()` is a new `DeepgramLiveSession` (one socket per
    voice session), with the options given here."""

    name = PROVIDER

    def __init__(self, **options: Any) -> None:
        self._options = options

    async def open(self) -> SttStream:
        session = DeepgramLiveSession(**self._options)
        return await session.__aenter__()
