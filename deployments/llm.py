from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import asyncpg
from ray import serve

from deployments.cache import shared_cache
from pipeline.company_tools import open_company_tools
from pipeline.config import CacheArgs, LlmArgs, Settings
from pipeline.errors import JarvisError
from pipeline.factory import build_chat
from pipeline.metrics import WorkCounter
from pipeline.orchestrator import Orchestrator
from pipeline.providers.base import ChatMessage
from pipeline.tools.registry import ToolUse

log = logging.getLogger("jarvis.llm")
TOOLS_RETRY_S = 30.0


@serve.deployment
class LLMOrchestrator:
    def __init__(self, args: LlmArgs, cache_args: CacheArgs) -> None:
        self._args = args
        self._model = build_chat(args, Settings().cache_dir)
        self._cache, _ = shared_cache(cache_args)
        reply_cache = self._cache if cache_args.llm_responses else None
        self._orchestrator = Orchestrator(self._model, args, cache=reply_cache)
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
                    open_company_tools(self._model, Settings(), self._cache), timeout=30
                )
                self._orchestrator.use_tools(router)
            except (OSError, TimeoutError, asyncpg.PostgresError, JarvisError) as e:
                log.warning(
                    "company tools unavailable (%s); answering without them", type(e).__name__
                )
                self._tools_retry_at = time.monotonic() + TOOLS_RETRY_S

    async def chat(
        self, messages: list[ChatMessage], max_tokens: int | None, temperature: float | None
    ) -> AsyncIterator[str | ToolUse]:
        """Text deltas; a tool call of the turn comes first, as a `ToolUse`."""
        await self._ensure_tools()
        used: list[ToolUse] = []
        async with self._work.track():
            async for delta in self._orchestrator.chat(
                messages, max_tokens=max_tokens, temperature=temperature, on_tool=used.append
            ):
                while used:
                    yield used.pop(0)
                yield delta

    async def ready(self) -> dict[str, str]:
        await self._ensure_tools()
        return {"llm": self._model.name, "tools": "on" if self._pool is not None else "off"}

    def stats(self) -> dict[str, dict[str, int]]:
        return {"llm": self._work.as_dict()}
