"""Tool calling through the orchestrator with the embedded model and the real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from pipeline.config import LlmArgs, Settings
from pipeline.factory import build_chat
from pipeline.orchestrator import Orchestrator
from pipeline.providers.llama import LlamaChat
from pipeline.store import company
from pipeline.store.seed import seed
from pipeline.tools.company import EXAMPLES, GUIDE, company_tools
from pipeline.tools.router import ToolRouter
from tests.pg import fresh_pool


@pytest.fixture(scope="module")
def chat() -> LlamaChat:
    return build_chat(LlmArgs(), Settings().cache_dir)


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async for p in fresh_pool():
        await seed(p, now=datetime(2026, 11, 28, 12, tzinfo=UTC))
        yield p


@pytest.fixture
def orchestrator(chat: LlamaChat, pool: asyncpg.Pool) -> Orchestrator:
    router = ToolRouter(chat, company_tools(pool), EXAMPLES, GUIDE)
    return Orchestrator(chat, LlmArgs(), tools=router)


async def ask(orch: Orchestrator, text: str) -> str:
    return "".join([d async for d in orch.respond("t", text)])


async def test_load_question_is_answered_from_the_database(
    orchestrator: Orchestrator, pool: asyncpg.Pool
) -> None:
    load = await company.get_load(pool, 427)
    assert load is not None
    answer = await ask(orchestrator, "What is the status of load 427?")
    assert load.status in answer and load.origin in answer and load.destination in answer


async def test_unknown_load_is_not_invented(orchestrator: Orchestrator) -> None:
    assert await ask(orchestrator, "Where is load 999?") == "I could not find load 999."


async def test_inventory_and_equipment_questions(
    orchestrator: Orchestrator, pool: asyncpg.Pool
) -> None:
    qty = await pool.fetchval(
        "SELECT quantity FROM inventory WHERE item = 'bottled water' AND warehouse = 'north'"
    )
    answer = await ask(
        orchestrator, "How many pallets of bottled water are in the north warehouse?"
    )
    assert (str(qty) in answer) if qty is not None else answer.startswith("I found no")
    forklift = await company.find_equipment(pool, equipment_id="FL-07")
    answer = await ask(orchestrator, "Is forklift FL-07 working?")
    assert forklift[0].status in answer


async def test_small_talk_uses_no_tool(orchestrator: Orchestrator, chat: LlamaChat) -> None:
    router = ToolRouter(chat, company_tools(None), EXAMPLES, GUIDE)  # type: ignore[arg-type]
    assert await router.route("Tell me a joke about trucks.") is None
    assert await ask(orchestrator, "Good evening!")
