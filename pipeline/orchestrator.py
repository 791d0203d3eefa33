"""The LLM orchestrator: system prompt + history + the user's words -> streamed reply.

It records the turn in history when the reply ends, including a reply cut
short by cancellation (what was generated before the cut is what was said).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from pipeline.config import LlmArgs
from pipeline.errors import BadInputError
from pipeline.history import InMemoryHistory
from pipeline.providers.base import ChatMessage, ChatModel
from pipeline.text import clean_for_speech
from pipeline.tools.router import ToolRouter

log = logging.getLogger("jarvis.orchestrator")


class Orchestrator:
    def __init__(
        self,
        model: ChatModel,
        args: LlmArgs,
        history: InMemoryHistory | None = None,
        tools: ToolRouter | None = None,
    ) -> None:
        self._model = model
        self._args = args
        self._tools = tools
        self._history = history or InMemoryHistory(
            max_sessions=args.max_sessions, max_messages=2 * args.history_turns
        )

    def use_tools(self, tools: ToolRouter | None) -> None:
        self._tools = tools

    @property
    def system_prompt(self) -> str:
        return self._args.system_prompt

    async def respond(self, session_id: str, text: str) -> AsyncIterator[str]:
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
                messages, max_tokens=self._args.max_tokens, temperature=self._args.temperature
            ):
                said.append(delta)
                yield delta
        finally:
            reply = clean_for_speech("".join(said))
            self._history.append(
                session_id, ChatMessage("user", text), ChatMessage("assistant", reply)
            )

    async def chat(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None, temperature: float | None
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
        ):
            yield delta

    async def _answer(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
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
                yield result.spoken
                return
        async for delta in self._model.stream(
            messages, max_tokens=max_tokens, temperature=temperature
        ):
            yield delta

    def history(self, session_id: str) -> list[ChatMessage]:
        return self._history.get(session_id)
