"""A voice session's live STT stream: frames in, partial text out, the turn's text on request.

The stream (`SttStream`, opened once per session) hears everything the client sends. Its
final results accumulate into the turn's text; an interim result shows that text so far
(`on_partial`). The turn's text comes either from our VAD (`transcript()`: Finalize, answered
by a `from_finalize` final) or from the provider's endpointing (`on_endpoint`: the text at a
`speech_final` final, or None at `UtteranceEnd`, after which a Finalize settles the rest).

When the stream cannot be trusted for a turn (it dropped and reconnected: some audio of the
turn may be missing or repeated) or is gone for good, requests fail with a `ProviderError`
and the session transcribes the utterance instead: the turn is never lost. A lost transcriber
stays lost: the session opens a new stream (and a new transcriber) to recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.streams import (
    Closed,
    FinalTranscript,
    InterimTranscript,
    LiveEvent,
    Reconnected,
    SttError,
    SttStream,
    UtteranceEnd,
)

log = logging.getLogger("jarvis.live_stt")

OnText = Callable[[str], Awaitable[None]]
OnEndpoint = Callable[[str | None], Awaitable[None]]


class _Request:
    """One Finalize: answered by the next `from_finalize` final, in order."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.finals = 0  # finals of the turn it covers (set when answered)
        self.commit = False  # the turn's end: its finals are taken when answered


class LiveTranscriber:
    def __init__(
        self,
        stream: SttStream,
        provider: str,
        *,
        on_partial: OnText,
        on_endpoint: OnEndpoint | None = None,
        on_lost: Callable[[], Awaitable[None]] | None = None,
        finalize_timeout_s: float = 2.0,
    ) -> None:
        self.provider = provider
        self._stream = stream
        self._on_partial = on_partial
        self._on_endpoint = on_endpoint
        self._on_lost = on_lost
        self._finalize_timeout_s = finalize_timeout_s
        self._finals: list[str] = []  # settled text of the turn so far
        self._requests: deque[_Request] = deque()
        self._last: _Request | None = None
        self.tainted = False  # the stream dropped during this turn: do not trust its text
        self.alive = True
        self._closer: asyncio.Task[None] | None = None
        self._reader = asyncio.create_task(self._read(), name=f"live-stt-{provider}")

    @property
    def text(self) -> str:
        return " ".join(self._finals)

    async def send(self, pcm16: bytes) -> None:
        if not self.alive:
            return
        try:
            await self._stream.send(pcm16)
        except ProviderError as e:
            await self._lose(e)

    async def transcript(self, *, commit: bool) -> str:
        """The turn's text so far, from a Finalize. `commit`: it is the turn's end (see
        `commit()`). Raises `ProviderError` when the stream cannot answer for this turn. A
        caller that gives up (cancelled, timed out) leaves the request to its answer."""
        if not self.alive or self.tainted:
            self._last = None
            raise TransientProviderError("the live stream cannot answer", provider=self.provider)
        request = self._last = _Request()
        request.commit = commit
        self._requests.append(request)
        try:
            await self._stream.finalize()
        except ProviderError as e:
            await self._lose(e)
        try:
            async with asyncio.timeout(self._finalize_timeout_s):
                return await asyncio.shield(request.answer)
        except TimeoutError as e:
            # Finalizes are answered in order: one left unanswered would pair every later
            # answer with the wrong turn. The stream is not trusted again.
            error = TransientProviderError("no final in time", provider=self.provider)
            await self._lose(error)
            raise error from e

    def commit(self) -> None:
        """The turn ended on the last request's text: the finals it covered are taken (when it
        failed, the utterance was transcribed instead: the turn's finals are dropped)."""
        request, self._last = self._last, None
        if request is None:
            self.end_turn()
            return
        request.commit = True
        if request.answer.done():
            self._take(request)

    def end_turn(self) -> None:
        """The turn ended without the stream's text (it was not trusted): start over."""
        self._finals.clear()
        self.tainted = False

    async def aclose(self) -> None:
        """Close the stream (results it flushes are read, not passed on: the client may be
        gone) and stop reading."""
        self.alive = False
        await (self._closer or self._close_stream())
        await asyncio.wait({self._reader}, timeout=3.0)
        self._reader.cancel()
        self._fail_requests(ProviderError("the live stream is closed", provider=self.provider))

    async def _close_stream(self) -> None:
        with contextlib.suppress(ProviderError):
            await self._stream.aclose()

    # -- events ------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for event in self._stream.events():
                if not self.alive:
                    # Lost or closing: the session may already use another stream, and what
                    # this one still says (a flush, an endpoint) is not for that one's turn.
                    continue
                try:
                    await self._handlers.get(type(event), LiveTranscriber._ignore)(self, event)
                except ConnectionError:
                    continue  # the client is gone (its session is closing): keep reading
        except ProviderError as e:
            await self._lose(e)
        finally:
            if self.alive:  # the stream ended without our asking
                await self._lose(ProviderError("the live stream ended", provider=self.provider))

    async def _interim(self, event: InterimTranscript) -> None:
        await self._on_partial(" ".join([*self._finals, event.text]))

    async def _final(self, event: FinalTranscript) -> None:
        if event.text:
            self._finals.append(event.text)
        if event.from_finalize and self._requests:
            request = self._requests.popleft()
            request.finals = len(self._finals)
            if not request.answer.done():  # not given up on
                request.answer.set_result(self.text)
            if request.commit:
                self._take(request)
            return
        if event.speech_final and self._on_endpoint is not None:
            await self._endpoint()
        elif event.text:
            await self._on_partial(self.text)

    async def _utterance_end(self, _: UtteranceEnd) -> None:
        """No words for a while: the turn is over, but words since the last final may still
        be unsettled: the caller asks for them with a Finalize."""
        if self._on_endpoint is not None:
            await self._on_endpoint(None)

    async def _endpoint(self) -> None:
        text, tainted = self.text, self.tainted
        self._finals.clear()
        self.tainted = False
        assert self._on_endpoint is not None
        if text and not tainted:
            await self._on_endpoint(text)

    async def _error(self, event: SttError) -> None:
        if event.recoverable:  # a drop: what it said of this turn may be incomplete
            log.warning("live STT (%s) dropped: this turn is transcribed whole", self.provider)
            self.tainted = True
            self._fail_requests(
                TransientProviderError("the live stream dropped", provider=self.provider)
            )

    async def _reconnected(self, _: Reconnected) -> None:
        self.tainted = True

    async def _closed(self, event: Closed) -> None:
        if self.alive:
            await self._lose(ProviderError(event.reason, provider=self.provider))

    async def _ignore(self, _: LiveEvent) -> None:
        return None

    _handlers: dict[type, Callable[[LiveTranscriber, Any], Awaitable[None]]] = {
        InterimTranscript: _interim,
        FinalTranscript: _final,
        UtteranceEnd: _utterance_end,
        SttError: _error,
        Reconnected: _reconnected,
        Closed: _closed,
    }

    # -- plumbing ----------------------------------------------------------------------------

    def _take(self, request: _Request) -> None:
        if request.answer.exception() is not None:
            self.end_turn()
            return
        del self._finals[: request.finals]
        for later in self._requests:  # not answered yet: nothing to shift
            later.finals = 0

    def _fail_requests(self, error: ProviderError) -> None:
        while self._requests:
            request = self._requests.popleft()
            if not request.answer.done():
                request.answer.set_exception(error)
                request.answer.exception()  # retrieved: a dropped speculation may never ask
            if request.commit:
                self.end_turn()

    async def _lose(self, error: ProviderError) -> None:
        if not self.alive:
            return
        self.alive = False
        log.warning(
            "live STT (%s) gone (%s): transcribing utterances until it is reopened",
            self.provider,
            type(error).__name__,
        )
        self._fail_requests(error)
        # Closed here, not by the session: it stops routing to this transcriber at once, and
        # a stream left open would keep its socket (and KeepAlives) for nothing. In the
        # background: the turn that noticed goes on without waiting for the goodbye.
        self._closer = asyncio.create_task(self._close_stream())
        if self._on_lost is not None:
            await self._on_lost()
