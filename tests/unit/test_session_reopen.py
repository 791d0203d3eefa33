"""A voice session whose live STT stream was lost opens a new one in the background and uses
it from the next turn: scripted live streams (tests/fakes.py: simulated streams the test can
give up, opens it can refuse or hold), real speech, FakeStt behind them as the fallback.

Backoff waits are tens of milliseconds; what a test waits for is an event (a stream opened,
an open asked for, a reply done), never a guess at how long the machine takes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipeline.errors import ProviderError, TransientProviderError
from pipeline.providers.streams import LiveStt
from pipeline.voice.session import VoiceSession
from tests.fakes import FakeChat, FakeStt, FakeSttStreams, fake_backend
from tests.session_driver import FRAME, Received, stream
from tests.speech import QUESTIONS, pcm16k, silence
from tests.unit.test_session_states import (
    LIMIT_S,
    Sessions,
    as_pcm,
    assert_idle,
    frames_only,
    wait_set,
)

HEARD_WHOLE = "Transcribed whole."
BACKOFF_S = (0.01, 0.04)
# Speculation only at the end of a question (not at the pauses between Piper's words), as
# in test_session_streams: no speculative Finalize mid-utterance.
ONSET_MS = 200


def question(i: int = 3) -> bytes:
    return frames_only(silence(200) + pcm16k(QUESTIONS[i]) + silence(800))


@pytest.fixture
async def sessions() -> AsyncIterator[Sessions]:
    o = Sessions(vad_onset_ms=ONSET_MS)
    yield o
    for session in o.opened:
        await session.close()


async def open_session(
    sessions: Sessions,
    streams: FakeSttStreams,
    *,
    backoff_s: tuple[float, float] = BACKOFF_S,
    chat: FakeChat | None = None,
) -> tuple[VoiceSession, Received, FakeStt]:
    stt = FakeStt(transcripts=HEARD_WHOLE)
    session, got = await sessions.open(
        fake_backend(stt=stt, chat=chat or FakeChat(replies="On time.")),
        live_stt=LiveStt(streams, reopen_backoff_s=backoff_s),
    )
    return session, got, stt


async def turn(session: VoiceSession, got: Received, pcm: bytes) -> dict[str, Any]:
    """One question, answered: its response.done, after its audio has played (so the next
    speech is a new turn, not a barge-in)."""
    count = len(got.events("response.done")) + 1
    await stream(session, pcm)
    done = await got.wait_for("response.done", count=count, limit_s=LIMIT_S)
    await asyncio.sleep(done["audio_ms"] / 1000 + 0.01)
    return done


def streamed(done: dict[str, Any]) -> bool:
    if done["latency"]["stt_streamed"]:
        assert done["providers"]["stt"] == FakeSttStreams.name
        return True
    assert done["providers"]["stt"] == "fake-stt" and done["transcript"] == HEARD_WHOLE
    return False


async def test_a_lost_stream_is_reopened_and_serves_again_from_a_later_turn(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jarvis")
    streams = FakeSttStreams(
        script=[None, TransientProviderError("HTTP 503", provider="scripted-stt", status=503)]
    )
    session, got, stt = await open_session(sessions, streams)
    assert streamed(await turn(session, got, question(3)))

    streams.gate = asyncio.Event()  # the provider is down: the reopen waits at its handshake
    await streams.opened[0].drop()
    await streams.wait_attempts(2)
    assert not streamed(await turn(session, got, question(1)))  # transcribed whole meanwhile
    assert len(stt.calls) == 1

    streams.gate.set()  # the provider is back: a 503 first, then a stream on the next try
    await streams.wait_attempts(3, opened=2)
    assert streamed(await turn(session, got, question(2)))
    assert len(stt.calls) == 1  # the live stream answered
    assert len(streams.opened[1].audio) >= len(question(2))

    # The loss and the recovery are logged once each; the failed attempt only at debug.
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("jarvis")]
    assert sum("gone" in m for _, m in logged) == 1
    assert [lvl for lvl, m in logged if "is back" in m] == [logging.INFO]
    assert [lvl for lvl, m in logged if "did not reopen" in m] == [logging.DEBUG]


async def test_a_refused_reopen_stops_reopening(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    refused = ProviderError("HTTP 401", provider="scripted-stt")  # not transient: a 4xx
    streams = FakeSttStreams(script=[None, refused])
    session, got, stt = await open_session(sessions, streams)
    await streams.opened[0].drop()
    await streams.wait_attempts(2)
    for i in (3, 1):
        assert not streamed(await turn(session, got, question(i)))
    assert streams.attempts == 2 and len(stt.calls) == 2
    await assert_idle()  # nothing waits to reopen: no task is left but this test
    assert sum("refused to reopen" in r.getMessage() for r in caplog.records) == 1


async def test_a_start_refused_for_a_while_is_reopened(sessions: Sessions) -> None:
    down = TransientProviderError("connect failed", provider="scripted-stt")
    streams = FakeSttStreams(script=[down, down])
    session, got, stt = await open_session(sessions, streams)
    await streams.wait_attempts(3, opened=1)
    assert streamed(await turn(session, got, question(3))) and not stt.calls


async def test_a_stream_lost_again_soon_is_reopened_ever_more_slowly(sessions: Sessions) -> None:
    streams = FakeSttStreams()
    session, _, _ = await open_session(sessions, streams, backoff_s=(0.1, 60.0))
    for i, wait_s in enumerate([0.1, 0.2, 0.4]):
        start = time.monotonic()
        await streams.opened[-1].drop()
        await streams.wait_attempts(i + 2, opened=i + 2)
        assert time.monotonic() - start >= wait_s  # a sleep never ends early
        await stream(session, silence(20))  # between turns: the reopened stream serves
    assert len(streams.opened) == 4


@pytest.mark.parametrize("waiting", ["backoff", "handshake"])
async def test_closing_the_session_while_a_reopen_waits_leaves_no_task(
    sessions: Sessions, waiting: str
) -> None:
    streams = FakeSttStreams()
    backoff_s = (60.0, 60.0) if waiting == "backoff" else BACKOFF_S
    session, got, _ = await open_session(sessions, streams, backoff_s=backoff_s)
    if waiting == "handshake":
        streams.gate = asyncio.Event()  # never set: the handshake hangs
    await streams.opened[0].drop()
    assert not streamed(await turn(session, got, question(3)))  # the stream is lost
    if waiting == "handshake":
        await streams.wait_attempts(2)
    await session.close()
    await assert_idle()
    assert len(streams.opened) == 1
    assert streams.cancelled == int(waiting == "handshake")


async def test_the_reopened_stream_is_used_only_from_the_next_turn(sessions: Sessions) -> None:
    streams = FakeSttStreams()
    session, got, stt = await open_session(sessions, streams)
    first, second = question(3), question(1)
    sent = bytearray()

    async def send(pcm: bytes) -> None:
        sent.extend(pcm)
        await stream(session, pcm)

    half = len(first) // 2 // FRAME * FRAME
    await send(first[:half])  # mid-utterance, the stream is lost and at once reopened
    await streams.opened[0].drop()
    await streams.wait_attempts(2, opened=2)
    await send(first[half:])
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert not streamed(done)  # the turn was not split between two streams
    (whole,) = stt.calls
    await asyncio.sleep(done["audio_ms"] / 1000 + 0.01)
    await send(second)
    assert streamed(await got.wait_for("response.done", count=2, limit_s=LIMIT_S))

    # The new stream heard the audio from a turn boundary on: a tail of what was sent (the
    # last pre-roll first), beginning after the first utterance, and all of the second.
    heard = bytes(streams.opened[1].audio)
    start = len(sent) - len(heard)
    assert bytes(sent[start:]) == heard
    assert start >= bytes(sent).index(as_pcm(whole)) + len(as_pcm(whole))
    assert len(heard) >= len(second)


async def test_a_stream_switched_in_as_speech_begins_hears_it_from_before_its_start(
    sessions: Sessions,
) -> None:
    streams = FakeSttStreams()
    session, got, stt = await open_session(sessions, streams)
    streams.gate = asyncio.Event()
    await streams.opened[0].drop()
    await streams.wait_attempts(2)  # the reopen is held at its handshake
    speech = frames_only(silence(200) + pcm16k(QUESTIONS[3], trim=True) + silence(800))
    onset = 200 * 32 + 2 * FRAME  # then 40 ms of voice: too short for our VAD to start a turn
    await stream(session, speech[:onset])
    streams.gate.set()
    await streams.wait_attempts(2, opened=2)
    await stream(session, speech[onset:])  # the switch comes at its first frame
    assert streamed(await got.wait_for("response.done", limit_s=LIMIT_S)) and not stt.calls
    # The new stream first heard the pre-roll (300 ms): the voice before the switch too.
    assert bytes(streams.opened[1].audio) == speech


async def test_a_stream_lost_while_the_session_closes_is_not_reopened(sessions: Sessions) -> None:
    streams = FakeSttStreams()
    chat = FakeChat(gate=asyncio.Event())  # the reply is held: close() waits for it
    session, _, _ = await open_session(sessions, streams, chat=chat)
    await stream(session, question(3))
    await wait_set(chat.waiting)
    await streams.opened[0].drop()  # read by the stream's reader while close() waits
    await session.close()
    await assert_idle()
    assert streams.attempts == 1
