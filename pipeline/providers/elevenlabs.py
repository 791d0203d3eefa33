"""Cloud TTS: ElevenLabs (the `cloud` extra), PCM16 mono at one of its `pcm_<rate>` rates.

- `ElevenLabsTTS`: HTTP streaming through the official SDK; `synthesize_batch` (policy in the
  base class) and `stream(text)`, PCM chunks as they arrive (for `/v1/audio/speech`).
- `ElevenLabsSocketPool`: our async client for the multi-context WebSocket
  (`/multi-stream-input`), one context per reply, sockets shared by replies:

      async with await pool.open_context() as ctx:  # leaving early cancels the reply
          await ctx.send("Hello there. ")           # clauses as the LLM writes them
          await ctx.close()                         # end of reply; ctx.cancel() on barge-in
          async for pcm in ctx: ...

Errors leave as `ProviderError`; transient ones (429, 5xx, a dropped connection, a timeout) as
its subclass `TransientProviderError`: the same request may succeed if made again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlencode, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.base import TtsProvider
from pipeline.providers.streams import SpeechChunk, TtsStream, spoken_chars

if TYPE_CHECKING:
    from elevenlabs.core.unchecked_base_model import UncheckedBaseModel

log = logging.getLogger(__name__)

PROVIDER = "elevenlabs"
PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
DEFAULT_MODEL = "eleven_turbo_v2_5"
_DEFAULT_BASE_URL = "https://api.elevenlabs.io"
_MISSING_SDK = "ElevenLabs needs its SDK: pip install '.[cloud]'"
_RETRYABLE_STATUS = frozenset({408, 409, 429})
# Error frames (`{"error": ..., "code": 1008}`) after which the same request may succeed.
_RETRYABLE_FRAMES = frozenset({"max_active_conversations", "input_timeout_exceeded"})
# The deadline this module enforces fires first and maps to TransientProviderError; the base
# class's deadline, this much later, stays as a backstop.
_BACKSTOP_S = 1.0


def _require_sdk() -> None:
    try:
        import elevenlabs  # noqa: F401
    except ImportError as e:
        raise ImportError(_MISSING_SDK) from e


def _check_rate(sample_rate: int) -> int:
    if sample_rate not in PCM_RATES:
        raise ValueError(f"ElevenLabs speaks PCM at {PCM_RATES} Hz, not {sample_rate}")
    return sample_rate


def _status_error(status: int, what: str, code: str | None) -> ProviderError:
    message = f"{what}: HTTP {status}" + (f" ({code})" if code else "")
    if status in _RETRYABLE_STATUS or status >= 500:
        return TransientProviderError(message, provider=PROVIDER)
    return ProviderError(message, provider=PROVIDER)


def _error_code(body: Any) -> str | None:
    """ElevenLabs' error code (`detail.status`), never its message: that may quote the text."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and detail.get("status"):
        return str(detail["status"])
    return "validation_error" if isinstance(detail, list) else None


def _transport_error(e: BaseException, what: str) -> ProviderError:
    """Translate a transport failure (HTTP or socket)."""
    if isinstance(e, ProviderError):
        return e
    if isinstance(e, InvalidStatus):
        return _status_error(e.response.status_code, what, _error_code(e.response.body))
    if isinstance(e, TimeoutError | httpx.TimeoutException):
        return TransientProviderError(f"{what} timed out", provider=PROVIDER)
    if isinstance(e, InvalidURI):
        return ProviderError(f"{what}: bad URL", provider=PROVIDER)
    if isinstance(e, httpx.TransportError | OSError | WebSocketException):
        kind = type(e).__name__
        return TransientProviderError(f"{what}: connection failed ({kind})", provider=PROVIDER)
    return ProviderError(f"{what} failed ({type(e).__name__})", provider=PROVIDER)


class ElevenLabsTTS(TtsProvider):
    """HTTP streaming TTS. `timeout_s` bounds each wait for audio (the first chunk and every
    next one); passing it raises `TransientProviderError`."""

    name = PROVIDER
    local_compute = False  # remote: calls run concurrently, unbatched

    def __init__(
        self,
        *,
        api_key: str,
        voice_id: str,
        base_url: str | None = None,
        model_id: str = DEFAULT_MODEL,
        sample_rate: int = 16_000,
        voice_settings: Mapping[str, float | bool] | None = None,
        optimize_streaming_latency: int | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        _require_sdk()
        from elevenlabs.client import AsyncElevenLabs

        super().__init__(timeout_s=timeout_s + _BACKSTOP_S)
        self.sample_rate = _check_rate(sample_rate)
        self._wait_s = timeout_s
        self._voice_id = voice_id
        self._options: dict[str, Any] = {
            "model_id": model_id,
            "output_format": f"pcm_{sample_rate}",
        }
        if optimize_streaming_latency is not None:
            self._options["optimize_streaming_latency"] = optimize_streaming_latency
        if voice_settings:
            from elevenlabs.types import VoiceSettings as SdkVoiceSettings

            self._options["voice_settings"] = SdkVoiceSettings.model_validate(dict(voice_settings))
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self._client = AsyncElevenLabs(
            api_key=api_key, base_url=base_url, timeout=timeout_s, httpx_client=self._http
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _synthesize_impl(self, texts: list[str]) -> list[bytes]:
        tasks = [asyncio.create_task(self._whole(t)) for t in texts]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for t in tasks:
                t.cancel()

    async def _whole(self, text: str) -> bytes:
        return b"".join([chunk async for chunk in self.stream(text)])

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 chunks of `text` as they arrive, whole samples each."""
        if not text.strip():
            return
        chunks = cast(
            AsyncGenerator[bytes, None],
            self._client.text_to_speech.stream(
                self._voice_id, text=text, request_options={"max_retries": 0}, **self._options
            ),
        )
        carry = b""
        try:
            while True:
                try:
                    async with asyncio.timeout(self._wait_s):
                        chunk = await anext(chunks, None)
                except Exception as e:
                    raise self._translate(e) from e
                if chunk is None:
                    break
                data = carry + chunk
                whole = len(data) - len(data) % 2
                carry = data[whole:]
                if whole:
                    yield data[:whole]
        finally:
            await chunks.aclose()

    @staticmethod
    def _translate(e: Exception) -> ProviderError:
        from elevenlabs.core.api_error import ApiError

        if isinstance(e, ApiError) and e.status_code is not None:
            return _status_error(e.status_code, "synthesis", _error_code(e.body))
        return _transport_error(e, "synthesis")


class ElevenLabsContext:
    """One reply on a shared socket (a `TtsStream`). `send()` clauses (each ends with a
    space), `flush()` to speak what is buffered now, `close()` at the end of the reply,
    `cancel()` on barge-in; iterate for its PCM16 chunks, or `chunks()` for them with the
    characters whose speech starts in each (from ElevenLabs' `alignment`). As `async with`,
    leaving cancels a reply not yet finished."""

    def __init__(self, socket: _Socket, *, audio_timeout_s: float) -> None:
        self.id = uuid.uuid4().hex
        self._socket = socket
        self._audio_timeout_s = audio_timeout_s
        self._audio: asyncio.Queue[SpeechChunk | ProviderError | None] = asyncio.Queue()
        self._closed = False  # close_context sent: no more text
        self._cancelled = False
        self._done = False  # isFinal or a failure seen
        self._carry = b""

    @property
    def done(self) -> bool:
        return self._done or self._cancelled

    async def send(self, text: str) -> None:
        from elevenlabs.types import SendTextMulti

        if self._cancelled or not text.strip():
            return
        if self._closed:
            raise RuntimeError("send() after close()")
        text = text if text.endswith(" ") else text + " "
        await self._socket.send(SendTextMulti(text=text, context_id=self.id))

    async def flush(self) -> None:
        from elevenlabs.types import FlushContext

        if not self._closed:
            await self._socket.send(FlushContext(context_id=self.id, flush=True))

    async def close(self) -> None:
        """End of the reply: what was sent is spoken, then the audio ends."""
        from elevenlabs.types import CloseContext, FlushContext

        if self._closed:
            return
        self._closed = True
        await self._socket.send(FlushContext(context_id=self.id, flush=True))
        await self._socket.send(CloseContext(context_id=self.id, close_context=True))

    async def cancel(self) -> None:
        """Barge-in: the context closes at once and no more of its audio is yielded."""
        from elevenlabs.types import CloseContext

        if self._cancelled:
            return
        self._cancelled = True
        while not self._audio.empty():
            self._audio.get_nowait()
        self._audio.put_nowait(None)
        if self._done:
            return
        self._socket.watch_cancelled(self)
        if not self._closed:
            self._closed = True
            with contextlib.suppress(ProviderError):  # a dead socket has closed it already
                await self._socket.send(CloseContext(context_id=self.id, close_context=True))

    def __aiter__(self) -> AsyncIterator[bytes]:
        return (chunk.pcm async for chunk in self.chunks())

    async def chunks(self) -> AsyncIterator[SpeechChunk]:
        while True:
            if self._closed and not self._cancelled:
                try:
                    async with asyncio.timeout(self._audio_timeout_s):
                        item = await self._audio.get()
                except TimeoutError as e:
                    raise TransientProviderError("socket audio timed out", provider=PROVIDER) from e
            else:
                item = await self._audio.get()
            if item is None:
                return
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def __aenter__(self) -> ElevenLabsContext:
        return self

    async def __aexit__(self, *_: object) -> None:
        if not self._done:
            await self.cancel()

    # -- fed by the socket's reader --------------------------------------------------------

    def _feed(self, audio_b64: str, chars: int | None) -> None:
        if self.done:
            return
        data = self._carry + base64.b64decode(audio_b64)
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        if whole or chars:
            self._audio.put_nowait(SpeechChunk(data[:whole], chars))

    def _finish(self, error: ProviderError | None = None) -> None:
        if self.done:
            self._done = True
            return
        self._done = True
        self._audio.put_nowait(error)


class _Socket:
    """One multi-context socket: a reader task routes audio to its contexts by id, a minder
    keeps quiet contexts alive and closes the socket when idle."""

    def __init__(self, pool: ElevenLabsSocketPool, ws: ClientConnection) -> None:
        self._pool = pool
        self._ws = ws
        self.contexts: dict[str, ElevenLabsContext] = {}
        self.alive = True
        self.accepting = True  # False: no new contexts (closing, or a cancel went unanswered)
        self._error: ProviderError | None = None  # from an error frame, for its contexts
        self._loop = asyncio.get_running_loop()
        self._last_sent = self._loop.time()
        self._reader = asyncio.create_task(self._read())
        self._minder = asyncio.create_task(self._mind())

    def has_room(self, max_contexts: int) -> bool:
        return self.alive and self.accepting and len(self.contexts) < max_contexts

    async def send(self, message: UncheckedBaseModel) -> None:
        if not self.alive:
            raise self._error or TransientProviderError("socket closed", provider=PROVIDER)
        try:
            await self._ws.send(json.dumps(message.dict()))
        except Exception as e:
            self.alive = False  # the reader reports to the contexts; no new ones come here
            raise _transport_error(e, "socket send") from e
        self._last_sent = self._loop.time()

    def watch_cancelled(self, ctx: ElevenLabsContext) -> None:
        """The server keeps a cancelled context (and its slot) until its `isFinal`; if that
        does not come in time, retire the socket rather than risk a sixth context (1008)."""

        def overdue() -> None:
            if self.contexts.get(ctx.id) is ctx:
                self.accepting = False

        self._loop.call_later(self._pool.cancel_grace_s, overdue)

    async def aclose(self) -> None:
        self._minder.cancel()
        await self._shut()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _shut(self) -> None:
        """`close_socket`, then the close handshake; the reader sees the end."""
        from elevenlabs.types import CloseSocket

        self.accepting = False
        if self.alive:
            with contextlib.suppress(ProviderError):
                await self.send(CloseSocket(close_socket=True))
        await self._ws.close()

    async def _read(self) -> None:
        error: ProviderError | None = None
        try:
            async for raw in self._ws:
                self._on_message(json.loads(raw))
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else 1006
            error = TransientProviderError(f"socket dropped (close {code})", provider=PROVIDER)
        except Exception as e:  # a bad frame: fail this socket's contexts only, then close it
            log.warning("elevenlabs socket reader failed", exc_info=True)
            error = _transport_error(e, "socket read")
            await self._ws.close(1011)
        finally:
            self.alive = False
            self._minder.cancel()
            error = self._error or error
            error = error or TransientProviderError("socket closed", provider=PROVIDER)
            for ctx in self.contexts.values():
                ctx._finish(error)
            self.contexts.clear()
            self._pool._wake()
            log.info("elevenlabs socket closed (%s)", type(error).__name__)

    def _on_message(self, data: dict[str, Any]) -> None:
        from elevenlabs.types import AudioOutputMulti, FinalOutputMulti

        if data.get("error") and not data.get("audio"):  # then the server closes
            code = str(data["error"])
            kind = TransientProviderError if code in _RETRYABLE_FRAMES else ProviderError
            self._error = kind(f"socket error frame ({code})", provider=PROVIDER)
            return
        if data.get("audio"):
            audio = AudioOutputMulti.model_validate(data)
            if (ctx := self.contexts.get(audio.context_id or "")) is not None:
                ctx._feed(audio.audio, _aligned_chars(data.get("alignment")))
        if data.get("isFinal"):
            final = FinalOutputMulti.model_validate(data)
            if (ctx := self.contexts.pop(final.context_id or "", None)) is not None:
                ctx._finish()
                self._pool._wake()

    async def _mind(self) -> None:
        from elevenlabs.types import KeepContextAlive

        pool = self._pool
        while self.alive:
            await asyncio.sleep(min(pool.keepalive_s, pool.idle_close_s) / 4)
            quiet = self._loop.time() - self._last_sent
            heard = [c for c in self.contexts.values() if not c._cancelled]  # audio wanted
            live = [c for c in heard if not c._closed]  # text may still come
            if not heard and (
                not self.accepting or (not self.contexts and quiet >= pool.idle_close_s)
            ):
                self.accepting = False  # no await since the check: no context can join now
                pool._retire(self)
                await self._shut()
                return
            if live and quiet >= pool.keepalive_s:
                with contextlib.suppress(ProviderError):  # the reader reports a dead socket
                    for ctx in live:
                        await self.send(KeepContextAlive(context_id=ctx.id))


class ElevenLabsSocketPool:
    """Multi-context sockets shared by replies: at most `max_contexts_per_socket` contexts on
    a socket (the server closes with 1008 on a sixth); when every socket is full a new one
    opens, up to `max_sockets`, after which `open_context` waits for room (at most
    `open_timeout_s`). Quiet contexts are kept alive every `keepalive_s`; a socket without
    contexts closes after `idle_close_s` (under the server's 20 s inactivity limit). A dropped
    socket fails only its own contexts, with `TransientProviderError`."""

    def __init__(
        self,
        *,
        api_key: str,
        voice_id: str,
        base_url: str | None = None,
        model_id: str = DEFAULT_MODEL,
        sample_rate: int = 16_000,
        voice_settings: Mapping[str, float | bool] | None = None,
        chunk_length_schedule: Sequence[int] | None = None,
        max_contexts_per_socket: int = 5,
        max_sockets: int = 4,
        open_timeout_s: float = 5.0,
        audio_timeout_s: float = 10.0,
        keepalive_s: float = 10.0,
        idle_close_s: float = 15.0,
        cancel_grace_s: float = 2.0,
    ) -> None:
        _require_sdk()
        self.sample_rate = _check_rate(sample_rate)
        self.max_contexts_per_socket = max_contexts_per_socket
        self.max_sockets = max_sockets
        self.keepalive_s = keepalive_s
        self.idle_close_s = idle_close_s
        self.cancel_grace_s = cancel_grace_s
        self._open_timeout_s = open_timeout_s
        self._audio_timeout_s = audio_timeout_s
        self._url = _socket_url(base_url, voice_id, model_id, sample_rate)
        self._headers = {"xi-api-key": api_key}
        self._voice_settings = dict(voice_settings or {})
        self._schedule = [float(n) for n in chunk_length_schedule or ()]
        self._sockets: list[_Socket] = []
        self._lock = asyncio.Lock()  # one opener at a time: first come, first served
        self._room = asyncio.Event()  # set when a slot or a socket may have freed up
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def open_sockets(self) -> int:
        return sum(s.alive for s in self._sockets)

    async def open_context(self) -> ElevenLabsContext:
        from elevenlabs.types import GenerationConfig, InitialiseContext, RealtimeVoiceSettings

        if self._closed:
            raise RuntimeError("the socket pool is closed")
        init: dict[str, Any] = {"text": " "}
        if self._voice_settings:
            init["voice_settings"] = RealtimeVoiceSettings.model_validate(self._voice_settings)
        if self._schedule:
            init["generation_config"] = GenerationConfig(chunk_length_schedule=self._schedule)
        while True:
            socket, ctx, fresh = await self._reserve()
            try:
                await socket.send(InitialiseContext(**init, context_id=ctx.id))
                return ctx
            except TransientProviderError:
                socket.contexts.pop(ctx.id, None)  # the socket is dead, and its contexts
                self._wake()
                if fresh:
                    raise
                # A reused socket died before we noticed and nothing was promised yet: take
                # another (a dead socket is not picked again).
            except BaseException:  # cancelled: the server may have the context, close it
                self._spawn(ctx.cancel())
                raise

    async def aclose(self) -> None:
        self._closed = True
        sockets, self._sockets = self._sockets, []
        await asyncio.gather(*(s.aclose() for s in sockets), return_exceptions=True)

    async def __aenter__(self) -> ElevenLabsSocketPool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _reserve(self) -> tuple[_Socket, ElevenLabsContext, bool]:
        """A socket with room (True: just opened) and a context registered on it."""
        try:
            async with asyncio.timeout(self._open_timeout_s), self._lock:
                while True:
                    self._room.clear()
                    self._sockets = [s for s in self._sockets if s.alive]
                    socket = next(
                        (s for s in self._sockets if s.has_room(self.max_contexts_per_socket)),
                        None,
                    )
                    fresh = socket is None and len(self._sockets) < self.max_sockets
                    if fresh:
                        socket = await self._connect()
                    if socket is not None:
                        ctx = ElevenLabsContext(socket, audio_timeout_s=self._audio_timeout_s)
                        socket.contexts[ctx.id] = ctx
                        return socket, ctx, fresh
                    await self._room.wait()
        except TimeoutError as e:
            raise TransientProviderError("no socket with room in time", provider=PROVIDER) from e

    async def _connect(self) -> _Socket:
        try:
            ws = await connect(
                self._url,
                additional_headers=self._headers,
                open_timeout=self._open_timeout_s,
                max_size=2**22,
            )
        except Exception as e:
            raise _transport_error(e, "socket connect") from e
        socket = _Socket(self, ws)
        self._sockets.append(socket)
        log.info("elevenlabs socket opened (%d open)", self.open_sockets)
        return socket

    def _retire(self, socket: _Socket) -> None:
        with contextlib.suppress(ValueError):
            self._sockets.remove(socket)
        self._wake()

    def _wake(self) -> None:
        self._room.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _aligned_chars(alignment: Any) -> int | None:
    """Non-space characters in a chunk's `alignment` (None when the server sent none)."""
    if not isinstance(alignment, dict) or not isinstance(alignment.get("chars"), list):
        return None
    return spoken_chars("".join(str(c) for c in alignment["chars"]))


class ElevenLabsStreams:
    """`TtsStreams` over one socket pool: a context per reply, sockets shared by every session
    of this process."""

    name = PROVIDER

    def __init__(self, pool: ElevenLabsSocketPool) -> None:
        self._pool = pool
        self.sample_rate = pool.sample_rate

    async def open(self) -> TtsStream:
        return await self._pool.open_context()

    async def aclose(self) -> None:
        await self._pool.aclose()


def _socket_url(base_url: str | None, voice_id: str, model_id: str, sample_rate: int) -> str:
    parts = urlsplit(base_url or _DEFAULT_BASE_URL)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) origin, got {base_url!r}")
    query = urlencode({"model_id": model_id, "output_format": f"pcm_{sample_rate}"})
    path = f"{parts.path.rstrip('/')}/v1/text-to-speech/{quote(voice_id, safe='')}"
    return f"{scheme}://{parts.netloc}{path}/multi-stream-input?{query}"
