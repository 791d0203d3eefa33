"""Small async-iterator helpers used where streams are relayed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from pipeline.tools.registry import ToolUse

T = TypeVar("T")


async def first_item(stream: AsyncIterator[T]) -> T | None:
    """Pull the first item now, so an error before it can still become an HTTP status."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


async def prepend(head: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in chunks:
        yield chunk


async def tool_uses_apart(
    items: AsyncIterator[str | ToolUse], on_tool: Callable[[ToolUse], None] | None
) -> AsyncIterator[str]:
    """The LLM stage's stream is text deltas plus `ToolUse` items: text goes on, tool uses
    go to `on_tool`."""
    async for item in items:
        if isinstance(item, str):
            yield item
        elif on_tool is not None:
            on_tool(item)
