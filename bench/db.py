"""A throwaway Postgres schema with the demo data, for benchmarks (DATABASE_URL, else the
machine's `test` database); dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg

from pipeline.store.db import open_pool
from pipeline.store.seed import seed

DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def schema_pool(prefix: str = "bench") -> AsyncIterator[asyncpg.Pool]:
    schema = f"{prefix}_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(DSN)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await open_pool(DSN, server_settings={"search_path": schema})
    try:
        await seed(pool)
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
