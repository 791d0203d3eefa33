from __future__ import annotations

from collections.abc import AsyncIterator

from ray import serve

from pipeline.config import LlmArgs, Settings
from pipeline.factory import build_chat
from pipeline.metrics import WorkCounter
from pipeline.orchestrator import Orchestrator
from pipeline.providers.base import ChatMessage


@serve.deployment
class LLMOrchestrator:
    def __init__(self, args: LlmArgs) -> None:
        self._model = build_chat(args, Settings().cache_dir)
        self._orchestrator = Orchestrator(self._model, args)
        self._work = WorkCounter()

    async def respond(self, session_id: str, text: str) -> AsyncIterator[str]:
        async with self._work.track():
            async for delta in self._orchestrator.respond(session_id, text):
                yield delta

    async def chat(
        self, messages: list[ChatMessage], max_tokens: int | None, temperature: float | None
    ) -> AsyncIterator[str]:
        async with self._work.track():
            async for delta in self._orchestrator.chat(
                messages, max_tokens=max_tokens, temperature=temperature
            ):
                yield delta

    def history(self, session_id: str) -> list[ChatMessage]:
        return self._orchestrator.history(session_id)

    def ready(self) -> dict[str, str]:
        return {"llm": self._model.name}

    def stats(self) -> dict[str, dict[str, int]]:
        return {"llm": self._work.as_dict()}
