"""The LLM stage: the orchestrator (chat model, company tools, reply cache) behind a handle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from ray import serve

from deployments.cache import shared_cache
from pipeline.config import CacheArgs, LlmArgs, Settings
from pipeline.llm.orchestrator import Orchestrator
from pipeline.llm.wire import coalesced, with_tool_uses
from pipeline.metrics import WorkCounter
from pipeline.providers.build import build_chat, build_tool_router
from pipeline.tools.open import ToolsOpener, ToolsState
from pipeline.types import ChatMessage, Served, ToolUse

log = logging.getLogger("jarvis.llm")


@serve.deployment
class LLMOrchestrator:
    def __init__(self, args: LlmArgs, cache_args: CacheArgs) -> None:
        self._args = args
        self._model = build_chat(args, Settings().cache_dir)
        self._cache, _ = shared_cache(cache_args)
        reply_cache = self._cache if cache_args.llm_responses else None
        self._orchestrator = Orchestrator(self._model, args, cache=reply_cache)
        self._work = WorkCounter()
        self._tools: ToolsOpener | None = None
        make_router = build_tool_router(args, self._model) if args.tools else None
        if args.tools and make_router is None:
            log.warning("llm.tools: %s cannot route tools; answering without them", args.provider)
        elif make_router is not None:
            # Serve runs the constructor on the replica's event loop: open in the background.
            self._tools = ToolsOpener(
                make_router,
                Settings(),
                self._cache,
                confirm_within_s=args.confirm_within_s,
                confirm_within_turns=args.confirm_within_turns,
            )
            self._tools.start()

    async def chat(
        self,
        messages: list[ChatMessage],
        max_tokens: int | None,
        temperature: float | None,
        final: bool = True,
    ) -> AsyncIterator[str | ToolUse | Served]:
        """Text deltas; a tool call of the turn comes first, as a `ToolUse`, and which
        provider answers (`Served`) before the first delta."""
        if self._tools is not None:
            await self._tools.settled()  # the first turn waits for the tools' first attempt
            self._orchestrator.use_tools(self._tools.tools)
        async with self._work.track():
            items = with_tool_uses(
                lambda on_tool, on_served: self._orchestrator.chat(
                    messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    on_tool=on_tool,
                    final=final,
                    on_served=on_served,
                )
            )
            async for item in coalesced(items, self._args.delta_window_ms / 1000):
                yield item

    def ready(self) -> dict[str, str]:
        """What is loaded; no side effects (the tools open on their own)."""
        tools = self._tools.state if self._tools is not None else ToolsState.OFF
        return {"llm": self._model.name, "tools": tools.value}

    def check_health(self) -> None:
        self._work.check(2 * self._args.timeout_s)

    def stats(self) -> dict[str, dict[str, int]]:
        return {"llm": self._work.as_dict()}

    async def __del__(self) -> None:
        if self._tools is not None:
            await self._tools.close()
