"""Scripted providers for tests that must not depend on CPU speed or on real models.

Each fake subclasses its provider ABC (pipeline/providers/base.py), so the public methods
(timeouts, error mapping to ProviderError, stripping) run as they do for real providers;
only the `_*_impl` transport is scripted. Ordering is controlled with `asyncio.Event` gates
the test sets, not with sleeps, so a test passes the same on a slow machine. Timeouts are
short (5 s): a fake left waiting at a gate fails its test fast, as a provider timeout.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.config import LlmArgs
from pipeline.llm.orchestrator import Orchestrator
from pipeline.providers.base import ChatProvider, SttProvider, TtsProvider
from pipeline.providers.in_process import LocalBackend
from pipeline.providers.simulated import SimulatedSttStream
from pipeline.providers.streams import LiveEvent, SttStream
from pipeline.tools.registry import ToolResult
from pipeline.tools.router import ToolCall
from pipeline.types import ChatMessage, ToolUse
from pipeline.voice.vad import RATE

Transcripts = str | Sequence[str] | Callable[[np.ndarray], str]
Replies = str | Sequence[str] | Callable[[list[ChatMessage]], str]
FAKE_TIMEOUT_S = 5.0


class FakeStt(SttProvider):
    """Scripted transcription.

    `transcripts`: one fixed text, texts returned in order by the calls that complete
    (a cancelled call takes none), or a function of the audio. `gate`: every call waits
    for it; `delay_s`: then sleeps this long. `fail`: raised by every call while set.
    """

    name = "fake-stt"

    def __init__(
        self,
        *,
        transcripts: Transcripts = "Hello there.",
        delay_s: float = 0.0,
        gate: asyncio.Event | None = None,
        fail: BaseException | None = None,
        timeout_s: float = FAKE_TIMEOUT_S,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self.transcripts = transcripts
        self.delay_s = delay_s
        self.gate = gate
        self.fail = fail
        self.calls: list[np.ndarray] = []  # the audio of every call, in order
        self.returned: list[str] = []
        self.cancelled = 0

    @property
    def durations_s(self) -> list[float]:
        """Length in seconds of the audio of each call."""
        return [len(a) / RATE for a in self.calls]

    async def _transcribe_impl(self, audios: list[np.ndarray]) -> list[str]:
        self.calls.extend(audios)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += len(audios)
            raise
        if self.fail is not None:
            raise self.fail
        texts = [self._next(audio) for audio in audios]
        self.returned.extend(texts)
        return texts

    def _next(self, audio: np.ndarray) -> str:
        if isinstance(self.transcripts, str):
            return self.transcripts
        if callable(self.transcripts):
            return self.transcripts(audio)
        if len(self.returned) >= len(self.transcripts):
            raise AssertionError("FakeStt ran out of scripted transcripts")
        return self.transcripts[len(self.returned)]


@dataclass
class ChatStream:
    """One generation FakeChat was asked for, and how it ended."""

    messages: list[ChatMessage]
    reply: str
    words: int = 0  # words yielded so far
    state: Literal["running", "finished", "cancelled", "failed"] = "running"

    @property
    def asked(self) -> str:
        """The last message: the user's question."""
        return self.messages[-1].content


class FakeChat(ChatProvider):
    """Scripted generation, streamed word by word (leading spaces, as LLM tokens come).

    `replies`: one fixed reply, replies in order (one per stream), or a function of the
    messages. `gate`: each stream waits for it after `pause_after` words (0: before the
    first), so a test can hold a reply mid-way; `waiting` is set once one does.
    `token_delay_s`: sleep before each word. `fail`: raised after `fail_after` words while set.
    Every stream is kept in `streams` with its outcome; "cancelled" also counts a stream
    closed before its end.
    """

    name = "fake-llm"

    def __init__(
        self,
        *,
        replies: Replies = "Sure, I can help with that.",
        token_delay_s: float = 0.0,
        gate: asyncio.Event | None = None,
        pause_after: int = 0,
        fail: BaseException | None = None,
        fail_after: int = 0,
        timeout_s: float = FAKE_TIMEOUT_S,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self.replies = replies
        self.token_delay_s = token_delay_s
        self.gate = gate
        self.pause_after = pause_after
        self.fail = fail
        self.fail_after = fail_after
        self.streams: list[ChatStream] = []
        self.waiting = asyncio.Event()  # a stream has reached the gate

    @property
    def started(self) -> int:
        return len(self.streams)

    @property
    def finished(self) -> int:
        return sum(s.state == "finished" for s in self.streams)

    @property
    def cancelled(self) -> int:
        return sum(s.state == "cancelled" for s in self.streams)

    @property
    def messages(self) -> list[list[ChatMessage]]:
        """What each stream was given, in order."""
        return [s.messages for s in self.streams]

    def stream_for(self, asked: str) -> ChatStream:
        """The last stream that answered `asked`."""
        return next(s for s in reversed(self.streams) if s.asked == asked)

    async def _stream_impl(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        stream = ChatStream(messages, self._next(messages))
        self.streams.append(stream)
        words = re.findall(r"\s*\S+", stream.reply)
        try:
            for i in range(len(words) + 1):
                if self.fail is not None and i == min(self.fail_after, len(words)):
                    stream.state = "failed"
                    raise self.fail
                if self.gate is not None and i == self.pause_after:
                    self.waiting.set()
                    await self.gate.wait()
                if i == len(words):
                    break
                await asyncio.sleep(self.token_delay_s)
                stream.words += 1
                yield words[i]
        except (asyncio.CancelledError, GeneratorExit):
            stream.state = "cancelled"
            raise
        stream.state = "finished"

    def _next(self, messages: list[ChatMessage]) -> str:
        if isinstance(self.replies, str):
            return self.replies
        if callable(self.replies):
            return self.replies(messages)
        if self.started >= len(self.replies):
            raise AssertionError("FakeChat ran out of scripted replies")
        return self.replies[self.started]


class FakeTts(TtsProvider):
    """PCM16 silence (or a tone) of `ms_per_char` per character of text: known durations."""

    name = "fake-tts"

    def __init__(
        self,
        *,
        sample_rate: int = 16_000,
        ms_per_char: float = 1.0,
        tone_hz: float | None = None,
        timeout_s: float = FAKE_TIMEOUT_S,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self.sample_rate = sample_rate
        self.ms_per_char = ms_per_char
        self.tone_hz = tone_hz
        self.texts: list[str] = []

    def duration_s(self, text: str) -> float:
        return len(text) * self.ms_per_char / 1000.0

    def pcm(self, text: str) -> bytes:
        """The audio `text` is synthesized to."""
        n = round(self.duration_s(text) * self.sample_rate)
        if self.tone_hz is None:
            return b"\0\0" * n
        t = np.arange(n) / self.sample_rate
        return (np.sin(2 * np.pi * self.tone_hz * t) * 8000).astype("<i2").tobytes()

    async def _synthesize_impl(self, texts: list[str]) -> list[bytes]:
        self.texts.extend(texts)
        await asyncio.sleep(0)
        return [self.pcm(text) for text in texts]


class FakeTools:
    """The orchestrator's `Tools` (the tool layer): answers the questions `matches` accepts
    with one scripted call and its result."""

    def __init__(
        self,
        *,
        tool_call: ToolCall,
        result: ToolResult,
        matches: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self._tool_call = tool_call
        self._result = result
        self._matches = matches
        self.routed: list[str] = []  # questions asked
        self.called: list[ToolCall] = []

    async def answer(
        self, messages: Sequence[ChatMessage], *, final: bool = True
    ) -> ToolUse | None:
        question = messages[-1].content
        self.routed.append(question)
        if not self._matches(question):
            return None
        call, r = self._tool_call, self._result
        self.called.append(call)
        return ToolUse(call.name, call.arguments, r.spoken, r.data, r.ok)


class RecordedStream:
    """A simulated live STT stream (`SimulatedSttStream`, our VAD's mode: no endpointing) that
    keeps the audio it was sent, and can be given up by its provider (`drop()`)."""

    def __init__(self, final_ms: float) -> None:
        self._stream = SimulatedSttStream(
            final_ms=final_ms, endpointing_ms=None, utterance_end_ms=None, jitter=0
        )
        self.audio = bytearray()

    async def send(self, pcm16: bytes) -> None:
        await self._stream.send(pcm16)
        self.audio += pcm16

    async def finalize(self) -> None:
        await self._stream.finalize()

    def events(self) -> AsyncIterator[LiveEvent]:
        return self._stream.events()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def drop(self) -> None:
        """The provider gives the stream up: its last results, then `Closed`."""
        await self._stream.aclose()


class FakeSttStreams:
    """Scripted live STT streams (`SttStreams`): each `open()` takes the next item of
    `script` (an exception: raised; None: a stream opens), then, the script used up, opens.
    `gate`: while set to an Event, every `open()` waits for it first (a handshake held).
    Every call counts in `attempts` (`wait_attempts` waits for a count); the streams that
    opened are in `opened`, in order."""

    name = "scripted-stt"

    def __init__(
        self, *, script: Sequence[BaseException | None] = (), final_ms: float = 20
    ) -> None:
        self.script = list(script)
        self.final_ms = final_ms
        self.gate: asyncio.Event | None = None
        self.attempts = 0
        self.cancelled = 0  # opens cancelled while waiting at the gate
        self.opened: list[RecordedStream] = []
        self._changed = asyncio.Event()

    async def open(self) -> SttStream:
        self.attempts += 1
        self._changed.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        stream = RecordedStream(self.final_ms)
        self.opened.append(stream)
        self._changed.set()
        return stream

    async def wait_attempts(self, count: int, *, opened: int = 0) -> None:
        """Until `count` opens were asked for and `opened` streams opened (a gate, no sleep)."""
        async with asyncio.timeout(FAKE_TIMEOUT_S):
            while self.attempts < count or len(self.opened) < opened:
                self._changed.clear()
                await self._changed.wait()


def fake_backend(
    *,
    stt: FakeStt | None = None,
    chat: FakeChat | None = None,
    tts: FakeTts | None = None,
    tools: FakeTools | None = None,
) -> LocalBackend:
    """LocalBackend(stt, Orchestrator(chat, LlmArgs(), tools), tts) over fakes (defaults)."""
    return LocalBackend(
        stt or FakeStt(),
        Orchestrator(chat or FakeChat(), LlmArgs(), tools),
        tts or FakeTts(),
    )
