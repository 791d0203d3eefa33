"""The Deepgram adapter through the official SDK against the loopback Deepgram server.

Speech is a tone, silence is zeros: the server finds speech by level and measures endpointing
and utterance_end_ms on the audio timeline, so these tests wait on events, not on the clock.
Only the no-audio timeout (NET-0001) is wall-clock, shortened to a fraction of a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pytest

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.deepgram import (
    Closed,
    DeepgramLiveSession,
    DeepgramSTT,
    FinalTranscript,
    InterimTranscript,
    LiveEvent,
    Reconnected,
    SpeechStarted,
    SttError,
    UtteranceEnd,
)
from pipeline.voice.audio import float_to_pcm16
from tests.wire.deepgram_server import NET_0001, DeepgramServer

KEY = "dg-test-key"
RATE = 16_000
CHUNK = 3_200  # 100 ms of PCM16


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def speech(seconds: float) -> bytes:
    return float_to_pcm16(tone(seconds))


def silence(seconds: float) -> bytes:
    return bytes(int(RATE * seconds) * 2)


@pytest.fixture
async def server() -> AsyncIterator[DeepgramServer]:
    async with DeepgramServer(api_keys=(KEY,)) as dg:
        yield dg


def live(server: DeepgramServer, **kw: Any) -> DeepgramLiveSession:
    options: dict[str, Any] = {"backoff_s": (0.01, 0.05)} | kw
    return DeepgramLiveSession(api_key=KEY, base_url=server.base_url, **options)


async def send(session: DeepgramLiveSession, pcm: bytes) -> None:
    for i in range(0, len(pcm), CHUNK):
        await session.send(pcm[i : i + CHUNK])


async def until(
    session: DeepgramLiveSession, done: Callable[[LiveEvent], bool], timeout_s: float = 5.0
) -> list[LiveEvent]:
    """Events up to and including the first one `done` accepts."""
    seen: list[LiveEvent] = []
    async with asyncio.timeout(timeout_s):
        async for event in session.events():
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError(f"the session ended first: {seen}")


def finalized(event: LiveEvent) -> bool:
    return isinstance(event, FinalTranscript) and event.from_finalize


# -- prerecorded -----------------------------------------------------------------------------


async def test_prerecorded_transcript_through_the_sdk(server: DeepgramServer) -> None:
    stt = DeepgramSTT(api_key=KEY, base_url=server.base_url, timeout_s=2.0)
    server.script("Open the dock door.")
    assert await stt.transcribe(tone(1.0)) == "Open the dock door."
    # A batch is one request per clip; unscripted, the server's text is a function of the audio.
    texts = await stt.transcribe_batch([tone(0.5), np.zeros(RATE, dtype=np.float32)])
    assert texts == ["0.5 seconds of speech", ""]
    await stt.aclose()

    first = server.http_requests[0]
    assert first.params == {"model": "nova-2", "smart_format": "true"}
    assert first.authorization == f"Token {KEY}"
    assert first.content_type == "application/octet-stream"
    assert first.body_bytes == 44 + RATE * 2  # PCM16 WAV
    assert [r.status for r in server.http_requests] == [200, 200, 200]


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_prerecorded_4xx_is_not_retryable_and_not_retried(
    server: DeepgramServer, status: int
) -> None:
    key = "wrong-key" if status == 401 else KEY
    stt = DeepgramSTT(api_key=key, base_url=server.base_url, timeout_s=2.0)
    if status != 401:
        server.fail_next_http(status)
    with pytest.raises(ProviderError, match=f"HTTP {status}") as info:
        await stt.transcribe(tone(0.5))
    assert not isinstance(info.value, TransientProviderError)
    assert info.value.provider == "deepgram"
    assert [r.status for r in server.http_requests] == [status]  # no retry by the SDK
    await stt.aclose()


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_prerecorded_429_and_5xx_are_retryable(server: DeepgramServer, status: int) -> None:
    stt = DeepgramSTT(api_key=KEY, base_url=server.base_url, timeout_s=2.0)
    server.fail_next_http(status)
    with pytest.raises(TransientProviderError) as info:
        await stt.transcribe(tone(0.5))
    assert info.value.status == status
    assert [r.status for r in server.http_requests] == [status]  # retrying is the caller's call
    assert await stt.transcribe(tone(0.5)) == "0.5 seconds of speech"  # and a retry works
    await stt.aclose()


async def test_prerecorded_timeout_is_retryable(server: DeepgramServer) -> None:
    server.http_delay_s = 3.0
    stt = DeepgramSTT(api_key=KEY, base_url=server.base_url, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="timed out"):
        await stt.transcribe(tone(0.5))
    assert time.monotonic() - started < 1.0  # our timeout, not the base class's backstop
    await stt.aclose()


async def test_the_server_refuses_what_deepgram_refuses(server: DeepgramServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        headers = {"Authorization": f"Token {KEY}", "Content-Type": "application/octet-stream"}
        # Python's True is not a query boolean; raw bytes need an encoding and a rate.
        bad_bool = await http.post("/v1/listen?smart_format=True", headers=headers, content=b"x")
        raw = await http.post("/v1/listen?model=nova-2", headers=headers, content=speech(0.2))
        raw_ok = await http.post(
            "/v1/listen?model=nova-2&encoding=linear16&sample_rate=16000",
            headers=headers,
            content=speech(0.5),
        )
    assert bad_bool.status_code == raw.status_code == 400
    assert bad_bool.json()["err_code"] == "Bad Request"
    assert raw_ok.json()["results"]["channels"][0]["alternatives"][0]["transcript"]


# -- live ------------------------------------------------------------------------------------


async def test_live_interims_then_a_final_after_finalize(server: DeepgramServer) -> None:
    server.script("Open the dock door.")
    server.ws_delay_s = 0.05
    async with live(server, endpointing_ms=None) as session:
        await send(session, speech(1.6))
        heard = await until(session, lambda e: isinstance(e, InterimTranscript))
        await session.finalize()
        heard += await until(session, finalized)

    assert isinstance(heard[0], SpeechStarted) and heard[0].timestamp == 0.0
    interims = [e.text for e in heard if isinstance(e, InterimTranscript)]
    assert interims and all("Open the dock door.".startswith(t) for t in interims)
    final = heard[-1]
    assert isinstance(final, FinalTranscript)
    assert final.text == "Open the dock door." and not final.speech_final
    assert final.finalize_latency_s is not None and 0.05 <= final.finalize_latency_s < 1.0
    assert session.finalize_latencies_s == [final.finalize_latency_s]

    record = server.live[0]
    assert record.params == {
        "model": "nova-2",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "false",
        "utterance_end_ms": "1000",
        "vad_events": "true",
        "smart_format": "true",
    }
    assert record.received == ["Finalize", "CloseStream"]
    assert record.sent[-1] == "Metadata" and record.close_code == 1000


async def test_live_endpointing_and_utterance_end(server: DeepgramServer) -> None:
    server.script("Is dock four free?")
    async with live(server, endpointing_ms=300, utterance_end_ms=1000) as session:
        await send(session, speech(1.0) + silence(1.2))
        heard = await until(session, lambda e: isinstance(e, UtteranceEnd))

    finals = [e for e in heard if isinstance(e, FinalTranscript)]
    assert len(finals) == 1
    assert finals[0].text == "Is dock four free?"
    assert finals[0].speech_final and not finals[0].from_finalize
    assert finals[0].finalize_latency_s is None
    end = heard[-1]
    assert isinstance(end, UtteranceEnd) and end.last_word_end == pytest.approx(1.0)
    assert heard.index(finals[0]) < len(heard) - 1  # the final comes before the UtteranceEnd


async def test_keepalive_keeps_a_silent_session_open(server: DeepgramServer) -> None:
    server.no_audio_timeout_s = 0.4
    async with live(server, keepalive_s=0.1) as session:
        await send(session, speech(0.3) + silence(0.4))  # one utterance, closed by endpointing
        # Silent for 2.5x the server's timeout: only KeepAlives go out.
        await server.wait_until(lambda: server.live[0].keepalives >= 10)
        assert server.open_live == 1
        server.script("Still here.")
        await send(session, speech(0.5))
        await session.finalize()
        heard = await until(session, finalized)

    assert not [e for e in heard if isinstance(e, SttError | Reconnected)]
    assert isinstance(heard[-1], FinalTranscript) and heard[-1].text == "Still here."
    assert len(server.live) == 1 and server.live[0].close_code == 1000


async def test_a_silent_session_without_keepalive_is_closed(server: DeepgramServer) -> None:
    server.no_audio_timeout_s = 0.3
    async with live(server, keepalive_s=None) as session:
        await send(session, speech(0.3))
        heard = await until(session, lambda e: isinstance(e, SttError))

    error = heard[-1]
    assert isinstance(error, SttError) and error.code == 1011 and error.recoverable
    assert "net0001" in error.message
    assert server.live[0].close_code == 1011 and server.live[0].close_reason == NET_0001


async def test_reconnects_after_a_mid_stream_1011(server: DeepgramServer) -> None:
    server.script("First words", "Second try.")
    async with live(server) as session:
        await send(session, speech(0.6))
        await until(session, lambda e: isinstance(e, InterimTranscript))
        assert await server.drop_live() == 1
        heard = await until(session, lambda e: isinstance(e, Reconnected))
        await send(session, speech(0.6))
        await session.finalize()
        heard += await until(session, finalized)

    drop = next(e for e in heard if isinstance(e, SttError))
    assert drop.code == 1011 and drop.recoverable
    assert isinstance(heard[heard.index(drop) + 1], Reconnected)
    final = heard[-1]
    assert isinstance(final, FinalTranscript) and final.text == "Second try."
    assert final.finalize_latency_s is not None
    assert session.reconnects == 1 and len(server.live) == 2


async def test_gives_up_after_three_quick_failures(server: DeepgramServer) -> None:
    async with live(server) as session:
        await server.wait_until(lambda: server.open_live == 1)
        server.fail_next_handshake(503, 503)
        await server.drop_live()
        heard = await until(session, lambda e: isinstance(e, Closed))
        with pytest.raises(TransientProviderError, match="gave up"):
            await session.send(speech(0.1))

    errors = [e for e in heard if isinstance(e, SttError)]
    assert errors[0].code == 1011 and errors[0].recoverable
    assert "gave up" in errors[-1].message and not errors[-1].recoverable
    assert not [e for e in heard if isinstance(e, Reconnected)]
    assert server.handshakes == 3  # the first socket, then two refused reconnects


async def test_no_reconnect_after_a_401(server: DeepgramServer) -> None:
    bad = DeepgramLiveSession(api_key="wrong-key", base_url=server.base_url)
    with pytest.raises(ProviderError, match="HTTP 401") as info:
        await bad.__aenter__()
    assert not isinstance(info.value, TransientProviderError)
    assert server.handshakes == 1

    async with live(server) as session:  # a key revoked while the session runs
        await server.wait_until(lambda: server.open_live == 1)
        server.fail_next_handshake(401)
        await server.drop_live()
        heard = await until(session, lambda e: isinstance(e, Closed))
        with pytest.raises(ProviderError, match="HTTP 401") as after:
            await session.finalize()
        assert not isinstance(after.value, TransientProviderError)

    refused = [e for e in heard if isinstance(e, SttError)][-1]
    assert refused.code == 401 and not refused.recoverable
    assert server.handshakes == 3  # the bad key, the session's socket, one refused reconnect


async def test_a_handshake_5xx_at_start_is_retryable(server: DeepgramServer) -> None:
    server.fail_next_handshake(503)
    with pytest.raises(TransientProviderError) as info:
        async with live(server):
            pass
    assert info.value.status == 503
