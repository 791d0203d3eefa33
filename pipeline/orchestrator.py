"""The LLM orchestrator: system prompt + history + the user's words -> streamed reply.

It records the turn in history when the reply ends, including a reply cut
short by cancellation (what was generated before the cut is what was said).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from pipeline.cache.client import Cache
from pipeline.config import LlmArgs
from pipeline.errors import BadInputError
from pipeline.history import InMemoryHistory
from pipeline.providers.base import ChatMessage, ChatModel
from pipeline.text import clean_for_speech
from pipeline.tools.registry import ToolResult, ToolUse
from pipeline.tools.router import ToolCall

log = logging.getLogger("jarvis.orchestrator")
OnTool = Callable[[ToolUse], None]


class Tools(Protocol):
    """A `ToolRouter`, or `CachedTools` in front of one."""

    async def route(self, question: str) -> ToolCall | None: ...

    async def call(self, call: ToolCall) -> ToolResult: ...


def reply_key(model: str, messages: Sequence[ChatMessage], max_tokens: int, temp: float) -> str:
    """Identical prompts under identical sampling settings share a cached reply."""
    prompt = json.dumps([[m.role, m.content] for m in messages])
    return f"{model}|{max_tokens}|{temp}|" + hashlib.sha256(prompt.encode()).hexdigest()


class Orchestrator:
    def __init__(
        self,
        model: ChatModel,
        args: LlmArgs,
        history: InMemoryHistory | None = None,
        tools: Tools | None = None,
        cache: Cache | None = None,
    ) -> None:
        self._model = model
        self._args = args
        self._tools = tools
        self._cache = cache  # caches replies to identical prompts (namespace "llm")
        self._history = history or InMemoryHistory(
            max_sessions=args.max_sessions, max_messages=2 * args.history_turns
        )

    def use_tools(self, tools: Tools | None) -> None:
        self._tools = tools

    @property
    def system_prompt(self) -> str:
        return self._args.system_prompt

    async def respond(
        self, session_id: str, text: str, *, on_tool: OnTool | None = None
    ) -> AsyncIterator[str]:
        """Stream the assistant's reply to `text` within session `session_id`."""
        if not text.strip():
            raise BadInputError("there is no text to answer")
        messages = [
            ChatMessage("system", self._args.system_prompt),
            *self._history.get(session_id),  # already trimmed in blocks (see history.py)
            ChatMessage("user", text),
        ]
        said: list[str] = []
        try:
            async for delta in self._answer(
                messages,
                max_tokens=self._args.max_tokens,
                temperature=self._args.temperature,
                on_tool=on_tool,
            ):
                said.append(delta)
                yield delta
        finally:
            reply = clean_for_speech("".join(said))
            self._history.append(
                session_id, ChatMessage("user", text), ChatMessage("assistant", reply)
            )

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None,
        temperature: float | None,
        on_tool: OnTool | None = None,
    ) -> AsyncIterator[str]:
        """Stateless chat (OpenAI-compatible route): the caller owns the history."""
        if not messages:
            raise BadInputError("messages must not be empty")
        if messages[0].role != "system":
            messages = [ChatMessage("system", self._args.system_prompt), *messages]
        async for delta in self._answer(
            messages,
            max_tokens=max_tokens or self._args.max_tokens,
            temperature=self._args.temperature if temperature is None else temperature,
            on_tool=on_tool,
        ):
            yield delta

    async def _answer(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_tool: OnTool | None,
    ) -> AsyncIterator[str]:
        """A tool's spoken result when the request needs company data, else the model's words.

        Tool results are read out as the tools phrase them: an answer about a load or the
        stock comes from the database, never from the model's imagination.
        """
        if self._tools is not None and messages[-1].role == "user":
            call = await self._tools.route(messages[-1].content)
            if call is not None:
                result = await self._tools.call(call)
                log.info("tool %s ok=%s", call.name, result.ok)  # no arguments in logs
                if on_tool is not None:
                    on_tool(
                        ToolUse(call.name, call.arguments, result.spoken, result.data, result.ok)
                    )
                yield result.spoken
                return

        def generate() -> AsyncIterator[str]:
            return self._model.stream(messages, max_tokens=max_tokens, temperature=temperature)

        if self._cache is None:
            async for delta in generate():
                yield delta
            return
        key = reply_key(self._model.name, messages, max_tokens, temperature)
        async for delta in self._cache.stream_through("llm", key, generate):
            yield delta

    def history(self, session_id: str) -> list[ChatMessage]:
        return self._history.get(session_id)
