"""Spoken questions about company data are answered from the database (embedded Postgres,
since the test app runs with DATABASE_URL unset)."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from pipeline.config import Settings
from pipeline.store.embedded import embedded_dsn
from tests.serve_cluster import ServeApp
from tests.speech import speech_wav

pytestmark = pytest.mark.serve


async def _load(load_id: int) -> asyncpg.Record | None:
    conn = await asyncpg.connect(embedded_dsn(Settings().cache_dir / "pgdata"))
    try:
        return await conn.fetchrow(
            "SELECT status, origin, destination FROM loads WHERE id = $1", load_id
        )
    finally:
        await conn.close()


async def _turn(app: ServeApp, text: str, session_id: str | None = None) -> dict:  # type: ignore[type-arg]
    params = {"session_id": session_id} if session_id else {}
    async with httpx.AsyncClient(timeout=120) as client:
        r = await client.post(
            f"{app.url}/v1/turn",
            content=speech_wav(text),
            headers={"Content-Type": "audio/wav"},
            params=params,
        )
    assert r.status_code == 200, r.text
    return r.json()


async def test_load_status_comes_from_the_database(serve_app: ServeApp) -> None:
    body = await _turn(serve_app, "What is the status of load 427?")
    load = await _load(427)
    assert load is not None, "the embedded database was seeded with the demo data"
    assert "427" in body["transcript"]
    for value in (load["status"], load["origin"], load["destination"]):
        assert value in body["reply"], body["reply"]


async def test_unknown_load_is_not_invented(serve_app: ServeApp) -> None:
    body = await _turn(serve_app, "Can you check load 999 for me?")
    assert "999" in body["transcript"]
    assert body["reply"] == "I could not find load 999."


async def _confirmed_loads() -> int:
    conn = await asyncpg.connect(embedded_dsn(Settings().cache_dir / "pgdata"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM loads WHERE request_id IS NOT NULL"))
    finally:
        await conn.close()


async def test_a_pickup_by_voice_is_read_back_and_booked_only_on_yes(serve_app: ServeApp) -> None:
    sid = "pickup-" + uuid.uuid4().hex[:8]
    before = await _confirmed_loads()
    asked = await _turn(serve_app, "Book a pickup from Dallas to Denver on Monday at 10 AM.", sid)
    assert asked["reply"].startswith("Book a pickup from Dallas to Denver on Monday"), asked
    assert asked["reply"].endswith("at 10 AM?")
    assert await _confirmed_loads() == before  # read back, not written
    done = await _turn(serve_app, "Yes.", sid)  # the proposal travels in the history
    assert done["reply"].startswith("Done. Load "), done
    load_id = int(done["reply"].split()[2])
    load = await _load(load_id)
    assert load is not None and (load["origin"], load["destination"]) == ("Dallas", "Denver")
    assert await _confirmed_loads() == before + 1
    again = await _turn(serve_app, "Yes.", sid)  # nothing left to confirm, nothing made up
    assert again["reply"] == "There is nothing waiting for a yes. What would you like to do?"
    assert await _confirmed_loads() == before + 1
