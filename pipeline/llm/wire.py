"""The LLM stage's stream across a hop: text deltas, with the turn's `ToolUse` and the
`Served` provider in between.

The stage puts them into its stream (`with_tool_uses`); the caller takes them out again
(`tool_uses_apart`). Both are plain dataclasses, so they pickle as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from pipeline.types import OnServed, OnTool, Served, ToolUse

Chat = Callable[[OnTool, OnServed], AsyncIterator[str]]


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
