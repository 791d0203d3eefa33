"""Typed events of the voice session protocol (server -> client), one module for all of them.

The same types are used by the session loop, the WebSocket layer and the metrics,
and are plain dataclasses so they pickle across Ray and serialize to JSON.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    SPEECH_STARTED = "speech.started"
    SPEECH_STOPPED = "speech.stopped"
    TRANSCRIPT_PARTIAL = "transcript.partial"
    TRANSCRIPT_FINAL = "transcript.final"
    RESPONSE_TEXT_DELTA = "response.text.delta"
    RESPONSE_AUDIO_STARTED = "response.audio.started"
    RESPONSE_DONE = "response.done"
    RESPONSE_CANCELLED = "response.cancelled"
    ERROR = "error"


class ErrorCode(StrEnum):
    """`code` of an `error` event: the session stays open (docs/sessions.md lists them)."""

    BAD_AUDIO = "bad_audio"  # a binary frame of odd length
    FRAME_TOO_LARGE = "frame_too_large"  # a binary frame over the session's limit
    BAD_JSON = "bad_json"  # a text frame that is not JSON
    UNKNOWN_TYPE = "unknown_type"  # a control message of no known type
    BAD_UPDATE = "bad_update"  # a session.update the options refuse
    RESPONSE_FAILED = "response_failed"  # a stage failed while answering


@dataclass
class Event:
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)  # wall clock, seconds

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type.value, "ts": round(self.at, 4), **self.data}


@dataclass
class TurnLatency:
    """Milliseconds from the end of the user's speech (last voiced frame received)."""

    turn_detected_ms: float | None = None
    stt_ms: float | None = None
    llm_first_token_ms: float | None = None
    first_clause_ms: float | None = None
    tts_first_audio_ms: float | None = None
    first_audio_sent_ms: float | None = None  # server-side voice-to-voice
    speculative_stt_used: bool = False
    preemptive_llm_used: bool = False
    stt_streamed: bool = False  # the transcript came from the session's live STT stream
    tts_streamed: bool = False  # the reply's audio came from one TTS stream
    # Which provider served each stage ("stt", "llm", "tts"); behind a fallback, the one
    # that answered; "tools" / "cache" for a reply no model generated.
    providers: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def error(code: ErrorCode, message: str) -> Event:
    return Event(EventType.ERROR, {"code": code.value, "message": message})
