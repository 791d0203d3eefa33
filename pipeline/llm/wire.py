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
from typing import Any, TypeVar

from pipeline.types import OnServed, OnTool, Served, ToolUse

Chat = Callable[[OnTool, OnServed], AsyncIterator[str]]
T = TypeVar("T")
CLAUSE_END = frozenset(",.;:!?")
_END = object()
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
    while the first clause is already playing. Other items keep their place; an error of
    `items` comes after the text before it. 0 passes every item through."""
    if window_s <= 0:
        async for item in items:
            yield item
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

    async def pump() -> None:
        # One task runs the whole source: a deadline it holds across its yields (a
        # provider's generation timeout) belongs to the task that entered it.
        try:
            async for item in items:
                queue.put_nowait((item, None))
        except Exception as e:
            queue.put_nowait((_END, e))
        else:
            queue.put_nowait((_END, None))

    pumping = asyncio.create_task(pump())
    held: list[str] = []
    due, sent = 0.0, 0
    try:
        while True:
            if held:
                try:
                    async with asyncio.timeout_at(due):
                        item, error = await queue.get()
                except TimeoutError:
                    text = "".join(held)
                    held.clear()
                    sent += len(text)
                    yield text
                    continue
            else:
                item, error = await queue.get()
            if item is _END:
                if held:
                    yield "".join(held)
                if error is not None:
                    raise error
                return
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
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
