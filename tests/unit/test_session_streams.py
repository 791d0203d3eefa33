"""A voice session on streaming providers: Deepgram's live socket (one per session) and
ElevenLabs' multi-context sockets (one context per reply), each through its official SDK (or
our async client on the SDK's types) against the wire-faithful loopback servers of
tests/wire/; the simulated streaming providers the same way.

Real synthesized speech goes in, so our VAD and the Deepgram server's level detector both
hear real speech and pauses; the LLM is the scripted FakeChat (gates, not sleeps). The
per-utterance STT (FakeStt) and per-clause TTS (FakeTts) stay in the backend: they are what
the session falls back to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pipeline.errors import ProviderError
from pipeline.providers.deepgram import DeepgramLiveStreams
from pipeline.providers.elevenlabs import ElevenLabsSocketPool, ElevenLabsStreams
from pipeline.providers.simulated import SimulatedSttStreams, SimulatedTtsStreams
from pipeline.providers.streams import LiveStt, SpeechChunk, TtsStream
from pipeline.types import ChatMessage, TurnRecord
from pipeline.voice.session import VoiceSession
from tests.fakes import FakeChat, FakeStt, FakeTts, fake_backend
from tests.session_driver import Received, stream
from tests.speech import QUESTIONS, pcm16k, silence
from tests.unit.test_session_states import FIRST_CLAUSE, HELD_AFTER, LONG, Sessions, frames_only
from tests.wire.deepgram_server import DeepgramServer
from tests.wire.elevenlabs_server import ElevenLabsServer, synth_pcm

KEY = "dg-key"
ASKED = "Where is load four two seven?"
REPLY = "It left Denver at noon, and it is on time. It reaches the north yard by six."
LIMIT_S = 15.0
# Our VAD speculates at a pause of this length: longer than the gaps between Piper's words,
# so the one speculative Finalize comes at the end of the question.
ONSET_MS = 200


def question(i: int = 3) -> bytes:
    return frames_only(silence(200) + pcm16k(QUESTIONS[i]) + silence(800))


@pytest.fixture
async def deepgram() -> AsyncIterator[DeepgramServer]:
    async with DeepgramServer(api_keys=(KEY,)) as dg:
        dg.transcribe = lambda _voiced_s: ""  # unscripted segments (a word's tail) say nothing
        yield dg


@pytest.fixture
def elevenlabs() -> Iterator[ElevenLabsServer]:
    with ElevenLabsServer() as server:
        yield server


@pytest.fixture
async def pool(elevenlabs: ElevenLabsServer) -> AsyncIterator[ElevenLabsSocketPool]:
    sockets = ElevenLabsSocketPool(
        api_key=elevenlabs.api_key, base_url=elevenlabs.base_url, voice_id="voice-1"
    )
    yield sockets
    await sockets.aclose()


def live_deepgram(dg: DeepgramServer, *, end_of_turn: str = "vad", **kw: Any) -> LiveStt:
    endpointing = end_of_turn == "endpointing"
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": dg.base_url,
        "endpointing_ms": 300 if endpointing else None,
        "utterance_end_ms": 1000 if endpointing else None,
        "backoff_s": (0.01, 0.05),
    } | kw
    grace_s = options.pop("grace_s", 1.5)
    reopen_s = options.pop("reopen_s", (0.01, 0.05))
    return LiveStt(
        DeepgramLiveStreams(**options),
        end_of_turn="endpointing" if endpointing else "vad",
        endpoint_grace_s=grace_s,
        reopen_backoff_s=reopen_s,
    )


@pytest.fixture
async def opened() -> AsyncIterator[Sessions]:
    """Sessions that speculate after `ONSET_MS` of silence."""
    o = Sessions(vad_onset_ms=ONSET_MS)
    yield o
    for session in o.opened:
        await session.close()


def contexts(fake: ElevenLabsServer) -> dict[str, list[dict[str, Any]]]:
    """The messages of each context the ElevenLabs server saw, by context id, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for messages in fake.socket_messages.values():
        for m in messages:
            if "context_id" in m:
                out.setdefault(m["context_id"], []).append(m)
    return out


def audio_of(got: Received) -> bytes:
    return b"".join(data for kind, data in got.items if kind == "audio")


async def until(predicate: Any, limit_s: float = LIMIT_S) -> None:
    """Poll the ElevenLabs server's records: it runs on its own thread, no event to await."""
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def switched(session: VoiceSession, dg: DeepgramServer) -> None:
    """Silence until the newest live socket hears it: the session has switched to the socket
    it reopened (at its first frame between turns once the socket is open)."""
    async with asyncio.timeout(LIMIT_S):
        while not dg.live[-1].audio_bytes:
            await stream(session, silence(20))
            await asyncio.sleep(0.01)


# ----- live STT, our VAD ends the turn (Finalize) -------------------------------------


async def test_vad_mode_partials_finalize_and_one_context_per_reply(
    opened: Sessions,
    deepgram: DeepgramServer,
    elevenlabs: ElevenLabsServer,
    pool: ElevenLabsSocketPool,
) -> None:
    stt, chat = FakeStt(transcripts="not used"), FakeChat(replies=REPLY)
    turns: list[TurnRecord] = []
    session, got = await opened.open(
        fake_backend(stt=stt, chat=chat, tts=FakeTts()),
        live_stt=live_deepgram(deepgram),
        tts_streams=ElevenLabsStreams(pool),
        turns=turns,
    )
    deepgram.script(ASKED)
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)

    # Deepgram heard it: interim results became partials, the speculative Finalize at the
    # pause gave the turn's text, nothing was transcribed whole.
    (socket,) = deepgram.live
    assert socket.params["interim_results"] == "true" and socket.params["endpointing"] == "false"
    partials = [e["text"] for e in got.events("transcript.partial")]
    assert partials and all(ASKED.startswith(p) for p in partials), partials
    assert partials[-1] != ASKED  # interim: the first words, one more each time
    assert got.events("transcript.final")[0]["text"] == ASKED == done["transcript"]
    assert "Finalize" in socket.received and not stt.calls
    assert done["latency"]["speculative_stt_used"] and done["latency"]["stt_streamed"]

    # One ElevenLabs context for the reply: its clauses, each flushed, then closed; the
    # audio the user got is what the server spoke, in order.
    (ctx_messages,) = contexts(elevenlabs).values()
    texts = [m["text"].strip() for m in ctx_messages if m.get("text", " ").strip()]
    assert " ".join(texts) == REPLY and len(texts) > 1
    assert ctx_messages[-1].get("close_context") is True
    assert sum(bool(m.get("flush")) for m in ctx_messages) >= len(texts)
    spoken = [g.text for g in elevenlabs.generations]
    assert audio_of(got) == b"".join(synth_pcm(t, 16_000) for t in spoken)
    assert done["text"] == REPLY and done["latency"]["tts_streamed"]
    assert done["providers"] == {"stt": "deepgram", "llm": "fake-llm", "tts": "elevenlabs"}
    (turn,) = turns
    assert turn.timings["providers"] == done["providers"]
    assert turn.assistant_text == REPLY  # every clause was heard (alignment adds up)

    # A second turn: the same Deepgram socket, a second context on the same ElevenLabs one.
    await asyncio.sleep(done["audio_ms"] / 1000 + 0.05)  # the reply has played
    deepgram.script(QUESTIONS[1])
    await stream(session, question(1))
    second = await got.wait_for("response.done", count=2, limit_s=LIMIT_S)
    assert second["transcript"] == QUESTIONS[1]
    assert len(deepgram.live) == 1 and deepgram.handshakes == 1
    assert len(contexts(elevenlabs)) == 2 and elevenlabs.sockets_opened == 1
    assert session.history[-2:] == [
        ChatMessage("user", QUESTIONS[1]),
        ChatMessage("assistant", REPLY),
    ]


async def test_without_speculation_the_end_of_turn_sends_finalize(
    opened: Sessions, deepgram: DeepgramServer
) -> None:
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts="not used")),
        live_stt=live_deepgram(deepgram),
        speculative_stt=False,
    )
    deepgram.script(ASKED)
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == ASKED
    assert deepgram.live[0].received.count("Finalize") == 1
    assert not done["latency"]["speculative_stt_used"] and done["latency"]["stt_streamed"]


# ----- live STT, the provider's endpointing ends the turn -----------------------------


async def test_endpointing_mode_speech_final_ends_the_turn(
    opened: Sessions, deepgram: DeepgramServer
) -> None:
    # Our VAD's own end of turn waits 10 s for the provider: only Deepgram can end it here.
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts="not used"), chat=FakeChat(replies="On time.")),
        live_stt=live_deepgram(deepgram, end_of_turn="endpointing", grace_s=10.0),
    )
    deepgram.script(ASKED)
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    (socket,) = deepgram.live
    assert socket.params["endpointing"] == "300" and socket.params["utterance_end_ms"] == "1000"
    assert "Finalize" not in socket.received  # the turn ended on speech_final
    assert done["transcript"] == ASKED and done["latency"]["stt_streamed"]
    assert not done["latency"]["speculative_stt_used"]  # no speculation: Deepgram decides
    assert got.events("transcript.partial")


async def test_endpointing_mode_utterance_end_ends_the_turn(
    opened: Sessions, deepgram: DeepgramServer
) -> None:
    # Deepgram's endpointing (5 s) never fires; UtteranceEnd (after 1 s without words) does,
    # and a Finalize settles the words.
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts="not used"), chat=FakeChat(replies="On time.")),
        live_stt=live_deepgram(
            deepgram, end_of_turn="endpointing", endpointing_ms=5000, grace_s=10.0
        ),
    )
    deepgram.script(ASKED)
    await stream(session, question() + silence(600))
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    (socket,) = deepgram.live
    assert socket.sent.index("UtteranceEnd") < len(socket.sent) - 1
    assert socket.received.count("Finalize") == 1
    assert done["transcript"] == ASKED and done["latency"]["stt_streamed"]


# ----- failures -----------------------------------------------------------------------


async def test_a_deepgram_socket_gone_for_good_falls_back_without_losing_the_turn(
    opened: Sessions, deepgram: DeepgramServer
) -> None:
    stt = FakeStt(transcripts=ASKED)
    session, got = await opened.open(
        fake_backend(stt=stt, chat=FakeChat(replies="On time.")),
        live_stt=live_deepgram(deepgram),
    )
    speech = question()
    half = len(speech) // 2 // 640 * 640
    await stream(session, speech[:half])  # mid-utterance...
    deepgram.fail_next_handshake(401, 401, 401)
    assert await deepgram.drop_live() == 1  # ...the socket drops and may not come back
    await deepgram.wait_until(lambda: deepgram.handshakes >= 2)
    await stream(session, speech[half:])
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == ASKED and stt.calls  # transcribed whole
    assert done["providers"]["stt"] == "fake-stt" and not done["latency"]["stt_streamed"]
    assert not got.events("error")
    # The next turns too: the session tried to open a new socket once, refused (401) too,
    # and does not ask Deepgram again.
    await deepgram.wait_until(lambda: deepgram.handshakes >= 3)
    await asyncio.sleep(done["audio_ms"] / 1000 + 0.05)
    await stream(session, question(1))
    second = await got.wait_for("response.done", count=2, limit_s=LIMIT_S)
    assert second["transcript"] == ASKED and deepgram.handshakes == 3


async def test_a_deepgram_socket_given_up_is_reopened_for_the_next_turns(
    opened: Sessions, deepgram: DeepgramServer
) -> None:
    stt = FakeStt(transcripts="not used")
    session, got = await opened.open(
        fake_backend(stt=stt, chat=FakeChat(replies="On time.")),
        live_stt=live_deepgram(deepgram),
    )
    await deepgram.wait_until(lambda: deepgram.open_live == 1)
    # Deepgram's reconnects are refused until it gives up (3 quick failures), then the
    # session's first reopen too (a 503: it tries again); the next handshake succeeds.
    deepgram.fail_next_handshake(503, 503, 503)
    assert await deepgram.drop_live() == 1
    await deepgram.wait_until(lambda: deepgram.handshakes == 5 and deepgram.open_live == 1)
    await switched(session, deepgram)
    deepgram.script(ASKED)
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == ASKED and done["latency"]["stt_streamed"] and not stt.calls
    assert done["providers"]["stt"] == "deepgram" and len(deepgram.live) == 2


async def test_a_refused_live_socket_at_the_start_transcribes_utterances(
    opened: Sessions, deepgram: DeepgramServer
) -> None:
    deepgram.fail_next_handshake(401)  # a 4xx: not tried again for this session
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts=ASKED)), live_stt=live_deepgram(deepgram)
    )
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == ASKED and done["providers"]["stt"] == "fake-stt"
    assert deepgram.handshakes == 1


async def test_a_live_socket_unreachable_at_the_start_is_opened_later(
    opened: Sessions, deepgram: DeepgramServer
) -> None:
    deepgram.fail_next_handshake(503)
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts="not used")), live_stt=live_deepgram(deepgram)
    )
    await deepgram.wait_until(lambda: deepgram.open_live == 1)
    await switched(session, deepgram)
    deepgram.script(ASKED)
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == ASKED and done["providers"]["stt"] == "deepgram"
    assert deepgram.handshakes == 2


async def test_a_tts_stream_that_cannot_open_speaks_clause_by_clause(
    opened: Sessions, elevenlabs: ElevenLabsServer, pool: ElevenLabsSocketPool
) -> None:
    elevenlabs.fail_next(503, on="ws")
    tts = FakeTts()
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts=ASKED), chat=FakeChat(replies=REPLY), tts=tts),
        tts_streams=ElevenLabsStreams(pool),
    )
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert " ".join(tts.texts) == REPLY and audio_of(got) == b"".join(map(tts.pcm, tts.texts))
    assert done["providers"]["tts"] == "fake-tts" and not done["latency"]["tts_streamed"]


class SendFails:
    """A scripted TTS stream that opens, then refuses its first text (before any audio)."""

    def __init__(self) -> None:
        self._ended = asyncio.Event()

    async def send(self, text: str) -> None:
        raise ProviderError("the context was dropped", provider="scripted-tts")

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        self._ended.set()

    async def cancel(self) -> None:
        self._ended.set()

    async def chunks(self) -> AsyncIterator[SpeechChunk]:
        await self._ended.wait()
        return
        yield  # an async generator that ends without audio


class SendFailsStreams:
    name, sample_rate = "scripted-tts", 16_000

    async def open(self) -> TtsStream:
        return SendFails()

    async def aclose(self) -> None:
        return None


async def test_an_llm_failure_after_the_tts_stream_failed_still_ends_the_reply(
    opened: Sessions,
) -> None:
    """The reply fell back to clause-by-clause TTS, then the LLM failed: an error event, not
    a reply waiting forever for clauses that never come."""
    chat = FakeChat(
        replies=REPLY, token_delay_s=0.05, fail=ProviderError("model gone", provider="x")
    )
    chat.fail_after = 8  # after the first clause, "It left Denver at noon,"
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts=ASKED), chat=chat), tts_streams=SendFailsStreams()
    )
    await stream(session, question())
    failed = await got.wait_for("error", limit_s=LIMIT_S)
    assert failed["code"] == "response_failed"
    assert not got.events("response.done")


# ----- barge-in -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["barge_in", "client"])
async def test_a_cut_reply_cancels_its_context(
    opened: Sessions,
    deepgram: DeepgramServer,
    elevenlabs: ElevenLabsServer,
    pool: ElevenLabsSocketPool,
    how: str,
) -> None:
    gate = asyncio.Event()
    chat = FakeChat(replies=LONG, gate=gate, pause_after=HELD_AFTER)
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts="not used"), chat=chat),
        live_stt=live_deepgram(deepgram),
        tts_streams=ElevenLabsStreams(pool),
    )
    deepgram.script(ASKED, QUESTIONS[1])
    await stream(session, question())
    started = await got.wait_for("response.audio.started", limit_s=LIMIT_S)
    async with asyncio.timeout(LIMIT_S):
        await chat.waiting.wait()  # the first clause is out, the rest held
    (ctx_id,) = contexts(elevenlabs)
    if how == "barge_in":
        await stream(session, question(1))  # the user talks over the reply
    else:
        await session.on_text('{"type": "response.cancel"}')
    cancelled = await got.wait_for("response.cancelled", limit_s=LIMIT_S)
    assert cancelled["response_id"] == started["response_id"] and cancelled["reason"] == how
    assert cancelled["heard_text"] == FIRST_CLAUSE  # its speech had started; the rest unsaid
    await until(lambda: contexts(elevenlabs)[ctx_id][-1].get("close_context") is True)
    assert chat.stream_for(ASKED).state == "cancelled"
    if how == "barge_in":
        gate.set()  # the new reply is held too
        done = await got.wait_for("response.done", limit_s=LIMIT_S)
        assert done["transcript"] == QUESTIONS[1] and done["text"] == LONG
        assert len(contexts(elevenlabs)) == 2  # the new reply got its own
    assert session.history[:2] == [
        ChatMessage("user", ASKED),
        ChatMessage("assistant", FIRST_CLAUSE),
    ]


# ----- simulated streaming providers --------------------------------------------------


async def test_simulated_streams_serve_a_session(opened: Sessions) -> None:
    stt_streams = SimulatedSttStreams(jitter=0, final_ms=150)
    tts_streams = SimulatedTtsStreams(jitter=0, first_audio_ms=150, speed=20)
    session, got = await opened.open(
        fake_backend(stt=FakeStt(transcripts="not used"), chat=FakeChat(replies=REPLY)),
        live_stt=LiveStt(stt_streams),
        tts_streams=tts_streams,
    )
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] in QUESTIONS and got.events("transcript.partial")
    assert done["providers"] == {
        "stt": "simulated-stt",
        "llm": "fake-llm",
        "tts": "simulated-tts",
    }
    (tts,) = tts_streams.opened
    assert " ".join(tts.texts) == REPLY
    assert len(audio_of(got)) == sum(2 * (16_000 * 65 * len(t) // 1000) for t in tts.texts)
    assert done["latency"]["tts_first_audio_ms"] >= done["latency"]["first_clause_ms"] + 100
