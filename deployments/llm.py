from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import asyncpg
from ray import serve

from pipeline.company_tools import open_company_tools
from pipeline.config import LlmArgs, Settings
from pipeline.errors import JarvisError
from pipeline.factory import build_chat
from pipeline.metrics import WorkCounter
from pipeline.orchestrator import Orchestrator
from pipeline.providers.base import ChatMessage

log = logging.getLogger("jarvis.llm")
TOOLS_RETRY_S = 30.0


@serve.deployment
class LLMOrchestrator:
    def __init__(self, args: LlmArgs) -> None:
        self._args = args
        self._model = build_chat(args, Settings().cache_dir)
        self._orchestrator = Orchestrator(self._model, args)
        self._work = WorkCounter()
        self._pool: asyncpg.Pool | None = None
        self._tools_lock = asyncio.Lock()
        self._tools_retry_at = 0.0

    async def _ensure_tools(self) -> None:
        """Open the company database once; while it is unreachable, answer without tools."""
        if not self._args.tools or self._pool is not None:
            return
        async with self._tools_lock:
            if self._pool is not None or time.monotonic() < self._tools_retry_at:
                return
            try:
                router, self._pool = await asyncio.wait_for(
                    open_company_tools(self._model, Settings()), timeout=30
                )
                self._orchestrator.use_tools(router)
            except (OSError, TimeoutError, asyncpg.PostgresError, JarvisError) as e:
                log.warning(
                    "company tools unavailable (%s); answering without them", type(e).__name__
                )
                self._tools_retry_at = time.monotonic() + TOOLS_RETRY_S

    async def respond(self, session_id: str, text: str) -> AsyncIterator[str]:
        await self._ensure_tools()
        async with self._work.track():
            async for delta in self._orchestrator.respond(session_id, text):
                yield delta

    async def chat(
        self, messages: list[ChatMessage], max_tokens: int | None, temperature: float | None
    ) -> AsyncIterator[str]:
        await self._ensure_tools()
        async with self._work.track():
            async for delta in self._orchestrator.chat(
                messages, max_tokens=max_tokens, temperature=temperature
            ):
                yield delta

    def history(self, session_id: str) -> list[ChatMessage]:
        return self._orchestrator.history(session_id)

    async def ready(self) -> dict[str, str]:
        await self._ensure_tools()
        return {"llm": self._model.name, "tools": "on" if self._pool is not None else "off"}

    def stats(self) -> dict[str, dict[str, int]]:
        return {"llm": self._work.as_dict()}
