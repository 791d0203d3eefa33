"""Tool calling through the orchestrator with the embedded model and the real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from pipeline.cache.client import Cache
from pipeline.cache.core import CacheCore
from pipeline.cache.store import MemoryStore
from pipeline.config import CacheTtls, LlmArgs, Settings
from pipeline.llm.orchestrator import Orchestrator
from pipeline.providers.build import build_llama
from pipeline.providers.llama import LlamaChat
from pipeline.store import company_data
from pipeline.store.seed import seed
from pipeline.tools.cached import CachedTools
from pipeline.tools.definitions import EXAMPLES, GUIDE, company_tools
from pipeline.tools.policy import ToolPolicy
from pipeline.tools.router import ToolCall, ToolRouter
from pipeline.types import ChatMessage, ToolUse
from tests.pg import fresh_pool


@pytest.fixture(scope="module")
def chat() -> LlamaChat:
    return build_llama(LlmArgs(), Settings().cache_dir)


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async for p in fresh_pool():
        await seed(p, now=datetime(2026, 11, 28, 12, tzinfo=UTC))
        yield p


@pytest.fixture
def orchestrator(chat: LlamaChat, pool: asyncpg.Pool) -> Orchestrator:
    registry = company_tools(pool)
    router = ToolRouter(chat, registry, EXAMPLES, GUIDE)
    return Orchestrator(chat, LlmArgs(), tools=ToolPolicy(router, registry))


async def ask(orch: Orchestrator, text: str) -> str:
    """One question as the LLM stage gets it: the user's words, no history."""
    messages = [ChatMessage("user", text)]
    return "".join([d async for d in orch.chat(messages, max_tokens=None, temperature=None)])


async def say(orch: Orchestrator, history: list[ChatMessage], text: str) -> str:
    """One turn of a conversation: `history` grows as the session keeps it."""
    history.append(ChatMessage("user", text))
    used: list[ToolUse] = []
    reply = "".join(
        [
            d
            async for d in orch.chat(
                history, max_tokens=None, temperature=None, on_tool=used.append
            )
        ]
    )
    history.append(ChatMessage("assistant", reply, used[0] if used else None))
    return reply


async def test_load_question_is_answered_from_the_database(
    orchestrator: Orchestrator, pool: asyncpg.Pool
) -> None:
    load = await company_data.get_load(pool, 427)
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
    forklift = await company_data.find_equipment(pool, equipment_id="FL-07")
    answer = await ask(orchestrator, "Is forklift FL-07 working?")
    assert forklift[0].status in answer


async def test_small_talk_uses_no_tool(orchestrator: Orchestrator, chat: LlamaChat) -> None:
    router = ToolRouter(chat, company_tools(None), EXAMPLES, GUIDE)  # type: ignore[arg-type]
    assert await router.route("Tell me a joke about trucks.") is None
    assert await ask(orchestrator, "Good evening!")


async def test_routing_and_results_through_the_cache(chat: LlamaChat, pool: asyncpg.Pool) -> None:
    core = CacheCore(MemoryStore(), CacheTtls().model_dump())
    cache = Cache(core)
    registry = company_tools(pool)
    tools = CachedTools(ToolRouter(chat, registry, EXAMPLES, GUIDE), registry, cache)
    orch = Orchestrator(chat, LlmArgs(), tools=ToolPolicy(tools, registry), cache=cache)

    assert await ask(orch, "Where is load 10000?") == "I could not find load 10000."
    assert await ask(orch, "where is load 10000") == "I could not find load 10000."
    ns = core.stats()["namespaces"]
    assert (ns["search"]["hits"], ns["loads"]["hits"]) == (1, 1)  # no model call, no query

    # A write (the next load id is 10000) invalidates what it changes.
    done = await tools.call(
        ToolCall(
            "schedule_pickup",
            {
                "origin": "Omaha",
                "destination": "Memphis",
                "pickup_date": "2026-12-01",
                "pickup_time": "09:00",
            },
        )
    )
    assert done.ok and "Load 10000" in done.spoken
    answer = await ask(orch, "Where is load 10000?")
    assert "Omaha" in answer and "Memphis" in answer
    assert core.stats()["namespaces"]["loads"]["invalidations"] == 1


async def test_identical_prompts_share_a_cached_reply(chat: LlamaChat) -> None:
    core = CacheCore(MemoryStore(), CacheTtls().model_dump())
    orch = Orchestrator(chat, LlmArgs(), cache=Cache(core))
    messages = [ChatMessage("user", "Say hello to the night shift.")]
    first = "".join([d async for d in orch.chat(messages, max_tokens=None, temperature=None)])
    again = [d async for d in orch.chat(messages, max_tokens=None, temperature=None)]
    assert again == [first]  # the whole reply at once, no generation
    assert core.stats()["namespaces"]["llm"]["hits"] == 1


async def test_a_pickup_is_read_back_and_booked_on_yes(
    orchestrator: Orchestrator, pool: asyncpg.Pool
) -> None:
    history: list[ChatMessage] = []
    proposal = await say(
        orchestrator, history, "Book a pickup from Dallas to Houston tomorrow at 9."
    )
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    assert proposal == (
        f"Book a pickup from Dallas to Houston on {tomorrow:%A, %B} {tomorrow.day} at 9 AM?"
    )
    assert await company_data.get_load(pool, 10000) is None  # nothing written before the yes
    answer = await say(orchestrator, history, "Yes.")
    assert answer.startswith("Done. Load 10000 from Dallas to Houston"), answer
    load = await company_data.get_load(pool, 10000)
    assert load is not None and load.status == "scheduled"
    at = load.pickup_at.astimezone(UTC)
    assert (at.date(), at.hour) == (tomorrow, 9)
