"""The LLM stage's stream across a hop: text deltas, with the turn's `ToolUse` and the
`Served` provider in between.

The stage puts them into its stream (`with_tool_uses`); the caller takes them out again
(`tool_uses_apart`). Both are plain dataclasses, so they pickle as they are. Every item is
a message across the hop, so text is sent in pieces of a few tokens (`coalesced`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from pipeline.types import OnServed, OnTool, Served, ToolUse

Chat = Callable[[OnTool, OnServed], AsyncIterator[str]]
T = TypeVar("T")
CLAUSE_END = frozenset(",.;:!?")
EAGER_CHARS = 64  # twice the default first clause (session.first_clause_max_chars)


async def with_tool_uses(chat: Chat) -> AsyncIterator[str | ToolUse | Served]:
    """Run `chat(on_tool, on_served)` and yield each tool use and the provider before the
    text that follows them."""
    side: list[ToolUse | Served] = []

    def served(name: str) -> None:
        side.append(Served(name))

    async for delta in chat(side.append, served):
        while side:
            yield side.pop(0)
        yield delta
    while side:
        yield side.pop(0)


async def tool_uses_apart(
    items: AsyncIterator[str | ToolUse | Served],
    on_tool: OnTool | None,
    on_served: OnServed | None = None,
) -> AsyncIterator[str]:
    """Text goes on; tool uses go to `on_tool`, the provider to `on_served`."""
    async for item in items:
        if isinstance(item, str):
            yield item
        elif isinstance(item, Served):
            if on_served is not None:
                on_served(item.provider)
        elif on_tool is not None:
            on_tool(item)


async def coalesced(items: AsyncIterator[T], window_s: float) -> AsyncIterator[T | str]:
    """Text deltas joined into one item per `window_s`. The first `EAGER_CHARS` go token by
    token (the first clause is on the critical path: the session may cut it anywhere),
    later a delta that ends a clause goes at once and the rest wait at most `window_s`,
    while the first clause is already playing. Other items keep their place. 0 passes every
    item through."""
    if window_s <= 0:
        async for item in items:
            yield item
        return
    loop = asyncio.get_running_loop()
    source = aiter(items)
    pending: asyncio.Task[T] | None = None
    held: list[str] = []
    due, sent = 0.0, 0
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            if held:
                done, _ = await asyncio.wait({pending}, timeout=max(0.0, due - loop.time()))
                if not done:
                    text = "".join(held)
                    held.clear()
                    sent += len(text)
                    yield text
                    continue
            try:
                item = await pending
            except StopAsyncIteration:
                break
            finally:
                if pending.done():
                    pending = None
            if not isinstance(item, str):
                if held:
                    yield "".join(held)
                    held.clear()
                yield item
                continue
            if not held:
                due = loop.time() + window_s
            held.append(item)
            if sent < EAGER_CHARS or item.rstrip()[-1:] in CLAUSE_END:
                text = "".join(held)
                held.clear()
                sent += len(text)
                yield text
        if held:
            yield "".join(held)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
