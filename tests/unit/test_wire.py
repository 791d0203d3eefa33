"""The LLM stage's stream format: tool uses in band, text coalesced per window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pipeline.llm.wire import coalesced
from pipeline.types import Served


async def paced(items: list[object], gap_s: float, ended: list[bool]) -> AsyncIterator[object]:
    try:
        for i, item in enumerate(items):
            if i:
                await asyncio.sleep(gap_s)
            yield item
    finally:
        ended.append(True)


async def collect(stream: AsyncIterator[object]) -> list[object]:
    return [item async for item in stream]


FIRST = ["Load", " 427", " left", " Denver", " this", " morning", " and", " it", " is"]
FIRST += [" on", " time", " for", " a", " short", " while"]  # 69 characters: one by one


async def test_tokens_are_joined_per_window_and_clause_ends_go_at_once() -> None:
    later = [" six", " o'clock", " arrival,", " says", " the", " driver."]
    ended: list[bool] = []
    out = await collect(coalesced(paced(FIRST + later, 0.02, ended), window_s=0.3))
    # The first clause's tokens one by one, then everything up to each clause end; nothing
    # lost or reordered.
    assert out == [*FIRST, " six o'clock arrival,", " says the driver."]
    assert ended == [True]


async def test_a_slow_stream_is_flushed_when_the_window_closes() -> None:
    ended: list[bool] = []
    out = await collect(coalesced(paced([*FIRST, " b", " c"], 0.12, ended), window_s=0.05))
    assert out == [*FIRST, " b", " c"]  # each waited alone for longer than the window


async def test_other_items_keep_their_place() -> None:
    items: list[object] = [*FIRST, " there", Served("tools"), " again", " now."]
    out = await collect(coalesced(paced(items, 0.01, []), window_s=0.5))
    assert out == [*FIRST, " there", Served("tools"), " again now."]


async def test_zero_window_passes_every_item() -> None:
    out = await collect(coalesced(paced(["a", "b", "c"], 0.0, []), window_s=0))
    assert out == ["a", "b", "c"]


async def test_closing_early_stops_the_source() -> None:
    ended: list[bool] = []
    stream = coalesced(paced(["a", " b", " c", " d"], 0.05, ended), window_s=1.0)
    assert await anext(stream) == "a"
    await stream.aclose()  # type: ignore[attr-defined]
    assert ended == [True]


async def test_a_deadline_the_source_holds_still_fires() -> None:
    """A provider's generation timeout spans its yields: it must still cut a stalled stream."""

    async def stalls() -> AsyncIterator[str]:
        async with asyncio.timeout(0.3):
            for word in [*FIRST, " and", " then"]:
                yield word
            await asyncio.sleep(5)  # the model stalls
            yield " never"

    out: list[object] = []

    async def consume() -> None:
        async for item in coalesced(stalls(), window_s=0.05):
            out.append(item)

    task = asyncio.create_task(consume())
    done, _ = await asyncio.wait({task}, timeout=3)  # far above the source's 0.3 s
    assert done, "the source's deadline did not fire"
    assert isinstance(task.exception(), TimeoutError)
    assert "".join(map(str, out)) == "".join([*FIRST, " and", " then"])  # text first
