"""The stages' work counter: counts, and the health check Serve calls on every replica."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.metrics import StageWedgedError, WorkCounter


async def test_a_call_far_past_its_limit_makes_the_stage_unhealthy() -> None:
    work = WorkCounter()
    work.check(0.05)  # idle: healthy
    entered = asyncio.Event()

    async def stuck() -> None:
        async with work.track():
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(stuck())
    await entered.wait()
    await asyncio.sleep(0.1)
    with pytest.raises(StageWedgedError, match="in flight"):
        work.check(0.05)
    work.check(3600)  # within a generous limit it is still healthy
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    work.check(0.05)  # the stuck call is gone: healthy again
    assert work.as_dict() == {"active": 0, "finished": 0, "cancelled": 1}
