"""Company tools for a deployment: open the database (or the embedded one), migrate, seed the
demo data into an empty database, and build the tool router on the chat model."""

from __future__ import annotations

import logging

import asyncpg

from pipeline.cache.client import Cache
from pipeline.config import Settings
from pipeline.orchestrator import Tools
from pipeline.providers.llama import LlamaChat
from pipeline.store.db import open_database
from pipeline.store.seed import seed
from pipeline.tools.cached import CachedTools
from pipeline.tools.company import EXAMPLES, GUIDE, company_tools
from pipeline.tools.router import ToolRouter

log = logging.getLogger("jarvis.tools")
WARM_UP = ["What is the status of load 100?", "Which trucks are available?"]


async def open_company_tools(
    model: LlamaChat, settings: Settings, cache: Cache | None = None
) -> tuple[Tools, asyncpg.Pool]:
    pool = await open_database(settings)
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM loads)"):
        counts = await seed(pool)
        log.info("seeded demo data: %s", counts)
    registry = company_tools(pool)
    router = ToolRouter(model, registry, EXAMPLES, GUIDE)
    # Evaluate the few-shot prefix and compile the pick grammars now, not in the first
    # user's turn (measured: that turn's first token came 3.7 s after its transcript).
    for question in WARM_UP:
        await router.route(question)
    return (router if cache is None else CachedTools(router, registry, cache)), pool
