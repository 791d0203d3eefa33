"""The LLM stage's stream across a hop: text deltas, with the turn's `ToolUse` in between.

The stage puts a tool call into its stream (`with_tool_uses`); the caller takes it out
again (`tool_uses_apart`). `ToolUse` is a plain dataclass, so it pickles as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from pipeline.types import OnTool, ToolUse


async def with_tool_uses(
    chat: Callable[[OnTool], AsyncIterator[str]],
) -> AsyncIterator[str | ToolUse]:
    """Run `chat(on_tool)` and yield each tool use before the text that follows it."""
    used: list[ToolUse] = []
    async for delta in chat(used.append):
        while used:
            yield used.pop(0)
        yield delta
    while used:
        yield used.pop(0)


async def tool_uses_apart(
    items: AsyncIterator[str | ToolUse], on_tool: OnTool | None
) -> AsyncIterator[str]:
    """Text goes on; tool uses go to `on_tool`."""
    async for item in items:
        if isinstance(item, str):
            yield item
        elif on_tool is not None:
            on_tool(item)
