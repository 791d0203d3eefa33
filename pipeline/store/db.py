"""The asyncpg pool: one per process, migrated before first use."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from pipeline.config import Settings
from pipeline.store.embedded import embedded_dsn
from pipeline.store.migrations import migrate

log = logging.getLogger("jarvis.store")


async def open_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: object
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **kwargs)
    assert pool is not None
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool


async def open_database(settings: Settings, *, max_size: int = 4) -> asyncpg.Pool:
    """DATABASE_URL's server, or the embedded one under the cache directory when it is unset."""
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
    else:
        dsn = await asyncio.to_thread(embedded_dsn, settings.cache_dir / "pgdata")
        log.info("DATABASE_URL unset: using the embedded Postgres in %s", settings.cache_dir)
    return await open_pool(dsn, min_size=1, max_size=max_size, timeout=10)
