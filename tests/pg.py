"""A clean Postgres schema per test on the machine's real server (DATABASE_URL or the local one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg

DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def fresh_pool(**kwargs: object) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose search_path is a new empty schema, dropped afterwards."""
    from pipeline.store.db import open_pool

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(DSN)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await open_pool(DSN, server_settings={"search_path": schema}, **kwargs)
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
