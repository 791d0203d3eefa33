"""Small async-iterator helpers used where streams are relayed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

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
