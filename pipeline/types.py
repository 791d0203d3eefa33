"""The shared vocabulary: chat messages, tool use, turn records and the three-stage backend.

Every layer imports these from here, so the session loop does not import the store and
the stream helpers do not import the tools. All are plain, picklable dataclasses: they
cross Ray handles as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ToolUse:
    """One tool call of a turn, as kept in the conversation history."""

    name: str
    arguments: dict[str, Any]
    spoken: str
    data: dict[str, Any]
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


OnTool = Callable[[ToolUse], None]


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

    async def transcribe(self, audio: np.ndarray) -> str: ...

    def chat(
        self, messages: list[ChatMessage], on_tool: OnTool | None = None
    ) -> AsyncIterator[str]: ...

    async def synthesize(self, text: str) -> bytes: ...


class Conversations(Protocol):
    """Where turns are kept: `ConversationLog` in `pipeline/llm/history.py` (memory + Postgres)."""

    async def history(self, conversation_id: str) -> list[ChatMessage]: ...

    def record(self, turn: TurnRecord) -> None: ...
