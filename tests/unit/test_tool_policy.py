"""The tool layer's rules hold whatever the model proposes: a scripted router that invents
arguments, the real company tools on the real Postgres.

Grounding drops what the user did not say, missing arguments are asked for and completed
in the next turn, a write runs only on a yes to its read-back, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from pipeline.store.seed import seed
from pipeline.tools.definitions import company_tools
from pipeline.tools.policy import ToolPolicy, is_no, is_yes
from pipeline.tools.registry import ToolRegistry, ToolResult
from pipeline.tools.router import ToolCall
from pipeline.types import ChatMessage, ToolState, ToolUse
from tests.pg import fresh_pool

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)  # a Saturday
NOTHING_TO_CONFIRM = "There is nothing waiting for a yes. What would you like to do?"
INVENTED_PICKUP = {
    "origin": "Omaha",
    "destination": "Memphis",
    "pickup_date": "2026-12-04",
    "pickup_time": "12:00",
}


class ScriptedRouter:
    """A model that picks `tool` for every question and proposes `arguments` (invented or
    not), then runs calls on the real registry."""

    def __init__(self, registry: ToolRegistry, tool: str | None, arguments: dict) -> None:  # type: ignore[type-arg]
        self.registry, self.tool, self.arguments = registry, tool, arguments
        self.calls: list[ToolCall] = []

    async def route(self, question: str, *, now: datetime | None = None) -> ToolCall | None:
        if self.tool is None or self.tool not in self.registry.candidates(question):
            return None  # the real router's cue-word gate: "Yes." reaches no tool
        return ToolCall(self.tool, dict(self.arguments))

    async def call(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        return await self.registry.call(call.name, call.arguments, call.call_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async for p in fresh_pool():
        await seed(p, now=NOW)
        yield p


class Conversation:
    """Turns through the policy, the history kept as the session keeps it."""

    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy
        self.messages: list[ChatMessage] = []

    async def say(self, text: str) -> ToolUse | str | None:
        """The turn's tool use, the fixed reply, or None (the model would answer)."""
        self.messages.append(ChatMessage("user", text))
        use = await self.policy.answer(self.messages, now=NOW)
        if isinstance(use, str):
            self.messages.append(ChatMessage("assistant", use))
            return use
        reply = use.spoken if use is not None else "(the model answers)"
        self.messages.append(ChatMessage("assistant", reply, use))
        return use


async def loads(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM loads"))


def make(pool: asyncpg.Pool, tool: str | None, arguments: dict, **kw: object):  # type: ignore[no-untyped-def, type-arg]
    registry = company_tools(pool)
    router = ScriptedRouter(registry, tool, arguments)
    clock = Clock()
    policy = ToolPolicy(router, registry, clock=clock, **kw)  # type: ignore[arg-type]
    return Conversation(policy), router, clock


async def test_invented_pickup_arguments_are_dropped_and_asked_for(pool: asyncpg.Pool) -> None:
    talk, router, _ = make(pool, "schedule_pickup", INVENTED_PICKUP)
    before = await loads(pool)
    use = await talk.say("Schedule a pickup for tomorrow morning.")
    assert use is not None and use.state is ToolState.ASKED
    # Omaha, Memphis and December 4 were the model's; tomorrow morning was the user's.
    assert use.arguments == {"pickup_date": "2026-11-29", "pickup_time": "09:00"}
    assert use.spoken == "Where should it be picked up and where should it go?"
    assert router.calls == [] and await loads(pool) == before


async def test_a_pickup_is_completed_read_back_confirmed_and_written_once(
    pool: asyncpg.Pool,
) -> None:
    talk, router, _ = make(pool, "schedule_pickup", {})
    before = await loads(pool)
    asked = await talk.say("Set up a pickup in Chicago.")
    assert asked is not None and asked.state is ToolState.ASKED
    assert asked.arguments == {"origin": "Chicago"}
    assert asked.spoken == "Where should it go, on what day and at what time?"
    proposed = await talk.say("To Denver, on Monday at 10 AM.")
    assert proposed is not None and proposed.state is ToolState.PROPOSED
    assert proposed.spoken == (
        "Book a pickup from Chicago to Denver on Monday, November 30 at 10 AM?"
    )
    assert router.calls == [] and await loads(pool) == before  # nothing written yet
    done = await talk.say("Yes, please.")
    assert done is not None and done.state is ToolState.DONE and done.ok
    assert done.spoken.startswith("Done. Load ")
    assert await loads(pool) == before + 1
    row = await pool.fetchrow("SELECT * FROM loads WHERE id = $1", done.data["load_id"])
    assert (row["origin"], row["destination"]) == ("Chicago", "Denver")
    assert row["pickup_at"] == datetime(2026, 11, 30, 10, tzinfo=UTC)
    # The same confirmation retried (a resent turn) writes nothing more.
    retried = await talk.policy.answer(talk.messages[:-1], now=NOW)
    assert retried is not None and retried.data["load_id"] == done.data["load_id"]
    assert await loads(pool) == before + 1
    # A yes after the booking is no confirmation of anything (and no model makes one up).
    assert await talk.say("Yes.") == NOTHING_TO_CONFIRM and await loads(pool) == before + 1


async def test_no_drops_the_proposal(pool: asyncpg.Pool) -> None:
    talk, _, _ = make(pool, "schedule_pickup", {})
    before = await loads(pool)
    await talk.say("Book a pickup from Dallas to Houston tomorrow at 9.")
    declined = await talk.say("No.")
    assert declined is not None and declined.state is ToolState.DECLINED
    assert await talk.say("Yes.") == NOTHING_TO_CONFIRM
    assert await loads(pool) == before


async def test_a_correction_changes_the_proposal_and_reads_it_back_again(
    pool: asyncpg.Pool,
) -> None:
    talk, _, _ = make(pool, "schedule_pickup", {})
    first = await talk.say("Book a pickup from Dallas to Denver on Monday at 10 AM.")
    assert first is not None and first.state is ToolState.PROPOSED
    changed = await talk.say("Make it Tuesday.")
    assert changed is not None and changed.state is ToolState.PROPOSED
    assert changed.arguments["pickup_date"] == "2026-12-01"
    assert changed.arguments["pickup_time"] == first.arguments["pickup_time"]
    assert changed.call_id != first.call_id
    assert "Tuesday, December 1 at 10 AM" in changed.spoken
    rerouted = await talk.say("No, to Austin.")
    assert rerouted is not None and rerouted.state is ToolState.PROPOSED
    assert rerouted.arguments["destination"] == "Austin"


async def test_a_proposal_expires_in_seconds_and_in_turns(pool: asyncpg.Pool) -> None:
    talk, _, clock = make(pool, "schedule_pickup", {}, within_s=60)
    before = await loads(pool)
    await talk.say("Book a pickup from Dallas to Houston tomorrow at 9.")
    clock.now += 61
    late = await talk.say("Yes.")
    assert late is not None and late.state is ToolState.DECLINED and "expired" in late.spoken
    await talk.say("Book a pickup from Dallas to Houston tomorrow at 9.")
    talk.messages += [ChatMessage("user", "What time is it?"), ChatMessage("assistant", "Noon.")]
    assert await talk.say("Yes.") == NOTHING_TO_CONFIRM  # an intervening turn
    assert await loads(pool) == before


async def test_something_else_drops_the_proposal(pool: asyncpg.Pool) -> None:
    talk, router, _ = make(pool, "schedule_pickup", {})
    await talk.say("Book a pickup from Dallas to Houston tomorrow at 9.")
    router.tool = None  # the next question routes to no tool
    assert await talk.say("How are you today?") is None
    router.tool = "schedule_pickup"
    assert await talk.say("Yes.") == NOTHING_TO_CONFIRM
    assert router.calls == []


async def test_an_invented_load_number_is_refused_and_asked_for(pool: asyncpg.Pool) -> None:
    talk, router, _ = make(pool, "get_load_status", {"load_id": 3051})
    asked = await talk.say("Is my load late?")
    assert asked is not None and asked.state is ToolState.ASKED
    assert asked.spoken == "Which load number should I look up?" and router.calls == []
    answered = await talk.say("Four hundred twenty seven.")
    assert answered is not None and answered.state is ToolState.DONE
    assert answered.arguments == {"load_id": 427} and "Load 427" in answered.spoken


async def test_a_type_is_never_an_equipment_id(pool: asyncpg.Pool) -> None:
    proposed = {"equipment_id": "forklift", "type": "forklift", "location": "south warehouse"}
    talk, router, _ = make(pool, "get_equipment_status", proposed)
    use = await talk.say("Is the forklift in the south warehouse working?")
    assert use is not None and use.state is ToolState.DONE and use.ok
    called = router.calls[0].arguments
    assert "equipment_id" not in called
    assert (called["type"], called["location"]) == ("forklift", "south warehouse")
    assert use.spoken.startswith("Of the ") and "forklifts in the south warehouse" in use.spoken


async def test_an_example_id_the_user_did_not_say_is_dropped(pool: asyncpg.Pool) -> None:
    talk, router, _ = make(pool, "get_equipment_status", {"equipment_id": "DD-03"})
    use = await talk.say("Do we have any forklifts available in the south warehouse?")
    assert use is not None
    assert "DD-03" not in use.spoken and "equipment_id" not in router.calls[0].arguments
    assert use.spoken.startswith("Of the ") and "forklifts in the south warehouse" in use.spoken


@pytest.mark.parametrize(
    ("text", "yes", "no"),
    [
        ("Yes.", True, False),
        ("Yeah, go ahead.", True, False),
        ("OK, book it please", True, False),
        ("That's right.", True, False),
        ("No.", False, True),
        ("No thanks.", False, True),
        ("Never mind.", False, True),
        ("Yes, but make it Tuesday.", False, False),
        ("Maybe.", False, False),
        ("Yesterday was busy.", False, False),
    ],
)
def test_explicit_yes_and_no(text: str, yes: bool, no: bool) -> None:
    assert (is_yes(text), is_no(text)) == (yes, no)
