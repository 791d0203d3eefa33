"""The asyncpg pool: one per process, migrated before first use."""

from __future__ import annotations

import asyncpg

from pipeline.store.migrations import migrate


async def open_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: object
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **kwargs)
    assert pool is not None
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool
