"""Company tools for a deployment: open the database (or the embedded one), migrate, seed the
demo data into an empty database, and build the tool router on the chat model.

`ToolsOpener` does it in the background and keeps trying while Postgres is unreachable:
the LLM stage answers without tools meanwhile, and its readiness only reads the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from enum import StrEnum

import asyncpg

from pipeline.cache.client import Cache
from pipeline.config import Settings
from pipeline.errors import JarvisError
from pipeline.store.db import open_database
from pipeline.store.seed import seed
from pipeline.tools.cached import CachedTools
from pipeline.tools.definitions import EXAMPLES, GUIDE, company_tools
from pipeline.tools.policy import ToolPolicy, Tools
from pipeline.tools.registry import ToolRegistry
from pipeline.tools.router import StructuredModel, ToolRouter

log = logging.getLogger("jarvis.tools")
WARM_UP = ["What is the status of load 100?", "Which trucks are available?"]
OPEN_TIMEOUT_S = 30.0
RETRY_S = 30.0


MakeRouter = Callable[[ToolRegistry], Tools]


def local_router(model: StructuredModel) -> MakeRouter:
    """The small local model's router: cue words, then grammar-constrained picks."""
    return lambda registry: ToolRouter(model, registry, EXAMPLES, GUIDE)


async def open_company_tools(
    make_router: MakeRouter,
    settings: Settings,
    cache: Cache | None = None,
    *,
    confirm_within_s: float = 120.0,
    confirm_within_turns: int = 1,
) -> tuple[ToolPolicy, asyncpg.Pool]:
    pool = await open_database(settings)
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM loads)"):
        counts = await seed(pool)
        log.info("seeded demo data: %s", counts)
    registry = company_tools(pool)
    router = make_router(registry)
    if isinstance(router, ToolRouter):
        # Evaluate the few-shot prefix and compile the pick grammars now, not in the first
        # user's turn (measured: that turn's first token came 3.7 s after its transcript).
        for question in WARM_UP:
            await router.route(question)
    tools = router if cache is None else CachedTools(router, registry, cache)
    policy = ToolPolicy(
        tools, registry, within_s=confirm_within_s, within_turns=confirm_within_turns
    )
    return policy, pool


class ToolsState(StrEnum):
    OFF = "off"  # not configured
    OPENING = "opening"  # first attempt under way
    ON = "on"
    UNAVAILABLE = "unavailable"  # the database could not be opened; retrying


class ToolsOpener:
    def __init__(
        self,
        make_router: MakeRouter,
        settings: Settings,
        cache: Cache | None = None,
        *,
        confirm_within_s: float = 120.0,
        confirm_within_turns: int = 1,
    ) -> None:
        self._args = (make_router, settings, cache)
        self._confirm = (confirm_within_s, confirm_within_turns)
        self.state = ToolsState.OPENING
        self.tools: ToolPolicy | None = None
        self._pool: asyncpg.Pool | None = None
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._open_until_done())

    async def settled(self) -> None:
        """Wait for the first attempt to end, whichever way it went."""
        await self._first_attempt.wait()

    async def _open_until_done(self) -> None:
        while True:
            try:
                self.tools, self._pool = await asyncio.wait_for(
                    open_company_tools(
                        *self._args,
                        confirm_within_s=self._confirm[0],
                        confirm_within_turns=self._confirm[1],
                    ),
                    timeout=OPEN_TIMEOUT_S,
                )
                self.state = ToolsState.ON
                self._first_attempt.set()
                return
            except (OSError, TimeoutError, asyncpg.PostgresError, JarvisError) as e:
                log.warning(
                    "company tools unavailable (%s); answering without them, retrying in %g s",
                    type(e).__name__,
                    RETRY_S,
                )
                self.state = ToolsState.UNAVAILABLE
                self._first_attempt.set()
            await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            await self._pool.close()
