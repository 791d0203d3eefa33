"""Migrations, seed data and the company tools against the real Postgres on this machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from pipeline.store import company_data
from pipeline.store.migrations import MIGRATIONS, migrate
from pipeline.store.seed import seed
from pipeline.tools.definitions import company_tools
from tests.pg import fresh_pool


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async for p in fresh_pool():
        yield p


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    await seed(pool, now=datetime(2026, 11, 28, 12, tzinfo=UTC))
    return pool


async def test_migrations_apply_once_from_empty(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert versions == [m.version for m in MIGRATIONS]
        assert await migrate(conn) == []  # idempotent
        indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
    assert {
        "conversations_user_idx",
        "conversations_created_idx",
        "messages_conversation_created_idx",
    } <= indexes


async def test_seed_is_realistic_and_repeatable(pool: asyncpg.Pool) -> None:
    counts = await seed(pool)
    assert counts["loads"] >= 300 and counts["inventory"] >= 50 and counts["equipment"] >= 100
    again = await seed(pool)
    assert again == counts
    assert await pool.fetchval("SELECT count(*) FROM loads") == counts["loads"]
    assert await company_data.get_load(pool, 427) is not None


async def test_load_status_tool_reads_the_database(seeded: asyncpg.Pool) -> None:
    tools = company_tools(seeded)
    load = await company_data.get_load(seeded, 427)
    assert load is not None
    result = await tools.call("get_load_status", {"load_id": 427})
    assert result.ok and f"Load 427 from {load.origin} to {load.destination}" in result.spoken
    assert load.status in result.spoken


async def test_unknown_ids_and_bad_arguments_are_spoken_not_raised(seeded: asyncpg.Pool) -> None:
    tools = company_tools(seeded)
    missing = await tools.call("get_load_status", {"load_id": 999})
    assert not missing.ok and missing.spoken == "I could not find load 999."
    invalid = await tools.call("get_load_status", {"load_id": "four"})
    assert invalid.spoken == "I need a load number to look that up."
    assert (await tools.call("get_load_status", {})).spoken.startswith("I need a load number")
    assert (await tools.call("launch_rocket", {})).spoken == "Sorry, I can't do that."
    sneaky = await tools.call("search_inventory", {"item": "water'; DROP TABLE loads; --"})
    assert not sneaky.ok and await seeded.fetchval("SELECT count(*) FROM loads") > 0


async def test_inventory_and_equipment(seeded: asyncpg.Pool) -> None:
    tools = company_tools(seeded)
    water = await tools.call("search_inventory", {"item": "bottled water", "warehouse": "north"})
    row = await seeded.fetchrow(
        "SELECT quantity, unit FROM inventory WHERE item = 'bottled water' AND warehouse = 'north'"
    )
    assert row is not None, "the demo set answers the README's example question"
    assert f"{row['quantity']} {row['unit']} of bottled water" in water.spoken
    # None in the asked warehouse: the answer says where there is some.
    await seeded.execute("DELETE FROM inventory WHERE item = 'rice' AND warehouse = 'north'")
    rice = await tools.call("search_inventory", {"item": "rice", "warehouse": "north"})
    assert rice.ok and rice.spoken.startswith("I found no rice in the north warehouse, but there")
    assert "of rice in the" in rice.spoken
    one = await tools.call("get_equipment_status", {"equipment_id": "fl-07"})
    assert one.ok and one.spoken.startswith("Forklift FL-07 is ")
    many = await tools.call("get_equipment_status", {"type": "dock door"})
    assert many.ok and many.spoken.startswith("Of the 24 dock doors: ")
    vague = await tools.call("get_equipment_status", {})
    assert not vague.ok and "Which equipment" in vague.spoken


async def test_schedule_pickup_creates_a_load(seeded: asyncpg.Pool) -> None:
    tools = company_tools(seeded)
    result = await tools.call(
        "schedule_pickup",
        {
            "origin": "Dallas",
            "destination": "Denver",
            "pickup_date": "2026-12-01",
            "pickup_time": "09:00",
        },
    )
    assert result.ok and result.invalidates == ("loads",)
    load = await company_data.get_load(seeded, result.data["load_id"])
    assert load is not None and load.status == "scheduled" and load.id >= 10_000
    readback = await tools.call("get_load_status", {"load_id": load.id})
    assert "Dallas to Denver is scheduled" in readback.spoken
    bad = await tools.call("schedule_pickup", {"origin": "Dallas"})
    assert not bad.ok and "origin, the destination and the pickup time" in bad.spoken


def test_tool_schemas_are_openai_functions() -> None:
    from pipeline.tools.definitions import LoadArgs

    schema = LoadArgs.model_json_schema()
    assert schema["properties"]["load_id"]["type"] == "integer"


def test_cue_words_gate_which_tools_the_model_may_pick() -> None:
    tools = company_tools(None)  # type: ignore[arg-type]  # the gate needs no database
    assert tools.candidates("Good evening, how was your day?") == []
    assert tools.candidates("Where is load 999?") == ["get_load_status"]
    assert tools.candidates("Is FL-07 charging?") == ["get_equipment_status"]
    # Equipment words rule out the stock tool: "how many trucks" is no inventory question.
    assert tools.candidates("How many trucks are on route?") == ["get_equipment_status"]
    assert set(tools.candidates("How many pallets of water do we have?")) == {"search_inventory"}
    # Deciding words pick a tool without the model; no tool decides small talk.
    assert tools.decided("Where is load 427?") == "get_load_status"
    assert tools.decided("Is my shipment late?") == "get_load_status"
    assert tools.decided("Is FL-07 charging?") == "get_equipment_status"
    assert tools.decided("How long does it take to load a truck?") is None
    assert tools.decided("Who should I call about a broken pallet jack?") is None
