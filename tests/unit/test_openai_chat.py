"""The OpenAI chat provider and tool router through the official SDK, against a wire-faithful
loopback server (tests/wire/openai_server.py), with the real company tools on Postgres.

Streaming and usage, tool calls assembled from fragments (parallel ones too), tool results
sent back, retries only before output and only for retryable failures, timeouts, and the
tool policy's guarantees with an OpenAI model proposing the calls.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import httpx
import openai
import pytest

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.openai_chat import (
    OpenAIChat,
    OpenAIToolRouter,
    ToolTurn,
)
from pipeline.store.seed import seed
from pipeline.tools.definitions import company_tools
from pipeline.tools.policy import ToolPolicy
from pipeline.tools.registry import ToolRegistry
from pipeline.tools.router import ToolCall
from pipeline.types import ChatMessage, ToolState, ToolUse
from tests.pg import fresh_pool
from tests.ports import free_port
from tests.wire.openai_server import Call, FakeOpenAI, Reply, prompt_tokens

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)  # a Saturday
ASK = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say something.")]
INVENTED_PICKUP = {
    "origin": "Omaha",
    "destination": "Memphis",
    "pickup_date": "2026-12-04",
    "pickup_time": "12:00",
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async for p in fresh_pool():
        await seed(p, now=NOW)
        yield p


@pytest.fixture
def registry(pool: asyncpg.Pool) -> ToolRegistry:
    return company_tools(pool)


class Clients:
    """Providers made by a test, closed after it (their connection pools too)."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.made: list[OpenAIChat | OpenAIToolRouter] = []

    def _defaults(self) -> dict[str, Any]:
        return {"api_key": self.fake.api_key, "base_url": self.fake.base_url, "backoff_s": 0.01}

    def chat(self, **kw: Any) -> OpenAIChat:
        kw = self._defaults() | kw
        self.made.append(llm := OpenAIChat(**kw))
        return llm

    def router(self, registry: ToolRegistry, **kw: Any) -> OpenAIToolRouter:
        kw = self._defaults() | kw
        self.made.append(tools := OpenAIToolRouter(registry, **kw))
        return tools


@pytest.fixture
async def make(fake: FakeOpenAI) -> AsyncIterator[Clients]:
    clients = Clients(fake)
    yield clients
    for c in clients.made:
        await c.aclose()


async def collect(llm: OpenAIChat, into: list[str] | None = None) -> list[str]:
    deltas = [] if into is None else into
    async for delta in llm.stream(ASK, max_tokens=64, temperature=0.2):
        deltas.append(delta)
    return deltas


async def loads(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM loads"))


# -- the wire ---------------------------------------------------------------------------


def test_the_fake_speaks_openai_sse(fake: FakeOpenAI) -> None:
    """What the SDK parses, as bytes: deltas keyed by index, the first of a call with id,
    type, name and empty arguments; finish_reason; a usage chunk with no choices; [DONE]."""
    fake.script(Reply(calls=(Call("a", {"x": 1}), Call("b", {"y": 2})), fragment_chars=4))
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "a", "parameters": {}}}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    r = httpx.post(f"{fake.base_url}/chat/completions", json=body, headers=auth)
    assert r.headers["content-type"].startswith("text/event-stream")
    lines = [x for x in r.text.split("\n\n") if x]
    assert all(x.startswith("data: ") for x in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(x.removeprefix("data: ")) for x in lines[:-1]]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[:-2]]
    assert calls[0] == {
        "index": 0,
        "id": calls[0]["id"],
        "type": "function",
        "function": {"name": "a", "arguments": ""},
    }
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert calls[1] == {"index": 0, "function": {"arguments": '{"x"'}}
    second = next(i for i, c in enumerate(calls) if c["index"] == 1)
    assert calls[second]["id"] != calls[0]["id"] and calls[second]["function"]["arguments"] == ""
    args = "".join(c["function"]["arguments"] for c in calls if c["index"] == 1)
    assert json.loads(args) == {"y": 2}
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


async def test_the_fake_refuses_what_openai_refuses(fake: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(api_key=fake.api_key, base_url=fake.base_url, max_retries=0)
    tool_msg: Any = {"role": "tool", "tool_call_id": "call_1", "content": "{}"}
    with pytest.raises(openai.BadRequestError, match="preceeding message with 'tool_calls'"):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}, tool_msg]
        )
    unanswered: Any = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "a"}}],
    }
    with pytest.raises(openai.BadRequestError, match="did not have response messages: call_1"):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}, unanswered]
        )
    with pytest.raises(openai.BadRequestError, match="only allowed when 'tools'"):
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            parallel_tool_calls=True,
        )
    whole = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert whole.choices[0].message.content == "You said: hi"
    assert whole.model == "gpt-4o-mini-2024-07-18" and whole.usage is not None
    await client.close()


# -- streamed text ----------------------------------------------------------------------


async def test_text_streams_token_by_token_with_usage(make: Clients, fake: FakeOpenAI) -> None:
    text = "Load 427 is in transit to Denver."
    fake.script(Reply(text=text))
    llm = make.chat()
    deltas = await collect(llm)
    assert deltas == ["Load", " 427", " is", " in", " transit", " to", " Denver."]
    [request] = fake.requests
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["max_completion_tokens"] == 64 and request.body["temperature"] == 0.2
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say something."},
    ]
    assert llm.stats.last_completion_tokens == len(deltas)
    assert llm.stats.last_prompt_tokens == prompt_tokens(request.body)
    assert (llm.stats.requests, llm.stats.retries) == (1, 0)
    await llm.aclose()


async def test_tokens_reach_the_caller_as_they_are_sent(make: Clients, fake: FakeOpenAI) -> None:
    """Streamed, not buffered: the first word arrives while the server is still holding the
    rest back (no clock involved: the server stalls after one token)."""
    fake.script(Reply(text="one two three", stall_after=1))
    stream = cast(AsyncGenerator[str, None], make.chat().stream(ASK, max_tokens=64, temperature=0))
    async with asyncio.timeout(5):
        assert await anext(stream) == "one"
    await stream.aclose()


async def test_a_barge_in_closes_the_stream_at_the_server(make: Clients, fake: FakeOpenAI) -> None:
    """The caller stops reading after one word: the request is not left running."""
    fake.script(Reply(text=" ".join(["word"] * 200), token_delay_s=0.02))
    stream = cast(AsyncGenerator[str, None], make.chat().stream(ASK, max_tokens=500, temperature=0))
    assert await anext(stream) == "word"
    await stream.aclose()
    assert await asyncio.to_thread(fake.wait_hang_up, 2.0)
    assert fake.hung_up == 1 and len(fake.requests) == 1


# -- retries ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
async def test_a_retryable_status_before_output_is_retried(
    make: Clients, fake: FakeOpenAI, status: int
) -> None:
    fake.script(Reply(status=status), Reply(text="Fine."))
    llm = make.chat()
    assert await collect(llm) == ["Fine."]
    assert len(fake.requests) == 2 and llm.stats.retries == 1


async def test_retries_are_bounded_and_then_raise_retryable(
    make: Clients, fake: FakeOpenAI
) -> None:
    fake.script(Reply(status=429), Reply(status=500), Reply(status=503), Reply(text="Late."))
    assert await collect(make.chat(max_retries=3)) == ["Late."]
    assert len(fake.requests) == 4
    fake.reset()
    fake.script(Reply(status=503), Reply(status=503), Reply(text="never"))
    with pytest.raises(TransientProviderError) as e:
        await collect(make.chat(max_retries=1))
    assert e.value.status == 503 and e.value.status_code == 503
    assert len(fake.requests) == 2


async def test_a_long_retry_after_is_not_waited_for(make: Clients, fake: FakeOpenAI) -> None:
    """The server asks for 30 s: a voice turn cannot wait, another provider should answer."""
    fake.script(Reply(status=429, retry_after_s=30), Reply(text="never"))
    with pytest.raises(TransientProviderError, match="rate_limit_exceeded"):
        await collect(make.chat())
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_a_client_error_is_not_retried(make: Clients, fake: FakeOpenAI, status: int) -> None:
    fake.script(Reply(status=status), Reply(text="never"))
    with pytest.raises(ProviderError) as e:
        await collect(make.chat())
    assert not isinstance(e.value, TransientProviderError)
    assert e.value.provider == "openai" and f"Error code: {status}" in e.value.message
    assert len(fake.requests) == 1


async def test_a_wrong_key_is_refused_once(make: Clients, fake: FakeOpenAI) -> None:
    llm = make.chat(api_key="sk-wrong")
    with pytest.raises(ProviderError, match="invalid_api_key") as e:
        await collect(llm)
    assert not isinstance(e.value, TransientProviderError)
    assert (
        len(fake.requests) == 1 and fake.requests[0].headers["authorization"] == "Bearer sk-wrong"
    )


async def test_a_drop_before_output_is_retried(make: Clients, fake: FakeOpenAI) -> None:
    fake.script(Reply(text="lost words", drop_after=0), Reply(text="Here."))
    assert await collect(make.chat()) == ["Here."]
    assert len(fake.requests) == 2


async def test_no_retry_once_output_started(make: Clients, fake: FakeOpenAI) -> None:
    """The user heard "one two": a retry would say it again, or say something else."""
    fake.script(Reply(text="one two three four", drop_after=2), Reply(text="never"))
    heard: list[str] = []
    with pytest.raises(TransientProviderError, match="connection failed"):
        await collect(make.chat(), heard)
    assert heard == ["one", " two"]
    assert len(fake.requests) == 1


# -- timeouts ---------------------------------------------------------------------------


async def test_a_read_stall_times_out_and_is_retried_only_before_output(
    make: Clients, fake: FakeOpenAI
) -> None:
    fake.script(Reply(text="slow", stall_after=0), Reply(text="Quick."))
    start = time.monotonic()
    assert await collect(make.chat(read_timeout_s=0.2)) == ["Quick."]
    assert 0.2 <= time.monotonic() - start < 2 and len(fake.requests) == 2

    fake.reset()
    fake.script(Reply(text="one two three", stall_after=1), Reply(text="never"))
    heard: list[str] = []
    with pytest.raises(TransientProviderError, match="timed out"):
        await collect(make.chat(read_timeout_s=0.2), heard)
    assert heard == ["one"] and len(fake.requests) == 1


async def test_the_whole_call_has_a_deadline(make: Clients, fake: FakeOpenAI) -> None:
    """`timeout_s` bounds the call, retries included: the base class's deadline (transient, no
    HTTP status), not the last 503."""
    fake.script(*[Reply(status=503)] * 5)
    llm = make.chat(timeout_s=0.3, max_retries=4, backoff_s=0.2, max_backoff_s=0.2)
    with pytest.raises(TransientProviderError, match="generation timed out") as e:
        await collect(llm)
    assert e.value.status is None
    assert len(fake.requests) == 2


def test_the_sdk_is_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ImportError, match=r"pip install '\.\[cloud\]'"):
        OpenAIChat(api_key="sk-test")


# -- tool calls -------------------------------------------------------------------------


async def test_parallel_tool_calls_are_assembled_from_fragments(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry
) -> None:
    fake.script(
        Reply(
            calls=(
                Call("get_load_status", {"load_id": 427}),
                Call("search_inventory", {"item": "bottled water", "warehouse": "north"}),
            ),
            fragment_chars=3,
        )
    )
    tools = make.router(registry)
    turn = await tools.plan("Where is load 427, and how much bottled water is in the north?")
    assert [(c.name, c.arguments) for c in turn.calls] == [
        ("get_load_status", {"load_id": 427}),
        ("search_inventory", {"item": "bottled water", "warehouse": "north"}),
    ]
    assert len({c.id for c in turn.calls}) == 2 and all(
        c.id.startswith("call_") for c in turn.calls
    )
    assert turn.finish_reason == "tool_calls" and turn.text == ""
    body = fake.requests[0].body
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    names = [t["function"]["name"] for t in body["tools"]]
    assert names == [
        "get_load_status",
        "search_inventory",
        "get_equipment_status",
        "schedule_pickup",
    ]
    pickup = body["tools"][3]["function"]
    assert pickup["description"] == "Create a new load: pickup at origin, delivery to destination."
    assert pickup["parameters"]["required"] == [
        "origin",
        "destination",
        "pickup_date",
        "pickup_time",
    ]
    assert pickup["parameters"]["properties"]["pickup_date"] == {"format": "date", "type": "string"}
    assert tools.stats.last_completion_tokens > 0
    # route() proposes the first; the policy takes one call per turn
    fake.script(Reply(calls=(Call("get_load_status", {"load_id": 427}), Call("x", {}))))
    assert await tools.route("Where is load 427?") == ToolCall("get_load_status", {"load_id": 427})


async def test_without_parallel_calls_the_model_makes_one(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry
) -> None:
    fake.script(Reply(calls=(Call("get_load_status", {"load_id": 1}), Call("x", {}))))
    turn = await make.router(registry, parallel_tool_calls=False).plan("Load 1?")
    assert [c.name for c in turn.calls] == ["get_load_status"]
    assert fake.requests[0].body["parallel_tool_calls"] is False


async def test_text_routes_to_no_tool_and_malformed_arguments_to_none(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry
) -> None:
    tools = make.router(registry)
    fake.script(Reply(text="Good morning! How can I help?"))
    assert await tools.route("Good morning.") is None
    fake.script(Reply(calls=(Call("get_load_status", '{"load_id": 4'),)))
    turn = await tools.plan("Where is my load?")
    assert turn.calls[0].raw_arguments == '{"load_id": 4' and turn.calls[0].arguments == {}
    fake.script(Reply(calls=(Call("get_load_status", "[427]"),)))
    assert await tools.route("Where is my load?") == ToolCall("get_load_status", {})


async def test_routing_retries_a_stream_cut_before_the_turn_is_whole(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry
) -> None:
    """Nothing reaches the caller before the calls are assembled: a cut anywhere is retried."""
    call = Call("get_load_status", {"load_id": 427})
    fake.script(Reply(calls=(call,), drop_after=3), Reply(status=500), Reply(calls=(call,)))
    tools = make.router(registry)
    assert await tools.route("Where is load 427?") == ToolCall("get_load_status", {"load_id": 427})
    assert len(fake.requests) == 3 and tools.stats.retries == 2


async def test_tool_results_go_back_and_the_final_text_streams(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry
) -> None:
    fake.script(
        Reply(
            calls=(
                Call("get_load_status", {"load_id": 427}),
                Call("search_inventory", {"item": "bottled water", "warehouse": "north"}),
            )
        ),
        Reply(text="Load 427 is on its way, and the north warehouse has water."),
    )
    tools = make.router(registry)
    turn: ToolTurn = await tools.plan("Where is load 427, and do we have bottled water north?")
    results = [await tools.call(c.as_tool_call()) for c in turn.calls]
    assert all(r.ok for r in results) and results[0].spoken.startswith("Load 427 from ")
    words = [d async for d in tools.respond(turn, results)]
    assert "".join(words) == "Load 427 is on its way, and the north warehouse has water."
    sent = fake.requests[1].messages
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
    assert sent[2]["tool_calls"] == [c.as_wire() for c in turn.calls]
    assert [m["tool_call_id"] for m in sent[3:]] == [c.id for c in turn.calls]
    assert json.loads(sent[3]["content"])["spoken"] == results[0].spoken
    assert fake.requests[1].body["tool_choice"] == "none"


# -- the policy's guarantees with an OpenAI model ----------------------------------------


class Conversation:
    """Turns through the policy, the history kept as the session keeps it."""

    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy
        self.messages: list[ChatMessage] = []

    async def say(self, text: str) -> ToolUse | str | None:
        self.messages.append(ChatMessage("user", text))
        use = await self.policy.answer(self.messages, now=NOW)
        spoken = use if isinstance(use, str) else use.spoken if use else "(the model answers)"
        tool_use = use if isinstance(use, ToolUse) else None
        self.messages.append(ChatMessage("assistant", spoken, tool_use))
        return use


def inventive(body: dict[str, Any]) -> Reply:
    """A model that makes up what the user did not say."""
    said = body["messages"][-1]["content"].lower()
    if "pickup" in said:
        return Reply(calls=(Call("schedule_pickup", INVENTED_PICKUP),))
    if "load" in said:
        return Reply(calls=(Call("get_load_status", {"load_id": 999}),))
    return Reply(text="Happy to help.")


async def test_invented_arguments_are_dropped_and_a_write_is_only_proposed(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry, pool: asyncpg.Pool
) -> None:
    fake.responder = inventive
    talk = Conversation(ToolPolicy(make.router(registry), registry))
    before = await loads(pool)
    asked = await talk.say("Schedule a pickup for tomorrow morning.")
    assert isinstance(asked, ToolUse) and asked.state is ToolState.ASKED
    # Omaha, Memphis and December 4 were the model's; tomorrow morning was the user's.
    assert asked.arguments == {"pickup_date": "2026-11-29", "pickup_time": "09:00"}
    assert asked.spoken == "Where should it be picked up and where should it go?"
    assert fake.requests[0].messages[-1] == {
        "role": "user",
        "content": "Schedule a pickup for tomorrow morning.",
    }
    proposed = await talk.say("From Chicago to Denver.")
    assert isinstance(proposed, ToolUse) and proposed.state is ToolState.PROPOSED
    assert proposed.spoken == "Book a pickup from Chicago to Denver on Sunday, November 29 at 9 AM?"
    assert await loads(pool) == before  # proposed, not written
    done = await talk.say("Yes.")
    assert isinstance(done, ToolUse) and done.state is ToolState.DONE and done.ok
    assert done.spoken.startswith("Done. Load ")
    assert await loads(pool) == before + 1
    again = await talk.say("Yes.")
    assert again == "There is nothing waiting for a yes. What would you like to do?"
    assert await loads(pool) == before + 1
    assert len(fake.requests) == 1  # the follow-ups were answered from the user's words


@pytest.mark.parametrize("arguments", [{"load_id": 999}, '{"load_id": 9'])
async def test_an_invented_or_broken_load_number_is_asked_for(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry, arguments: dict[str, Any] | str
) -> None:
    fake.script(Reply(calls=(Call("get_load_status", arguments),)))
    talk = Conversation(ToolPolicy(make.router(registry), registry))
    asked = await talk.say("Where is my load?")
    assert isinstance(asked, ToolUse) and asked.state is ToolState.ASKED
    assert asked.arguments == {} and asked.spoken == "Which load number should I look up?"
    answered = await talk.say("Load 427.")
    assert isinstance(answered, ToolUse) and answered.state is ToolState.DONE
    assert answered.arguments == {"load_id": 427} and answered.spoken.startswith("Load 427 from ")


async def test_a_grounded_read_runs_and_small_talk_reaches_no_tool(
    make: Clients, fake: FakeOpenAI, registry: ToolRegistry
) -> None:
    fake.script(
        Reply(calls=(Call("get_load_status", {"load_id": 427}),)),
        Reply(text="I'm well, thanks!"),
    )
    talk = Conversation(ToolPolicy(make.router(registry), registry))
    done = await talk.say("Where is load four hundred twenty seven?")
    assert isinstance(done, ToolUse) and done.state is ToolState.DONE and done.ok
    assert done.spoken.startswith("Load 427 from ")
    assert await talk.say("How are you?") is None  # the chat model answers


# -- standalone -------------------------------------------------------------------------


async def test_the_server_runs_standalone() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.wire.openai_server", "--port", str(port), "--api-key", "k"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            deadline = time.monotonic() + 15
            while True:
                try:
                    await http.post("/_fake/reset")
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "the standalone server did not start"
                    await asyncio.sleep(0.05)
            await http.post("/_fake/script", json={"replies": [{"text": "Standing by."}]})
            llm = OpenAIChat(api_key="k", base_url=f"{base}/v1")
            assert await collect(llm) == ["Standing", " by."]
            assert await collect(llm) == ["You", " said:", " Say", " something."]
            await llm.aclose()
            recorded = (await http.get("/_fake/requests")).json()
            assert len(recorded) == 2 and recorded[0]["body"]["stream"] is True
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
