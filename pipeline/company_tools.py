"""Company tools for a deployment: open the database (or the embedded one), migrate, seed the
demo data into an empty database, and build the tool router on the chat model."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from pipeline.config import Settings
from pipeline.providers.llama import LlamaChat
from pipeline.store.db import open_pool
from pipeline.store.embedded import embedded_dsn
from pipeline.store.seed import seed
from pipeline.tools.company import EXAMPLES, GUIDE, company_tools
from pipeline.tools.router import ToolRouter

log = logging.getLogger("jarvis.tools")


async def open_company_tools(
    model: LlamaChat, settings: Settings
) -> tuple[ToolRouter, asyncpg.Pool]:
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
    else:
        dsn = await asyncio.to_thread(embedded_dsn, settings.cache_dir / "pgdata")
        log.info("DATABASE_URL unset: using the embedded Postgres in %s", settings.cache_dir)
    pool = await open_pool(dsn, min_size=1, max_size=4, timeout=10)
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM loads)"):
        counts = await seed(pool)
        log.info("seeded demo data: %s", counts)
    return ToolRouter(model, company_tools(pool), EXAMPLES, GUIDE), pool
