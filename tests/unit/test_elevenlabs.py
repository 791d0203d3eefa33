"""ElevenLabs TTS against the wire-faithful loopback server (tests/wire/elevenlabs_server.py):
the official SDK over HTTP, our client over the multi-context socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.errors import UnprocessableEntityError
from elevenlabs.types import VoiceSettings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.elevenlabs import (
    ElevenLabsContext,
    ElevenLabsSocketPool,
    ElevenLabsTTS,
)
from tests.ports import free_port
from tests.wire.elevenlabs_server import ElevenLabsServer, synth_pcm

VOICE = "voice-1"
HELLO, HOW, BYE = "Hello there.", "How are you today?", "Bye for now."


@pytest.fixture
def fake() -> Iterator[ElevenLabsServer]:
    with ElevenLabsServer() as server:
        yield server


_providers: list[ElevenLabsTTS] = []


@pytest.fixture(autouse=True)
async def _close_providers() -> AsyncIterator[None]:
    yield
    while _providers:
        await _providers.pop().aclose()


def tts(fake: ElevenLabsServer | None, **kw: Any) -> ElevenLabsTTS:
    if fake is not None:
        kw = {"api_key": fake.api_key, "base_url": fake.base_url, **kw}
    provider = ElevenLabsTTS(voice_id=VOICE, **kw)
    _providers.append(provider)
    return provider


def pool(fake: ElevenLabsServer, **kw: Any) -> ElevenLabsSocketPool:
    kw.setdefault("api_key", fake.api_key)
    return ElevenLabsSocketPool(base_url=fake.base_url, voice_id=VOICE, **kw)


def spoken(*clauses: str, rate: int = 16_000) -> bytes:
    return b"".join(synth_pcm(c, rate) for c in clauses)


async def say(ctx: ElevenLabsContext, *clauses: str) -> bytes:
    """One reply: each clause sent and flushed, then closed; its whole audio."""
    for clause in clauses:
        await ctx.send(clause)
        await ctx.flush()
    await ctx.close()
    return b"".join([chunk async for chunk in ctx])


async def speak(p: ElevenLabsSocketPool, *clauses: str) -> bytes:
    return await say(await p.open_context(), *clauses)


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 -- polls another component's state; no event to wait on
            await asyncio.sleep(0.01)


def codes(fake: ElevenLabsServer) -> list[int | None]:
    return [c.code for c in fake.closes]


# -- HTTP: the official SDK against the fake ---------------------------------------------------


@pytest.fixture
async def sdk(fake: ElevenLabsServer) -> AsyncIterator[AsyncElevenLabs]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield AsyncElevenLabs(api_key=fake.api_key, base_url=fake.base_url, httpx_client=http)


async def test_official_sdk_streams_pcm_from_the_fake(
    fake: ElevenLabsServer, sdk: AsyncElevenLabs
) -> None:
    chunks = [
        c
        async for c in sdk.text_to_speech.stream(
            VOICE,
            text=HELLO,
            model_id="eleven_turbo_v2_5",
            output_format="pcm_16000",
            optimize_streaming_latency=3,
            voice_settings=VoiceSettings(stability=0.5, similarity_boost=0.75),
        )
    ]
    assert b"".join(chunks) == spoken(HELLO)
    (req,) = fake.http_requests
    assert req.voice_id == VOICE and req.api_key == fake.api_key
    assert req.params == {"output_format": "pcm_16000", "optimize_streaming_latency": "3"}
    assert req.body == {
        "text": HELLO,
        "model_id": "eleven_turbo_v2_5",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.75},
    }


async def test_official_sdk_sees_the_fakes_errors_without_retrying(
    fake: ElevenLabsServer, sdk: AsyncElevenLabs
) -> None:
    with pytest.raises(UnprocessableEntityError):
        async for _ in sdk.text_to_speech.stream(VOICE, text="", output_format="pcm_16000"):
            pass
    fake.fail_next(503)
    with pytest.raises(ApiError) as e:
        async for _ in sdk.text_to_speech.stream(VOICE, text=HELLO, output_format="pcm_16000"):
            pass
    assert e.value.status_code == 503
    assert len(fake.http_requests) == 2


# -- HTTP: ElevenLabsTTS --------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16_000, 24_000])
async def test_synthesize_batch_speaks_pcm_at_the_asked_rate(
    fake: ElevenLabsServer, rate: int
) -> None:
    provider = tts(fake, sample_rate=rate)
    assert provider.sample_rate == rate
    assert await provider.synthesize_batch([HELLO, " ", HOW]) == [
        spoken(HELLO, rate=rate),
        b"",
        spoken(HOW, rate=rate),
    ]
    assert [r.params["output_format"] for r in fake.http_requests] == [f"pcm_{rate}"] * 2
    assert {r.body["model_id"] for r in fake.http_requests} == {"eleven_turbo_v2_5"}


def test_unsupported_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="11025"):
        ElevenLabsTTS(api_key="k", voice_id=VOICE, sample_rate=11_025)


async def test_stream_yields_whole_samples_as_they_arrive() -> None:
    text = "A sentence of forty characters, give or take."
    with ElevenLabsServer(chunk_delay_s=0.03) as fake:
        provider = tts(fake)
        start, times, chunks = time.monotonic(), [], []
        async for chunk in provider.stream(text):
            times.append(time.monotonic() - start)
            chunks.append(chunk)
    assert b"".join(chunks) == spoken(text)
    assert len(chunks) > 3 and all(len(c) % 2 == 0 for c in chunks)
    assert times[0] < times[-1] - 0.1  # the first audio did not wait for the last


async def test_bad_key_is_a_provider_error_not_retried(fake: ElevenLabsServer) -> None:
    provider = tts(fake, api_key="wrong")
    with pytest.raises(ProviderError, match="401") as e:
        await provider.synthesize(HELLO)
    assert not isinstance(e.value, TransientProviderError)
    assert "invalid_api_key" in str(e.value)
    assert len(fake.http_requests) == 1


async def test_bad_body_is_a_provider_error_not_retried(fake: ElevenLabsServer) -> None:
    provider = tts(fake, voice_settings={"speed": 2.0})  # the API allows 0.7-1.2
    with pytest.raises(ProviderError, match="422") as e:
        await provider.synthesize(HELLO)
    assert not isinstance(e.value, TransientProviderError)
    assert HELLO not in str(e.value)  # errors never quote the text
    assert len(fake.http_requests) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limit_and_server_errors_are_retryable(
    fake: ElevenLabsServer, status: int
) -> None:
    provider = tts(fake)
    fake.fail_next(status)
    with pytest.raises(TransientProviderError, match=str(status)):
        await provider.synthesize(HELLO)
    assert len(fake.http_requests) == 1  # no hidden retries: the caller decides
    assert await provider.synthesize(HELLO) == spoken(HELLO)


async def test_slow_first_audio_times_out_retryably() -> None:
    with ElevenLabsServer(first_audio_delay_s=2.0) as fake:
        provider = tts(fake, timeout_s=0.2)
        start = time.monotonic()
        with pytest.raises(TransientProviderError, match="timed out"):
            await provider.synthesize(HELLO)
        assert time.monotonic() - start < 1.0


async def test_cut_mid_stream_is_retryable(fake: ElevenLabsServer) -> None:
    fake.cut_next_stream(after_bytes=1000)
    with pytest.raises(TransientProviderError, match="connection"):
        await tts(fake).synthesize(HOW)


async def test_unreachable_server_is_retryable() -> None:
    provider = tts(None, api_key="k", base_url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(TransientProviderError, match="connection"):
        await provider.synthesize(HELLO)


async def test_first_audio_latency_is_injected() -> None:
    with ElevenLabsServer(first_audio_delay_s=0.3) as fake:
        start = time.monotonic()
        async for _ in tts(fake).stream(HELLO):
            break
        http_first = time.monotonic() - start
        async with pool(fake) as p:
            ctx = await p.open_context()
            await ctx.send(HELLO)
            await ctx.close()
            start = time.monotonic()
            async for _ in ctx:
                break
            socket_first = time.monotonic() - start
            await ctx.cancel()
    assert 0.3 <= http_first < 1.0 and 0.25 <= socket_first < 1.0


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "elevenlabs", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install '\.\[cloud\]'"):
        ElevenLabsTTS(api_key="k", voice_id=VOICE)
    with pytest.raises(ImportError, match=r"pip install '\.\[cloud\]'"):
        ElevenLabsSocketPool(api_key="k", voice_id=VOICE)


# -- sockets: our client against the fake ----------------------------------------------------


async def test_clauses_of_one_reply_come_back_in_order_as_one_context(
    fake: ElevenLabsServer,
) -> None:
    settings = {"stability": 0.5, "speed": 1.1}
    async with pool(fake, voice_settings=settings, chunk_length_schedule=[50, 90]) as p:
        ctx = await p.open_context()
        assert await say(ctx, HELLO, HOW, BYE) == spoken(HELLO, HOW, BYE)
        assert ctx.done
    (req,) = fake.socket_requests
    assert req.multi and req.voice_id == VOICE and req.api_key == fake.api_key
    assert req.params == {"model_id": "eleven_turbo_v2_5", "output_format": "pcm_16000"}
    assert [(g.context_id, g.text.strip()) for g in fake.generations] == [
        (ctx.id, HELLO),
        (ctx.id, HOW),
        (ctx.id, BYE),
    ]
    messages = fake.socket_messages[0]
    assert messages[0] == {
        "text": " ",
        "context_id": ctx.id,
        "voice_settings": settings,
        "generation_config": {"chunk_length_schedule": [50, 90]},
    }
    assert messages[1] == {"text": HELLO + " ", "context_id": ctx.id}
    assert messages[-3:] == [
        {"context_id": ctx.id, "flush": True},
        {"context_id": ctx.id, "close_context": True},
        {"close_socket": True},  # the pool closing
    ]
    assert codes(fake) == [1000]


async def test_replies_share_one_socket(fake: ElevenLabsServer) -> None:
    async with pool(fake) as p:
        assert await speak(p, HELLO) == spoken(HELLO)
        assert await speak(p, HOW) == spoken(HOW)
        together = await asyncio.gather(speak(p, HELLO, HOW), speak(p, BYE))
        assert together == [spoken(HELLO, HOW), spoken(BYE)]
        assert p.open_sockets == 1
    assert fake.sockets_opened == 1
    assert len({g.context_id for g in fake.generations}) == 4  # one context per reply


async def test_snake_case_context_ids_in_replies_are_understood() -> None:
    with ElevenLabsServer(context_id_key="context_id") as fake:
        async with pool(fake) as p:
            assert await asyncio.gather(speak(p, HELLO), speak(p, HOW)) == [
                spoken(HELLO),
                spoken(HOW),
            ]


async def test_cancel_closes_the_context_and_drops_its_audio() -> None:
    long = "This reply goes on and on, far longer than anyone wants to hear it."
    with ElevenLabsServer(chunk_delay_s=0.02) as fake:
        async with pool(fake) as p:
            interrupted, other = await p.open_context(), await p.open_context()
            await interrupted.send(long)
            await interrupted.flush()
            chunks = aiter(interrupted)
            first = await anext(chunks)
            await interrupted.cancel()
            assert [c async for c in chunks] == []  # nothing more, though the server sends on
            assert first and interrupted.done
            await other.send(HELLO)  # the socket and its other context carry on
            await other.close()
            assert b"".join([c async for c in other]) == spoken(HELLO)
            assert p.open_sockets == 1
    messages = fake.socket_messages[0]
    assert {"context_id": interrupted.id, "close_context": True} in messages
    assert {"context_id": interrupted.id, "flush": True} in messages
    assert fake.sockets_opened == 1


async def test_a_cancel_left_unanswered_retires_its_socket() -> None:
    with ElevenLabsServer(final_on_close_context=False, chunk_delay_s=0.02) as fake:
        async with pool(fake, cancel_grace_s=0.1, keepalive_s=0.2, audio_timeout_s=2) as p:
            ctx, other = await p.open_context(), await p.open_context()
            await other.send(HOW)
            await ctx.cancel()  # no isFinal will come: the pool cannot know the slot is free
            await asyncio.sleep(0.2)
            assert await speak(p, HELLO) == spoken(HELLO)  # on a fresh socket
            audio = await say(other, BYE)  # the retired socket still serves its replies
            assert audio == spoken(f"{HOW} {BYE}")  # one generation: HOW was not flushed
            await until(lambda: p.open_sockets == 1)  # then closes
    assert fake.sockets_opened == 2 and 1008 not in codes(fake)


async def test_six_concurrent_replies_never_get_1008(fake: ElevenLabsServer) -> None:
    clauses = [f"Reply number {i} says hello." for i in range(6)]
    async with pool(fake) as p:
        contexts = await asyncio.gather(*(p.open_context() for _ in clauses))
        audio = await asyncio.gather(
            *(say(ctx, c) for ctx, c in zip(contexts, clauses, strict=True))
        )
        assert audio == [spoken(c) for c in clauses]
    assert fake.sockets_opened == 2  # five contexts on the first, the sixth on a second
    assert 1008 not in codes(fake)


async def test_sixth_reply_waits_for_room_when_sockets_are_capped(
    fake: ElevenLabsServer,
) -> None:
    async with pool(fake, max_sockets=1, open_timeout_s=5) as p:
        held = [await p.open_context() for _ in range(5)]
        sixth = asyncio.create_task(speak(p, BYE))
        await asyncio.sleep(0.2)
        assert not sixth.done()  # waiting, not opening a sixth context on the socket
        assert await say(held[0], HELLO) == spoken(HELLO)  # its isFinal frees a slot
        assert await asyncio.wait_for(sixth, 5) == spoken(BYE)
        for ctx in held[1:]:
            await ctx.cancel()
    assert fake.sockets_opened == 1 and 1008 not in codes(fake)


async def test_no_room_in_time_is_retryable(fake: ElevenLabsServer) -> None:
    async with pool(fake, max_sockets=1, open_timeout_s=0.3) as p:
        held = [await p.open_context() for _ in range(5)]
        with pytest.raises(TransientProviderError, match="room"):
            await p.open_context()
        for ctx in held:
            await ctx.cancel()
    assert 1008 not in codes(fake)


async def test_dropped_socket_fails_only_its_contexts_then_a_fresh_socket_opens(
    fake: ElevenLabsServer,
) -> None:
    async with pool(fake) as p:
        first = [await p.open_context() for _ in range(5)]  # socket 0
        survivor = await p.open_context()  # socket 1
        for ctx in first:
            await ctx.send(HELLO)
        fake.drop_sockets(0)
        for ctx in first:
            with pytest.raises(TransientProviderError, match="dropped"):
                async for _ in ctx:
                    pass
        assert await say(survivor, HOW) == spoken(HOW)
        with pytest.raises(TransientProviderError):
            await first[0].send(BYE)
        assert await speak(p, BYE) == spoken(BYE)  # on socket 1, which has room
        fake.drop_sockets()
        await until(lambda: p.open_sockets == 0)  # the pool notices the drop
        assert await speak(p, HELLO) == spoken(HELLO)  # and opens a fresh socket
    assert fake.sockets_opened == 3


async def test_audio_that_never_ends_times_out_retryably() -> None:
    with ElevenLabsServer(first_audio_delay_s=2.0) as fake:
        async with pool(fake, audio_timeout_s=0.2) as p:
            with pytest.raises(TransientProviderError, match="timed out"):
                await speak(p, HELLO)


async def test_quiet_context_is_kept_alive_and_an_idle_socket_closes() -> None:
    with ElevenLabsServer(inactivity_timeout_s=0.4) as fake:
        async with pool(fake, keepalive_s=0.1, idle_close_s=0.25) as p:
            ctx = await p.open_context()
            await asyncio.sleep(0.9)  # the LLM is thinking: no text for twice the limit
            assert await say(ctx, HELLO) == spoken(HELLO)
            assert {"text": "", "context_id": ctx.id} in fake.socket_messages[0]
            await asyncio.sleep(0.6)  # no contexts: the pool closes the socket itself
            assert p.open_sockets == 0
            assert await speak(p, HOW) == spoken(HOW)
    assert fake.socket_messages[0][-1] == {"close_socket": True}
    assert fake.sockets_opened == 2 and 1008 not in codes(fake)


async def test_socket_bad_key_is_a_provider_error_not_retried(fake: ElevenLabsServer) -> None:
    async with pool(fake, api_key="wrong") as p:
        with pytest.raises(ProviderError, match="401") as e:
            await p.open_context()
    assert not isinstance(e.value, TransientProviderError)
    assert fake.sockets_opened == 0


async def test_socket_handshake_server_error_is_retryable(fake: ElevenLabsServer) -> None:
    fake.fail_next(503, on="ws")
    async with pool(fake) as p:
        with pytest.raises(TransientProviderError, match="503"):
            await p.open_context()
        assert await speak(p, HELLO) == spoken(HELLO)


# -- the fake itself, on the raw wire ---------------------------------------------------------


async def _until_closed(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message until the server closes (with any code)."""
    replies = []
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            replies.append(json.loads(raw))
    return replies


def _ws_url(fake: ElevenLabsServer, endpoint: str) -> str:
    return (
        f"ws://127.0.0.1:{fake.port}/v1/text-to-speech/{VOICE}/{endpoint}"
        "?model_id=eleven_turbo_v2_5&output_format=pcm_16000"
    )


async def test_fake_single_context_stream_input_wire(fake: ElevenLabsServer) -> None:
    long = "This first sentence is long enough to pass fifty characters. "
    headers = {"xi-api-key": fake.api_key}
    async with connect(_ws_url(fake, "stream-input"), additional_headers=headers) as ws:
        await ws.send(
            json.dumps({"text": " ", "generation_config": {"chunk_length_schedule": [50]}})
        )
        await ws.send(json.dumps({"text": long, "try_trigger_generation": True}))
        await ws.send(json.dumps({"text": "Bye. ", "flush": True}))
        await ws.send(json.dumps({"text": ""}))
        replies = await _until_closed(ws)
        assert ws.close_code == 1000
    *audio, final = replies
    assert final == {"isFinal": True}
    for msg in audio:
        assert set(msg) == {"audio", "isFinal", "normalizedAlignment", "alignment"}
        assert msg["isFinal"] is None
    assert audio[0]["alignment"]["chars"][:4] == list("This")
    pcm = b"".join(base64.b64decode(m["audio"]) for m in audio)
    assert pcm == spoken(long, "Bye.")


async def test_fake_closes_1008_on_a_sixth_context(fake: ElevenLabsServer) -> None:
    headers = {"xi-api-key": fake.api_key}
    async with connect(_ws_url(fake, "multi-stream-input"), additional_headers=headers) as ws:
        for i in range(6):
            await ws.send(json.dumps({"text": " ", "context_id": f"c{i}"}))
        replies = await _until_closed(ws)
        assert ws.close_code == 1008
    assert replies[-1]["error"] == "max_active_conversations" and replies[-1]["code"] == 1008


async def test_fake_closes_a_silent_socket_after_the_inactivity_limit() -> None:
    with ElevenLabsServer(inactivity_timeout_s=0.3) as fake:
        url, key = _ws_url(fake, "multi-stream-input"), {"xi-api-key": fake.api_key}
        async with connect(url, additional_headers=key) as ws:
            await ws.send(json.dumps({"text": " ", "context_id": "a"}))
            start = time.monotonic()
            replies = await _until_closed(ws)
            assert ws.close_code == 1008 and 0.25 < time.monotonic() - start < 1.5
    assert replies == [
        {
            "message": "Have not received a new text input within the timeout of 0.3 "
            "seconds. Streaming input will now close the connection.",
            "error": "input_timeout_exceeded",
            "code": 1008,
        }
    ]


async def test_fake_multi_context_replies_and_close_context(fake: ElevenLabsServer) -> None:
    headers = {"xi-api-key": fake.api_key}
    async with connect(_ws_url(fake, "multi-stream-input"), additional_headers=headers) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "a"}))
        await ws.send(json.dumps({"text": "Hi. ", "context_id": "a", "flush": True}))
        await ws.send(json.dumps({"text": "Unflushed words. ", "context_id": "a"}))
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        await ws.send(json.dumps({"close_socket": True}))
        replies = await _until_closed(ws)
        assert ws.close_code == 1000
    *audio, final = replies
    assert final == {"isFinal": True, "contextId": "a"}
    assert {m["contextId"] for m in audio} == {"a"} and all(m["isFinal"] is None for m in audio)
    assert b"".join(base64.b64decode(m["audio"]) for m in audio) == spoken("Hi.")
