"""Conversation history written behind to the real Postgres: order, corrections, resume, and
a database that goes away and comes back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from pipeline.llm.history import ConversationLog
from pipeline.store.db import open_pool
from pipeline.types import ToolUse, TurnRecord
from tests.pg import dsn_via, fresh_pool, relay_target
from tests.tcp_proxy import TcpProxy

T0 = datetime(2026, 11, 28, 9, tzinfo=UTC)
TOOL = ToolUse("get_load_status", {"load_id": 427}, "Load 427 is in transit.", {"id": 427}, ok=True)


def turn(cid: str, n: int, **kw: object) -> TurnRecord:
    fields: dict = {
        "user_text": f"question {n}",
        "assistant_text": f"answer {n}",
        "timings": {"stt_ms": 300.0 + n},
    }
    fields.update(kw)
    return TurnRecord(cid, f"turn{n}", T0 + timedelta(seconds=n), **fields)


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async for p in fresh_pool():
        yield p


async def test_turns_are_written_in_order_and_returned(pool: asyncpg.Pool) -> None:
    log = ConversationLog(lambda: _same(pool))
    cid = "c-" + uuid.uuid4().hex
    log.record(turn(cid, 1, tool_use=TOOL))
    log.record(turn(cid, 2))
    assert await log.flush()
    got = await log.get(cid)
    assert got is not None
    assert [(t["user"], t["assistant"]) for t in got["turns"]] == [
        ("question 1", "answer 1"),
        ("question 2", "answer 2"),
    ]
    assert got["turns"][0]["tool"]["arguments"] == {"load_id": 427}
    assert got["turns"][1]["tool"] is None and got["turns"][1]["timings"] == {"stt_ms": 302.0}
    assert await log.get("nobody") is None
    assert log.stats()["written"] == 2


async def test_a_barged_in_reply_is_rewritten_with_what_was_heard(pool: asyncpg.Pool) -> None:
    log = ConversationLog(lambda: _same(pool))
    cid = "c-" + uuid.uuid4().hex
    log.record(turn(cid, 1, assistant_text="Once upon a time there was a forklift."))
    log.record(turn(cid, 1, assistant_text="Once upon a time", interrupted=True))
    assert await log.flush()
    got = await log.get(cid)
    assert got is not None and len(got["turns"]) == 1
    assert got["turns"][0]["assistant"] == "Once upon a time" and got["turns"][0]["interrupted"]


async def test_a_new_process_resumes_the_history(pool: asyncpg.Pool) -> None:
    cid = "c-" + uuid.uuid4().hex
    first = ConversationLog(lambda: _same(pool), history_turns=2)
    for n in range(1, 4):
        first.record(turn(cid, n))
    assert await first.flush()
    restarted = ConversationLog(lambda: _same(pool), history_turns=2)  # nothing in memory
    history = await restarted.history(cid)
    assert [m.content for m in history] == ["question 2", "answer 2", "question 3", "answer 3"]


async def test_postgres_down_turns_are_kept_and_written_when_it_is_back(
    pool: asyncpg.Pool,
) -> None:
    schema = await pool.fetchval("SELECT current_schema()")
    proxy = TcpProxy(**relay_target())
    await proxy.start()
    dsn = dsn_via(proxy.port)

    async def connect() -> asyncpg.Pool:
        return await open_pool(dsn, server_settings={"search_path": schema}, timeout=2)

    log = ConversationLog(connect, retry_initial_s=0.1, retry_max_s=0.3, read_timeout_s=1)
    cid = "c-" + uuid.uuid4().hex
    log.record(turn(cid, 1))
    assert await log.flush()

    await proxy.stop()  # Postgres is gone for this process
    log.record(turn(cid, 2))  # does not wait, does not raise
    log.record(turn(cid, 3))
    assert await log.history("other") == []  # reads degrade to no history
    await asyncio.sleep(1.0)
    assert log.stats()["retries"] >= 2 and log.stats()["pending"] >= 1

    await proxy.start()
    assert await log.flush(timeout_s=15)
    got = await log.get(cid)
    assert got is not None and [t["turn_id"] for t in got["turns"]] == ["turn1", "turn2", "turn3"]
    await log.close()
    await proxy.stop()


async def _same(pool: asyncpg.Pool) -> asyncpg.Pool:
    return pool


async def test_a_conversation_is_its_key_s_alone(pool: asyncpg.Pool) -> None:
    log = ConversationLog(lambda: _same(pool))
    cid = "c-" + uuid.uuid4().hex
    assert await log.claim(cid, "owner-a")  # new: A's
    log.record(turn(cid, 1))
    assert await log.flush()
    assert await log.get(cid, owner="owner-a") is not None
    assert await log.get(cid, owner="owner-b") is None  # as if there were none
    assert await log.get(cid) is not None  # no keys configured: anyone's
    assert not await log.claim(cid, "owner-b")
    assert await log.claim(cid, "owner-a")
    # Another replica (nothing in memory) asks the database.
    other = ConversationLog(lambda: _same(pool))
    assert not await other.claim(cid, "owner-b")
    assert await other.claim(cid, "owner-a")
    # Two keys that started the same new id at once: the database keeps it the first's.
    racer = ConversationLog(lambda: _same(pool))
    racer.claim_new(cid, "owner-b")
    racer.record(turn(cid, 2, user_text="not A's"))
    assert await racer.flush()
    assert racer.stats()["refused"] == 1
    got = await log.get(cid, owner="owner-a")
    assert got is not None and [t["user"] for t in got["turns"]] == ["question 1"]
    assert await pool.fetchval("SELECT owner FROM conversations WHERE id = $1", cid) == "owner-a"


async def test_delete_removes_the_conversation_and_its_messages(pool: asyncpg.Pool) -> None:
    log = ConversationLog(lambda: _same(pool))
    elsewhere = ConversationLog(lambda: _same(pool))  # another replica that served it too
    cid = "c-" + uuid.uuid4().hex
    log.claim_new(cid, "owner-a")
    log.record(turn(cid, 1))
    assert await log.flush()
    assert await elsewhere.history(cid)  # in that replica's memory now
    log.record(turn(cid, 2))  # still queued: written first, then deleted
    assert not await log.delete(cid, owner="owner-b")
    assert await log.delete(cid, owner="owner-a")
    assert await log.get(cid) is None
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", cid) == 0
    assert await log.history(cid) == []
    assert not await log.delete(cid, owner="owner-a")  # gone: 404
    # The other replica forgets it when the conversation is next taken up there.
    assert await elsewhere.claim(cid, "owner-a")
    assert await elsewhere.history(cid) == []
