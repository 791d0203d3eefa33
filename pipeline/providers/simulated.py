"""Simulated providers: published cloud latency profiles, no CPU, seeded.

They serve capacity benchmarks and tests of everything around the models: the session
loop, the transport, batching and autoscaling. Defaults follow the cloud services this
project is measured against: a streaming STT's final transcript ~150 ms after the end of
speech, an LLM's first token at 300 ms then 50 tokens a second, a TTS's first audio at
150 ms (the rest of a clause comes faster than it plays). Every wait is `asyncio.sleep`.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Sequence

import numpy as np

from pipeline.errors import ProviderError
from pipeline.providers.base import ChatProvider, SttProvider, TtsProvider
from pipeline.providers.streams import (
    Closed,
    FinalTranscript,
    InterimTranscript,
    LiveEvent,
    SpeechChunk,
    SpeechStarted,
    SttStream,
    TtsStream,
    UtteranceEnd,
    spoken_chars,
)
from pipeline.types import ChatMessage

QUESTIONS = [
    "What is the status of load 427?",
    "Which dock doors are open right now?",
    "How many pallets of bottled water are in the north warehouse?",
    "When will the truck from Denver arrive?",
    "Are there any delayed shipments this afternoon?",
]
REPLIES = [
    "Load 427 left Denver this morning and is on time for a six o'clock arrival.",
    "Dock doors three, seven and twelve are open, and door nine opens in ten minutes.",
    "There are 340 pallets of bottled water in the north warehouse.",
    "The Denver truck is about forty minutes out, so expect it around half past two.",
    "Two shipments are running late this afternoon, both on the Memphis route.",
]


class _Clock:
    def __init__(self, seed: int, jitter: float) -> None:
        self._rng = random.Random(seed)
        self._jitter = jitter

    async def wait(self, ms: float) -> None:
        factor = 1.0 + self._rng.uniform(-self._jitter, self._jitter)
        await asyncio.sleep(max(0.0, ms * factor) / 1000.0)

    def due(self, after: float, ms: float) -> float:
        """Loop time `ms` (jittered) after loop time `after`."""
        return after + max(0.0, ms * (1.0 + self._rng.uniform(-self._jitter, self._jitter))) / 1000

    async def until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - asyncio.get_running_loop().time()))

    def choice(self, options: Sequence[str]) -> str:
        return self._rng.choice(list(options))


class SimulatedSTT(SttProvider):
    name = "simulated-stt"
    local_compute = False

    def __init__(
        self, *, final_ms: float = 150, jitter: float = 0.1, seed: int = 7, timeout_s: float = 30.0
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self._final_ms = final_ms
        self._clock = _Clock(seed, jitter)

    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]:
        await self._clock.wait(self._final_ms)
        # The same utterance is always "heard" the same way: chosen by its length.
        return [QUESTIONS[len(a) % len(QUESTIONS)] if len(a) else "" for a in audios]


class SimulatedChat(ChatProvider):
    name = "simulated-llm"

    def __init__(
        self,
        *,
        first_token_ms: float = 300,
        tokens_per_s: float = 50,
        jitter: float = 0.1,
        seed: int = 7,
        timeout_s: float = 60.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self._first_token_ms = first_token_ms
        self._token_ms = 1000.0 / tokens_per_s
        self._clock = _Clock(seed, jitter)

    async def _stream_impl(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        question = messages[-1].content if messages else ""
        reply = REPLIES[QUESTIONS.index(question)] if question in QUESTIONS else None
        words = (reply or self._clock.choice(REPLIES)).split()[:max_tokens]
        await self._clock.wait(self._first_token_ms)
        # Tokens keep the server's own schedule: the time we take between them does not
        # add up (a server generates whether or not we have read the last token yet).
        due = asyncio.get_running_loop().time()
        for i, word in enumerate(words):
            if i:
                due = self._clock.due(due, self._token_ms)
                await self._clock.until(due)
            yield word if i == 0 else " " + word

    async def structured(
        self, messages: list[ChatMessage], *, grammar: str, max_tokens: int = 96
    ) -> str:
        """The tool router's model step: simulated as "no tool" after a first-token wait."""
        await self._clock.wait(self._first_token_ms)
        return "none"


class SimulatedTTS(TtsProvider):
    name = "simulated-tts"
    local_compute = False

    def __init__(
        self,
        *,
        first_audio_ms: float = 150,
        sample_rate: int = 16_000,
        jitter: float = 0.1,
        seed: int = 7,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self._first_audio_ms = first_audio_ms
        self._clock = _Clock(seed, jitter)
        self.sample_rate = sample_rate

    async def _synthesize_impl(self, texts: list[str]) -> list[bytes]:
        # A streaming service's first audio comes at `tts_first_audio_ms` and the rest faster
        # than it plays; the clause is handed over whole at that moment. ~65 ms of speech
        # (silence here) per character, a natural speaking rate.
        await self._clock.wait(self._first_audio_ms)
        return [bytes(2 * int(0.065 * len(t.strip()) * self.sample_rate)) for t in texts]


# -- streaming -------------------------------------------------------------------------------


class SimulatedSttStream:
    """A live STT stream (`SttStream`) with a streaming service's timing, no recognition.

    Speech is found by level (a chunk whose peak reaches `VOICED_PEAK`), on the audio
    timeline (as Deepgram measures endpointing), so what it says does not depend on the
    machine: an interim result every `interim_ms` of audio in a segment (the first words of
    the segment's text, one more each time), a final `final_ms` (wall clock) after
    `finalize()` or after `endpointing_ms` of silence (`speech_final`), `UtteranceEnd` after
    `utterance_end_ms` of silence. Each segment "hears" one of `QUESTIONS`, seeded.
    """

    VOICED_PEAK = 500  # int16, as the Deepgram test server

    def __init__(
        self,
        *,
        final_ms: float = 150,
        interim_ms: float = 500,
        endpointing_ms: float | None = 300,
        utterance_end_ms: float | None = 1000,
        jitter: float = 0.1,
        seed: int = 7,
    ) -> None:
        self._final_ms = final_ms
        self._interim_s = interim_ms / 1000
        self._endpointing_s = None if endpointing_ms is None else endpointing_ms / 1000
        self._utterance_end_s = None if utterance_end_ms is None else utterance_end_ms / 1000
        self._clock = _Clock(seed, jitter)
        self._events: asyncio.Queue[LiveEvent] = asyncio.Queue()
        self._pending: set[asyncio.Task[None]] = set()
        self._t = 0.0  # audio seconds received
        self._segment: list[str] | None = None  # the words of the open segment
        self._heard = 0  # words of it said in interim results so far
        self._last_interim = 0.0
        self._last_voice = 0.0
        self._word_end: float | None = None  # awaiting an UtteranceEnd
        self._closed = False

    async def send(self, pcm16: bytes) -> None:
        if self._closed:
            raise ProviderError("the live stream is closed", provider=SimulatedSttStreams.name)
        samples = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2")
        if not len(samples):
            return
        voiced = int(samples.max()) >= self.VOICED_PEAK or int(samples.min()) <= -self.VOICED_PEAK
        self._t += len(samples) / 16_000
        if voiced:
            if self._segment is None:
                self._segment = self._clock.choice(QUESTIONS).split()
                self._heard, self._last_interim = 0, self._t
                self._emit(SpeechStarted(self._t), 0)
            self._last_voice = self._word_end = self._t
        elif self._segment is not None and (
            self._endpointing_s is not None and self._t - self._last_voice >= self._endpointing_s
        ):
            self._final(speech_final=True, from_finalize=False)
        if self._segment is not None and self._t - self._last_interim >= self._interim_s:
            self._last_interim = self._t
            self._heard = min(len(self._segment), self._heard + 1)
            self._emit(
                InterimTranscript(" ".join(self._segment[: self._heard]), 0, self._t, 0.9), 0
            )
        if (
            not voiced
            and self._word_end is not None
            and self._utterance_end_s is not None
            and self._t - self._word_end >= self._utterance_end_s
        ):
            self._emit(UtteranceEnd(self._word_end), 0)
            self._word_end = None

    async def finalize(self) -> None:
        if self._closed:
            raise ProviderError("the live stream is closed", provider=SimulatedSttStreams.name)
        self._final(speech_final=False, from_finalize=True)

    def _final(self, *, speech_final: bool, from_finalize: bool) -> None:
        text = " ".join(self._segment) if self._segment is not None else ""
        self._segment = None
        event = FinalTranscript(
            text, 0, self._t, 0.95, speech_final=speech_final, from_finalize=from_finalize
        )
        self._emit(event, self._final_ms)

    def _emit(self, event: LiveEvent, after_ms: float) -> None:
        """Events leave in the order they were made; a final waits `after_ms` first."""
        previous = list(self._pending)

        async def later() -> None:
            if after_ms:
                await self._clock.wait(after_ms)
            for task in previous:
                await asyncio.shield(task)
            self._events.put_nowait(event)

        if not after_ms and not previous:
            self._events.put_nowait(event)
            return
        task = asyncio.create_task(later())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def events(self) -> AsyncIterator[LiveEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Closed):
                return

    async def aclose(self) -> None:
        """The results on their way still come (as Deepgram flushes on CloseStream), then
        `Closed`."""
        if self._closed:
            return
        self._closed = True
        pending = list(self._pending)
        if pending:
            _, late = await asyncio.wait(pending, timeout=2 * self._final_ms / 1000 + 1)
            for task in late:
                task.cancel()
        self._events.put_nowait(Closed("closed"))


class SimulatedSttStreams:
    """`SttStreams` of `SimulatedSttStream`s, each seeded from `seed` and its number."""

    name = "simulated-stt"

    def __init__(
        self,
        *,
        final_ms: float = 150,
        interim_ms: float = 500,
        endpointing_ms: float | None = 300,
        utterance_end_ms: float | None = 1000,
        jitter: float = 0.1,
        seed: int = 7,
    ) -> None:
        self._final_ms, self._interim_ms = final_ms, interim_ms
        self._endpointing_ms, self._utterance_end_ms = endpointing_ms, utterance_end_ms
        self._jitter, self._seed = jitter, seed
        self.opened = 0

    async def open(self) -> SttStream:
        self.opened += 1
        return SimulatedSttStream(
            final_ms=self._final_ms,
            interim_ms=self._interim_ms,
            endpointing_ms=self._endpointing_ms,
            utterance_end_ms=self._utterance_end_ms,
            jitter=self._jitter,
            seed=self._seed + self.opened,
        )


MS_PER_CHAR = 65  # as SimulatedTTS: a natural speaking rate


class SimulatedTtsStream:
    """A TTS stream (`TtsStream`) with a streaming service's timing: the first audio
    `first_audio_ms` after the first text, then the audio of what was flushed in `chunk_ms`
    chunks, `speed` times faster than it plays. Silence, `MS_PER_CHAR` per character, with
    the character alignment a real service sends (`SpeechChunk.chars`)."""

    def __init__(
        self,
        *,
        sample_rate: int,
        first_audio_ms: float = 150,
        speed: float = 4.0,
        chunk_ms: int = 100,
        jitter: float = 0.1,
        seed: int = 7,
    ) -> None:
        self._rate = sample_rate
        self._first_audio_ms = first_audio_ms
        self._speed = speed
        self._chunk_ms = chunk_ms
        self._clock = _Clock(seed, jitter)
        self._buffer = ""
        self._units: asyncio.Queue[str | None] = asyncio.Queue()
        self._out: asyncio.Queue[SpeechChunk | None] = asyncio.Queue()
        self._first_text_at: float | None = None
        self._closed = False
        self._cancelled = False
        self._speaker: asyncio.Task[None] | None = None
        self.texts: list[str] = []  # every unit spoken, in order

    async def send(self, text: str) -> None:
        if self._closed:
            raise RuntimeError("send() after close()")
        if not text.strip():
            return
        if self._speaker is None:
            self._first_text_at = asyncio.get_running_loop().time()
            self._speaker = asyncio.create_task(self._speak())
        self._buffer += text if text.endswith(" ") else text + " "

    async def flush(self) -> None:
        if self._buffer.strip():
            self._units.put_nowait(self._buffer)
        self._buffer = ""

    async def close(self) -> None:
        if self._closed:
            return
        await self.flush()
        self._closed = True
        self._units.put_nowait(None)
        if self._speaker is None:
            self._out.put_nowait(None)

    async def cancel(self) -> None:
        self._cancelled = self._closed = True
        if self._speaker is not None:
            self._speaker.cancel()
        self._out.put_nowait(None)

    async def chunks(self) -> AsyncIterator[SpeechChunk]:
        while (chunk := await self._out.get()) is not None:
            if self._cancelled:
                return
            yield chunk

    async def _speak(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while (unit := await self._units.get()) is not None:
            if first:
                assert self._first_text_at is not None
                waited = (loop.time() - self._first_text_at) * 1000
                await self._clock.wait(max(0.0, self._first_audio_ms - waited))
                first = False
            self.texts.append(unit.strip())
            self._unit(unit.strip())
            # the audio of a unit is ready faster than it plays
            await asyncio.sleep(len(unit.strip()) * MS_PER_CHAR / self._speed / 1000)
        self._out.put_nowait(None)

    def _unit(self, text: str) -> None:
        total_ms = len(text) * MS_PER_CHAR
        for start in range(0, total_ms, self._chunk_ms):
            end = min(total_ms, start + self._chunk_ms)
            # character i is spoken from i * MS_PER_CHAR on: those starting in this chunk
            first, last = -(-start // MS_PER_CHAR), -(-end // MS_PER_CHAR)
            samples = self._rate * end // 1000 - self._rate * start // 1000
            self._out.put_nowait(SpeechChunk(bytes(2 * samples), spoken_chars(text[first:last])))


class SimulatedTtsStreams:
    """`TtsStreams` of `SimulatedTtsStream`s (nothing is shared: no connection to pool)."""

    name = "simulated-tts"

    def __init__(
        self,
        *,
        sample_rate: int = 16_000,
        first_audio_ms: float = 150,
        speed: float = 4.0,
        jitter: float = 0.1,
        seed: int = 7,
    ) -> None:
        self.sample_rate = sample_rate
        self._first_audio_ms, self._speed = first_audio_ms, speed
        self._jitter, self._seed = jitter, seed
        self.count = 0
        # The latest streams, for tests to look into; the ingress opens one per reply for
        # its whole life, so never all of them.
        self.opened: deque[SimulatedTtsStream] = deque(maxlen=16)

    async def open(self) -> TtsStream:
        stream = SimulatedTtsStream(
            sample_rate=self.sample_rate,
            first_audio_ms=self._first_audio_ms,
            speed=self._speed,
            jitter=self._jitter,
            seed=self._seed + self.count,
        )
        self.count += 1
        self.opened.append(stream)
        return stream

    async def aclose(self) -> None:
        return None
