"""The shared vocabulary: chat messages, tool use, turn records and the three-stage backend.

Every layer imports these from here, so the session loop does not import the store and
the stream helpers do not import the tools. All are plain, picklable dataclasses: they
cross Ray handles as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

import numpy as np

Role = Literal["system", "user", "assistant"]


class ToolState(StrEnum):
    """Where a tool call of a turn stands. A call that is not DONE is conversation state: the
    next turn may complete it (ASKED), confirm or correct it (PROPOSED), or drop it."""

    DONE = "done"  # the tool ran; `spoken` is its answer
    ASKED = "asked"  # arguments are missing: `spoken` asks for them, `arguments` holds the rest
    PROPOSED = "proposed"  # a write read back; it runs only on the user's yes in the next turn
    DECLINED = "declined"  # the user said no, or the proposal expired


@dataclass(frozen=True)
class ToolUse:
    """One tool call of a turn, as kept in the conversation history."""

    name: str
    arguments: dict[str, Any]
    spoken: str
    data: dict[str, Any]
    ok: bool
    state: ToolState = ToolState.DONE
    call_id: str = (
        ""  # a proposal's id: the write it leads to is done once, however often confirmed
    )
    at: float = 0.0  # unix time of a proposal (it expires)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ToolUse:
        return ToolUse(
            d["name"],
            d.get("arguments") or {},
            d.get("spoken", ""),
            d.get("data") or {},
            bool(d.get("ok", True)),
            ToolState(d.get("state", ToolState.DONE)),
            d.get("call_id", ""),
            float(d.get("at", 0.0)),
        )


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    # On an assistant message: the turn's tool call, so a question the assistant asked or a
    # write it proposed travels with the history to whichever replica answers next.
    tool_use: ToolUse | None = None


OnTool = Callable[[ToolUse], None]


@dataclass(frozen=True)
class Transcript:
    """A transcription and the provider that made it (behind a fallback: the one that
    answered; a live stream's provider when the session's stream heard it)."""

    text: str
    provider: str
    streamed: bool = False  # heard by a live stream, not transcribed as a whole


@dataclass(frozen=True)
class Speech:
    """Synthesized PCM16 and the provider that made it ("cache" when it was cached)."""

    pcm: bytes
    provider: str


@dataclass(frozen=True)
class Served:
    """Which provider is answering a chat stream: in-band in the LLM stage's stream (like a
    `ToolUse`) and inside a fallback's. "tools": a tool's sentence; "cache": a cached reply."""

    provider: str


OnServed = Callable[[str], None]


@dataclass(frozen=True)
class TurnRecord:
    """One turn of a conversation as stored: what the user said and what they heard."""

    conversation_id: str
    turn_id: str
    at: datetime  # when the user finished speaking; orders turns even when writes are retried
    user_text: str
    assistant_text: str
    tool_use: ToolUse | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


class StageBackend(Protocol):
    """STT, LLM and TTS as one voice turn or session sees them: Serve handles in the app
    (`deployments/handles.py`), in-process providers in the baseline and the tests."""

    async def transcribe(self, audio: np.ndarray) -> Transcript: ...

    def chat(
        self,
        messages: list[ChatMessage],
        on_tool: OnTool | None = None,
        *,
        final: bool = True,
        on_served: OnServed | None = None,
    ) -> AsyncIterator[str]:
        """`final` False: the user may still be speaking (a preemptive reply); a turn that
        would change company data then raises `SpeculativeWriteRefused`. `on_served`: which
        provider answers, once, before the first delta."""
        ...

    async def synthesize(self, text: str) -> Speech: ...


class Conversations(Protocol):
    """Where turns are kept: `ConversationLog` in `pipeline/llm/history.py` (memory + Postgres)."""

    async def history(self, conversation_id: str) -> list[ChatMessage]: ...

    def record(self, turn: TurnRecord) -> None: ...
