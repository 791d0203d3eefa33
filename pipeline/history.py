"""Conversation history in memory: bounded per session and in session count (LRU)."""

from __future__ import annotations

from collections import OrderedDict

from pipeline.providers.base import ChatMessage


class InMemoryHistory:
    def __init__(self, *, max_sessions: int = 10_000, max_messages: int = 40) -> None:
        self._sessions: OrderedDict[str, list[ChatMessage]] = OrderedDict()
        self._max_sessions = max_sessions
        self._max_messages = max_messages

    def get(self, session_id: str) -> list[ChatMessage]:
        messages = self._sessions.get(session_id)
        if messages is None:
            return []
        self._sessions.move_to_end(session_id)
        return list(messages)

    def append(self, session_id: str, *messages: ChatMessage) -> None:
        stored = self._sessions.setdefault(session_id, [])
        stored.extend(messages)
        del stored[: -self._max_messages]
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)

    def __len__(self) -> int:
        return len(self._sessions)
