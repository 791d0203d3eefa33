"""Streaming seams: a live STT stream per voice session and a TTS stream per reply.

Optional, beside the per-call protocols of `base.py`: a provider that streams (Deepgram's
live socket, ElevenLabs' multi-context socket, their simulated twins) offers a factory
(`SttStreams` / `TtsStreams`, built by `build.py`), the session opens one stream from it, and
`None` means today's per-utterance `transcribe()` and per-clause `synthesize()`. Streams live
in the ingress process, next to the session: no Ray hop per frame or per audio chunk.

The STT events are provider-neutral (Deepgram's live messages map onto them one to one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Literal, Protocol


class LiveEventKind(StrEnum):
    INTERIM = "interim"
    FINAL = "final"
    SPEECH_STARTED = "speech_started"
    UTTERANCE_END = "utterance_end"
    RECONNECTED = "reconnected"
    ERROR = "error"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class InterimTranscript:
    """The provider's current guess (`is_final=false`): it will change."""

    kind: ClassVar[LiveEventKind] = LiveEventKind.INTERIM
    text: str
    start: float  # audio seconds since the socket opened
    duration: float
    confidence: float


@dataclass(frozen=True, slots=True)
class FinalTranscript:
    """Settled text for a span of audio (`is_final=true`). `speech_final`: the provider's
    endpointing heard the pause; `from_finalize`: the answer to our `finalize()`, with
    `finalize_latency_s` from that call to this result."""

    kind: ClassVar[LiveEventKind] = LiveEventKind.FINAL
    text: str
    start: float
    duration: float
    confidence: float
    speech_final: bool
    from_finalize: bool
    finalize_latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    kind: ClassVar[LiveEventKind] = LiveEventKind.SPEECH_STARTED
    timestamp: float


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    """No words for `utterance_end_ms` after `last_word_end` (audio seconds)."""

    kind: ClassVar[LiveEventKind] = LiveEventKind.UTTERANCE_END
    last_word_end: float


@dataclass(frozen=True, slots=True)
class Reconnected:
    """A new socket replaced a dropped one. Its audio clock starts again at 0; audio sent
    while no socket was open (up to `reconnect_buffer_s`) went out on the new one."""

    kind: ClassVar[LiveEventKind] = LiveEventKind.RECONNECTED
    attempt: int


@dataclass(frozen=True, slots=True)
class SttError:
    """Something went wrong on the socket. `recoverable`: it dropped and a reconnect follows
    (as in LiveKit's STT error event); otherwise it failed for good (a `Closed` follows) or the
    server sent an `Error` message. `code`: the WebSocket close code or HTTP status, if known."""

    kind: ClassVar[LiveEventKind] = LiveEventKind.ERROR
    message: str
    code: int | None
    recoverable: bool


@dataclass(frozen=True, slots=True)
class Closed:
    """The last event: the stream is over (closed by us, or given up)."""

    kind: ClassVar[LiveEventKind] = LiveEventKind.CLOSED
    reason: str


LiveEvent = (
    InterimTranscript
    | FinalTranscript
    | SpeechStarted
    | UtteranceEnd
    | Reconnected
    | SttError
    | Closed
)


class SttStream(Protocol):
    """One live recognition stream, kept open across the turns of a voice session."""

    async def send(self, pcm16: bytes) -> None:
        """16 kHz mono s16le, any chunk size; raises `ProviderError` once the stream is over."""
        ...

    async def finalize(self) -> None:
        """End of the user's turn: a `FinalTranscript(from_finalize=True)` answers it."""
        ...

    def events(self) -> AsyncIterator[LiveEvent]:
        """Events in arrival order; ends after `Closed`."""
        ...

    async def aclose(self) -> None: ...


class SttStreams(Protocol):
    """Opens live STT streams (one per voice session)."""

    name: str

    async def open(self) -> SttStream: ...


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """PCM16 of a TTS stream as it arrives. `chars`: how many non-space characters of the
    text sent begin to be spoken in this chunk (the provider's character alignment), None
    when the provider does not say."""

    pcm: bytes
    chars: int | None = None


class TtsStream(Protocol):
    """One reply: text in as the LLM writes it, audio out as it is made."""

    async def send(self, text: str) -> None: ...

    async def flush(self) -> None:
        """Speak what was sent so far now, without waiting for more text."""
        ...

    async def close(self) -> None:
        """No more text: what was sent is spoken, then the chunks end."""
        ...

    async def cancel(self) -> None:
        """Barge-in: stop at once; the chunks end."""
        ...

    def chunks(self) -> AsyncIterator[SpeechChunk]: ...


class TtsStreams(Protocol):
    """Opens TTS streams (one per reply); may share connections between them."""

    name: str
    sample_rate: int

    async def open(self) -> TtsStream: ...

    async def aclose(self) -> None: ...


def spoken_chars(text: str) -> int:
    """The characters alignment counts: everything but whitespace."""
    return sum(not c.isspace() for c in text)


@dataclass(frozen=True)
class LiveStt:
    """What a voice session needs to use live STT streams (`build.build_stt_stream`)."""

    streams: SttStreams
    end_of_turn: Literal["vad", "endpointing"] = "vad"
    finalize_timeout_s: float = 2.0
    endpoint_grace_s: float = 1.5
    # Reopening a lost stream: the first wait, doubling after each failure up to the second.
    reopen_backoff_s: tuple[float, float] = (1.0, 30.0)
