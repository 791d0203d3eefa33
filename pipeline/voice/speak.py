"""Streamed reply text -> spoken clauses, in order, while the LLM is still generating.

Each clause goes to TTS the moment the chunker releases it; syntheses run
concurrently and are yielded in order. Closing the iterator (or cancelling its
consumer) cancels the LLM stream and every pending synthesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from pipeline.errors import ProviderError
from pipeline.providers.streams import SpeechChunk, TtsStreams, spoken_chars
from pipeline.types import Speech
from pipeline.voice.text import ClauseChunker

Synthesize = Callable[[str], Awaitable[Speech]]
OnDelta = Callable[[str], Awaitable[None]]
log = logging.getLogger("jarvis.speak")


async def _noop(_: str) -> None:
    return None


async def spoken_clauses(
    deltas: AsyncIterator[str],
    synthesize: Synthesize,
    chunker: ClauseChunker,
    on_delta: OnDelta = _noop,
    on_clause: Callable[[str], None] | None = None,
) -> AsyncIterator[tuple[str, Speech]]:
    pending: asyncio.Queue[asyncio.Task[tuple[str, Speech]] | None] = asyncio.Queue()
    started: list[asyncio.Task[tuple[str, Speech]]] = []
    first_done = asyncio.Event()

    async def tts(clause: str, first: bool) -> tuple[str, Speech]:
        # The first clause is synthesized alone: a reply that arrives all at once (a tool's
        # answer, a cached reply) would otherwise put every clause into one TTS batch, and
        # the first audio would wait for the whole batch (measured, a two-clause tool answer:
        # 110 ms for the first clause alone, 440 ms for the batch).
        if not first:
            await first_done.wait()
        try:
            return clause, await synthesize(clause)
        finally:
            first_done.set()

    def speak(clause: str) -> None:
        if on_clause is not None:
            on_clause(clause)
        task = asyncio.create_task(tts(clause, first=not started))
        started.append(task)
        pending.put_nowait(task)

    async def produce() -> None:
        try:
            async for delta in deltas:
                await on_delta(delta)
                for clause in chunker.push(delta):
                    speak(clause)
            for clause in chunker.flush():
                speak(clause)
        finally:
            pending.put_nowait(None)

    producer = asyncio.create_task(produce())
    try:
        while (task := await pending.get()) is not None:
            yield await task
        await producer  # surfaces an LLM failure after the last clause
    finally:
        producer.cancel()
        for task in started:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer


# -- one TTS stream per reply ------------------------------------------------------------------

# Speech has ~15 non-space characters a second: the ledger's guess for audio that comes
# without character alignment.
CHARS_PER_S = 15.0


@dataclass(frozen=True)
class Spoken:
    """Reply audio as it comes, with the clauses whose speech starts in it."""

    clauses: list[str]
    pcm: bytes
    provider: str


class _Alignment:
    """Which clauses begin in each chunk: the stream's character alignment counted against
    the clauses sent (non-space characters, so the provider's spacing does not matter)."""

    def __init__(self, clauses: list[str], sample_rate: int) -> None:
        self._clauses = clauses
        self._rate = sample_rate
        self._spoken = 0.0  # characters whose speech has started
        self._next = 0  # the first clause not started yet
        self._next_at = 0  # its first character

    def advance(self, chunk: SpeechChunk) -> list[str]:
        chars = chunk.chars
        if chars is None:
            chars = round(len(chunk.pcm) / 2 / self._rate * CHARS_PER_S)
        self._spoken += chars
        started: list[str] = []
        while self._next < len(self._clauses) and self._next_at < self._spoken:
            clause = self._clauses[self._next]
            started.append(clause)
            self._next += 1
            self._next_at += spoken_chars(clause)
        return started

    def rest(self) -> list[str]:
        """Clauses never seen starting (alignment that did not add up): at the end."""
        rest = self._clauses[self._next :]
        self._next = len(self._clauses)
        return rest


async def streamed_clauses(
    deltas: AsyncIterator[str],
    streams: TtsStreams,
    synthesize: Synthesize,
    chunker: ClauseChunker,
    on_delta: OnDelta = _noop,
    on_clause: Callable[[str], None] | None = None,
) -> AsyncIterator[Spoken]:
    """The reply's clauses into one TTS stream (each flushed at once: the first audio does
    not wait for more text), its audio out as it comes. If the stream fails before any of its
    audio came, the reply is spoken clause by clause with `synthesize` instead. Closing the
    iterator cancels the stream and the LLM."""
    try:
        stream = await streams.open()
    except ProviderError as e:
        log.warning("tts stream (%s) did not open (%s): clause by clause", streams.name, e.message)
        async for clause, speech in spoken_clauses(
            deltas, synthesize, chunker, on_delta, on_clause
        ):
            yield Spoken([clause], speech.pcm, speech.provider)
        return

    clauses: list[str] = []
    fallback: asyncio.Queue[str | None] | None = None
    failure: list[ProviderError] = []
    produced = False

    async def speak(clause: str) -> None:
        if on_clause is not None:
            on_clause(clause)
        clauses.append(clause)
        if fallback is not None:
            fallback.put_nowait(clause)
            return
        try:
            await stream.send(clause)
            await stream.flush()
        except ProviderError as e:
            failure.append(e)
            await stream.cancel()  # its chunks end: the consumer decides what next

    async def produce() -> None:
        nonlocal produced
        try:
            async for delta in deltas:
                await on_delta(delta)
                for clause in chunker.push(delta):
                    await speak(clause)
            for clause in chunker.flush():
                await speak(clause)
        except BaseException:
            await stream.cancel()  # the consumer stops waiting for audio
            if fallback is not None:
                fallback.put_nowait(None)  # ... or for clauses: it then raises the failure
            raise
        produced = True
        if fallback is not None:
            fallback.put_nowait(None)
        elif not failure:
            try:
                await stream.close()
            except ProviderError as e:
                failure.append(e)
                await stream.cancel()

    producer = asyncio.create_task(produce())
    ledger = _Alignment(clauses, streams.sample_rate)
    heard_any = False
    try:
        try:
            async for chunk in stream.chunks():
                started = ledger.advance(chunk)
                heard_any = heard_any or bool(chunk.pcm)
                yield Spoken(started, chunk.pcm, streams.name)
            if failure:
                raise failure[0]
        except ProviderError as e:
            if heard_any:
                raise  # the user heard this voice: no second one mid-reply
            log.warning(
                "tts stream (%s) failed before audio (%s): clause by clause",
                streams.name,
                e.message,
            )
            await stream.cancel()
            fallback = asyncio.Queue()
            for clause in clauses:
                fallback.put_nowait(clause)
            if produced:
                fallback.put_nowait(None)
            async for clause, speech in _in_order(fallback, synthesize):
                yield Spoken([clause], speech.pcm, speech.provider)
        else:
            rest = ledger.rest()
            if rest:
                yield Spoken(rest, b"", streams.name)
        await producer  # surfaces an LLM failure after the last audio
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
        await stream.cancel()


async def _in_order(
    clauses: asyncio.Queue[str | None], synthesize: Synthesize
) -> AsyncIterator[tuple[str, Speech]]:
    """Each clause synthesized as it comes (concurrently), yielded in order."""
    tasks: asyncio.Queue[asyncio.Task[Speech] | None] = asyncio.Queue()
    started: list[asyncio.Task[Speech]] = []
    texts: list[str] = []

    async def feed() -> None:
        while (clause := await clauses.get()) is not None:
            texts.append(clause)
            task = asyncio.ensure_future(synthesize(clause))
            started.append(task)
            tasks.put_nowait(task)
        tasks.put_nowait(None)

    feeder = asyncio.create_task(feed())
    try:
        i = 0
        while (task := await tasks.get()) is not None:
            yield texts[i], await task
            i += 1
    finally:
        feeder.cancel()
        for task in started:
            task.cancel()
        await asyncio.gather(feeder, *started, return_exceptions=True)
