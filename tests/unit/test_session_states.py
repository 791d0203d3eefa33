"""The voice session's state machine over scripted providers (tests/fakes.py).

Real synthesized speech goes in (so webrtcvad sees real speech and pauses), but STT, LLM
and TTS are fakes: the tests hold a reply mid-way with gates instead of racing real
models, so barge-in, speculation and the preemptive gate behave the same on any machine.
The real-model tests are in test_session.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import pytest

from pipeline.config import SessionLimits, SessionOptions
from pipeline.errors import SpeculativeWriteRefused
from pipeline.tools.registry import ToolResult
from pipeline.tools.router import ToolCall
from pipeline.types import ChatMessage, ToolUse, TurnRecord
from pipeline.voice.session import SessionClosed
from pipeline.voice.vad import RATE
from tests.fakes import FakeChat, FakeStt, FakeTools, FakeTts, fake_backend
from tests.session_driver import FRAME, SYSTEM, Received, Sessions, stream
from tests.speech import QUESTIONS, pcm16k, silence

LIMIT_S = 10.0  # generous: every wait below is for in-process fakes, never for a model

ASKED = "Where is load four two seven?"
# Held after 9 words, its first clause "Load four two seven left Denver" (cut at 32 chars)
# has been spoken and the rest not yet generated.
LONG = (
    "Load four two seven left Denver at noon, and it is on time. It reaches the north yard by six."
)
FIRST_CLAUSE = "Load four two seven left Denver"
HELD_AFTER = 9


# ----- speech -------------------------------------------------------------------------


def frames_only(pcm: bytes) -> bytes:
    """`pcm` cut to whole 20 ms frames, so what follows starts on a frame boundary."""
    return pcm[: len(pcm) // FRAME * FRAME]


def question(i: int = 3) -> bytes:
    """A spoken question with the silence around it that ends the turn (300 ms hangover)."""
    return frames_only(silence(200) + pcm16k(QUESTIONS[i]) + silence(600))


def talking(i: int = 3) -> bytes:
    """A spoken question without the silence after it: the turn has not ended."""
    return frames_only(silence(200) + pcm16k(QUESTIONS[i], trim=True))


def blip() -> bytes:
    """160 ms of voice: a turn starts (60 ms) but it is shorter than min_speech_ms (200)."""
    return frames_only(silence(200) + pcm16k("Yes.", trim=True)[: 160 * 32] + silence(500))


# ----- session harness ----------------------------------------------------------------


@pytest.fixture
async def sessions() -> AsyncIterator[Sessions]:
    opened = Sessions()
    yield opened
    for session in opened.opened:
        await session.close()


async def wait_set(event: asyncio.Event) -> None:
    async with asyncio.timeout(LIMIT_S):
        await event.wait()


async def settle() -> None:
    """Let every task that is ready run (nothing here waits on a clock)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def assert_idle() -> None:
    """Nothing the session started is still running (no leaked speculation or reply)."""
    await settle()
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not left, left


async def played(got: Received) -> None:
    """Wait out the client's playback of every reply sent so far (it plays in real time),
    so the next speech is a new turn, not a barge-in on audio still playing."""
    sent_s = sum(len(data) for kind, data in got.items if kind == "audio") / 2 / RATE
    await asyncio.sleep(sent_s + 0.01)


def as_pcm(audio: np.ndarray) -> bytes:
    """The PCM16 a transcription was given (exact inverse of the session's conversion)."""
    return (audio * 32768).round().astype("<i2").tobytes()


def position(got: Received, event: dict[str, Any]) -> int:
    return next(i for i, (kind, v) in enumerate(got.items) if kind == "event" and v is event)


def audio_bytes(items: list[tuple[str, Any]]) -> int:
    return sum(len(data) for kind, data in items if kind == "audio")


def reply_to(script: dict[str, str]) -> Callable[[list[ChatMessage]], str]:
    """FakeChat replies chosen by the user's last message."""
    return lambda messages: script[messages[-1].content]


# ----- a normal turn ------------------------------------------------------------------


async def test_a_turn_in_order_with_speculation_and_the_turn_record(sessions: Sessions) -> None:
    reply = "It left Denver at noon, and it is on time. It reaches the north yard by six."
    stt, chat, tts = FakeStt(transcripts=ASKED), FakeChat(replies=reply), FakeTts()
    turns: list[TurnRecord] = []
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat, tts=tts), turns=turns)
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)

    types = got.types()
    first_delta = types.index("response.text.delta")
    assert types[:first_delta] == [
        "session.created",
        "speech.started",
        "speech.stopped",
        "transcript.final",
    ]
    assert first_delta < types.index("response.audio.started")
    assert types[-1] == "response.done"
    assert set(types[first_delta:-1]) == {"response.text.delta", "response.audio.started"}
    # Audio only between response.audio.started and response.done, in frames of <= 200 ms.
    started_at = position(got, got.events("response.audio.started")[0])
    assert audio_bytes(got.items[:started_at]) == 0
    audio = [data for kind, data in got.items if kind == "audio"]
    assert audio and all(len(frame) <= RATE // 5 * 2 for frame in audio)
    assert b"".join(audio) == b"".join(tts.pcm(text) for text in tts.texts)
    audio_ms = sum(tts.duration_s(t) for t in tts.texts) * 1000
    assert done["audio_ms"] == pytest.approx(audio_ms, abs=0.1)

    stopped = got.events("speech.stopped")[0]
    assert not stopped["ignored"] and stopped["speech_ms"] > 1000
    final = got.events("transcript.final")[0]
    deltas = got.events("response.text.delta")
    assert final["text"] == ASKED == done["transcript"]
    assert "".join(d["delta"] for d in deltas) == reply == done["text"]
    assert " ".join(tts.texts) == reply  # spoken clause by clause
    assert len(tts.texts) > 1
    ids = {final["response_id"], done["response_id"], *(d["response_id"] for d in deltas)}
    assert ids == {done["response_id"]}

    # The turn was answered from the speculative transcript and the preemptive reply: STT ran
    # at the pause before the end of turn, not again after it.
    latency = done["latency"]
    assert latency["speculative_stt_used"] and latency["preemptive_llm_used"]
    assert stt.returned and len(stt.returned) == len(stt.calls)
    assert stt.durations_s[-1] > 1.0
    answered = chat.stream_for(ASKED)
    assert answered.state == "finished"
    assert answered.messages == [ChatMessage("system", SYSTEM), ChatMessage("user", ASKED)]
    assert chat.finished == 1 and chat.started - chat.cancelled == 1
    for key in ("turn_detected_ms", "stt_ms", "llm_first_token_ms", "first_clause_ms"):
        assert latency[key] is not None, key
    assert latency["llm_first_token_ms"] <= latency["first_clause_ms"]
    assert latency["tts_first_audio_ms"] <= latency["first_audio_sent_ms"]

    assert session.history == [ChatMessage("user", ASKED), ChatMessage("assistant", reply)]
    (turn,) = turns
    assert turn.conversation_id == session.conversation_id
    assert turn.turn_id == done["response_id"]
    assert (turn.user_text, turn.assistant_text) == (ASKED, reply)
    assert not turn.interrupted and turn.tool_use is None
    assert turn.timings == latency
    assert (
        done["providers"]
        == latency["providers"]
        == {
            "stt": "fake-stt",
            "llm": "fake-llm",
            "tts": "fake-tts",
        }
    )
    await assert_idle()


async def test_the_conversation_history_and_system_prompt_reach_the_llm(
    sessions: Sessions,
) -> None:
    past = [ChatMessage("user", "Hello."), ChatMessage("assistant", "Hi, how can I help?")]
    chat = FakeChat(replies="On time.")
    session, got = await sessions.open(
        fake_backend(stt=FakeStt(transcripts=ASKED), chat=chat),
        history=past,
        conversation_id="conv_states",
        system_prompt="Answer like a pirate.",
    )
    created = got.events("session.created")[0]
    assert created["conversation_id"] == "conv_states" and created["history_turns"] == 1
    assert created["output_audio"]["sample_rate"] == 16_000
    await stream(session, question())
    await got.wait_for("response.done", limit_s=LIMIT_S)
    system = ChatMessage("system", "Answer like a pirate.")
    assert chat.stream_for(ASKED).messages == [system, *past, ChatMessage("user", ASKED)]
    assert session.history[2:] == [ChatMessage("user", ASKED), ChatMessage("assistant", "On time.")]


@pytest.mark.parametrize("stt_gated", [True, False], ids=["stt-in-flight", "stt-done"])
async def test_a_pause_mid_utterance_drops_the_speculation(
    sessions: Sessions, stt_gated: bool
) -> None:
    """Speech after a pause longer than the onset (60 ms), shorter than the hangover (300 ms):
    the transcription and the reply started at the pause are dropped; one turn is answered,
    for the whole utterance."""
    first = frames_only(pcm16k(QUESTIONS[2], trim=True))
    second = frames_only(pcm16k(QUESTIONS[3], trim=True))
    whole_s = (len(first) + len(second)) / 2 / RATE + 0.2
    gate = asyncio.Event() if stt_gated else None
    stt = FakeStt(
        # the whole utterance is recognised as such; any shorter part as a fragment
        transcripts=lambda audio: "whole" if len(audio) / RATE >= whole_s else "fragment",
        gate=gate,
    )
    chat = FakeChat(replies="Answered.")
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat))
    await stream(session, silence(200) + first + silence(200) + second + silence(500))
    await got.wait_for("speech.stopped", limit_s=LIMIT_S)

    # At least the pause and the end of turn started a speculative transcription each.
    assert len(stt.calls) >= 2
    assert all(d < whole_s for d in stt.durations_s[:-1]) and stt.durations_s[-1] >= whole_s
    if gate is not None:
        # Every one but the last was still running when speech resumed: cancelled.
        assert stt.cancelled == len(stt.calls) - 1
        assert not stt.returned and not got.events("transcript.final")
        gate.set()
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    await settle()
    assert len(got.events("speech.started")) == len(got.events("speech.stopped")) == 1
    assert [e["text"] for e in got.events("transcript.final")] == ["whole"]
    assert done["transcript"] == "whole"
    # One reply reached the client, to the whole utterance. A preemptive reply to a
    # fragment may have been generated behind the gate (or cut), but none of it was sent.
    assert [c.asked for c in chat.streams if c.state == "finished"][-1] == "whole"
    assert {c.asked for c in chat.streams} <= {"whole", "fragment"}
    deltas = got.events("response.text.delta")
    assert deltas and {d["response_id"] for d in deltas} == {done["response_id"]}
    assert len(got.events("response.done")) == 1 and not got.events("response.cancelled")
    assert done["latency"]["speculative_stt_used"] and done["latency"]["preemptive_llm_used"]
    await assert_idle()  # the dropped preemptive replies are gone, not waiting forever


@pytest.mark.parametrize(
    ("heard", "smart", "ends_after_ms"),
    [
        ("Which dock doors are open right now?", True, 200),  # a whole request: sooner
        ("Which dock doors are open in the", True, 1000),  # unfinished: waits for the rest
        ("Dock doors", True, 300),  # can't tell: the configured hangover
        ("Which dock doors are open right now?", False, 300),
        ("Which dock doors are open in the", False, 300),
    ],
)
async def test_the_pause_lasts_as_long_as_its_words_need(
    sessions: Sessions, heard: str, smart: bool, ends_after_ms: int
) -> None:
    """The speculative transcript at the pause sets how much silence ends the turn."""
    stt = FakeStt(transcripts=heard)
    session, got = await sessions.open(fake_backend(stt=stt), smart_end_of_turn=smart)
    await stream(session, talking(1) + silence(80))  # the pause began: speculation started
    await settle()
    assert stt.returned and len(stt.returned) == len(stt.calls)  # the pause's words are known
    await stream(session, silence(ends_after_ms - 80 - 20))
    assert not got.events("speech.stopped")
    await stream(session, silence(20))
    stopped = await got.wait_for("speech.stopped", limit_s=LIMIT_S)
    assert not stopped["ignored"]
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == heard
    await assert_idle()


async def test_a_pause_whose_words_are_not_known_yet_waits_for_them(sessions: Sessions) -> None:
    """A transcript slower than the hangover: the pause holds (up to incomplete_silence_ms)
    until the words are known, then ends at once if they are a whole request."""
    gate = asyncio.Event()
    stt = FakeStt(transcripts="Which dock doors are open right now?", gate=gate)
    session, got = await sessions.open(fake_backend(stt=stt), smart_end_of_turn=True)
    await stream(session, talking(1) + silence(600))  # past the 300 ms hangover
    await settle()
    assert not got.events("speech.stopped")
    gate.set()  # already 600 ms into the pause: over now, with no further frame
    assert not (await got.wait_for("speech.stopped", limit_s=LIMIT_S))["ignored"]
    await got.wait_for("response.done", limit_s=LIMIT_S)

    # Never longer than incomplete_silence_ms, whatever the recogniser's delay.
    gate.clear()
    await played(got)
    await stream(session, talking(2) + silence(980))
    await settle()
    assert len(got.events("speech.stopped")) == 1
    await stream(session, silence(20))
    await got.wait_for("speech.stopped", count=2, limit_s=LIMIT_S)
    gate.set()
    await got.wait_for("response.done", count=2, limit_s=LIMIT_S)
    await assert_idle()


@pytest.mark.parametrize(
    ("speculative", "preemptive"), [(False, False), (True, False), (False, True)]
)
async def test_speculation_and_preemption_off(
    sessions: Sessions, speculative: bool, preemptive: bool
) -> None:
    stt, chat = FakeStt(transcripts=ASKED), FakeChat(replies="On time.")
    session, got = await sessions.open(
        fake_backend(stt=stt, chat=chat),
        speculative_stt=speculative,
        preemptive_llm=preemptive,
    )
    # 160 ms after the speech: past the pause onset (60 ms), before the end of turn (300 ms,
    # or 200 once the pause's transcript reads as a whole request).
    await stream(session, talking() + silence(160))
    await settle()
    assert not got.events("speech.stopped")
    paused = len(stt.calls)  # transcribed at the pause, or not yet
    assert paused >= 1 if speculative else paused == 0
    await stream(session, silence(440))
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    # Not transcribed again at the end of turn when the pause's transcription is used.
    assert len(stt.calls) == (paused if speculative else 1)
    # The whole utterance, its onset included (the pre-roll before the VAD triggered).
    speech = talking()[len(silence(200)) :]
    assert speech in as_pcm(stt.calls[-1])
    assert done["latency"]["speculative_stt_used"] is speculative
    assert done["latency"]["preemptive_llm_used"] is False  # preemption needs speculation
    assert done["transcript"] == ASKED and chat.started == 1
    await assert_idle()


async def test_a_preemptive_reply_generates_behind_the_gate(sessions: Sessions) -> None:
    """docs/sessions.md: `preemptive_llm` starts the reply (LLM and TTS) on the speculative
    transcript, held until the turn really ends."""
    gate = asyncio.Event()
    chat = FakeChat(replies="On time.", gate=gate, pause_after=1)
    session, got = await sessions.open(fake_backend(stt=FakeStt(transcripts=ASKED), chat=chat))
    await stream(session, talking() + silence(200))  # paused, the turn not yet over
    async with asyncio.timeout(1.0):  # milliseconds when it works, on any machine
        await chat.waiting.wait()  # the LLM has started and produced its first word
    assert chat.started == 1
    assert not got.events("transcript.final") and not got.events("response.text.delta")
    await stream(session, silence(400))
    gate.set()
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["latency"]["preemptive_llm_used"]


async def test_an_utterance_shorter_than_min_speech_is_ignored(sessions: Sessions) -> None:
    stt, chat = FakeStt(transcripts=ASKED), FakeChat(replies="On time.")
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat))
    await stream(session, blip())
    await settle()
    assert got.types() == ["session.created", "speech.started", "speech.stopped"]
    stopped = got.events("speech.stopped")[0]
    assert stopped["ignored"] and 0 < stopped["speech_ms"] < 200
    assert not stt.calls and chat.started == 0 and session.history == []
    # A real question right after is answered.
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == ASKED


async def test_an_empty_transcript_gets_no_reply(sessions: Sessions) -> None:
    stt, chat = FakeStt(transcripts=""), FakeChat(replies="On time.")
    turns: list[TurnRecord] = []
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat), turns=turns)
    await stream(session, question())
    final = await got.wait_for("transcript.final", limit_s=LIMIT_S)
    await settle()
    assert final["text"] == ""
    assert chat.started == 0 and session.history == [] and turns == []
    assert not got.events("response.text.delta") and audio_bytes(got.items) == 0


async def test_partial_transcripts_while_speaking(sessions: Sessions) -> None:
    stt = FakeStt(transcripts="Please tell me")
    session, got = await sessions.open(
        fake_backend(stt=stt), partial_transcripts=True, partial_interval_ms=500
    )
    await stream(session, talking())
    await settle()
    partials = got.events("transcript.partial")
    assert partials and all(p["text"] == "Please tell me" for p in partials)
    assert not got.events("speech.stopped")
    stt.transcripts = ASKED
    await stream(session, silence(600))
    final = await got.wait_for("transcript.final", limit_s=LIMIT_S)
    assert final["text"] == ASKED


async def test_a_partial_transcription_in_flight_at_the_end_of_turn_is_dropped(
    sessions: Sessions,
) -> None:
    gate = asyncio.Event()
    stt = FakeStt(transcripts=ASKED, gate=gate)
    session, got = await sessions.open(
        fake_backend(stt=stt), partial_transcripts=True, partial_interval_ms=500
    )
    await stream(session, talking() + silence(600))
    await got.wait_for("speech.stopped", limit_s=LIMIT_S)
    assert stt.cancelled >= 1  # the partial in flight (and speculation, if any dropped)
    gate.set()
    await got.wait_for("response.done", limit_s=LIMIT_S)
    await settle()
    assert not got.events("transcript.partial")
    assert [e["text"] for e in got.events("transcript.final")] == [ASKED]
    await assert_idle()


# ----- barge-in -----------------------------------------------------------------------


async def test_barge_in_while_generating(sessions: Sessions) -> None:
    gate = asyncio.Event()
    then = "Please tell me the status of the morning delivery."
    chat = FakeChat(
        replies=reply_to({ASKED: LONG, then: "It is loading."}), gate=gate, pause_after=HELD_AFTER
    )
    stt, tts = FakeStt(transcripts=ASKED), FakeTts()
    turns: list[TurnRecord] = []
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat, tts=tts), turns=turns)
    await stream(session, question(0))
    started = await got.wait_for("response.audio.started", limit_s=LIMIT_S)
    await wait_set(chat.waiting)  # mid-reply: the first clause is out, the rest held
    old = started["response_id"]
    assert tts.texts == [FIRST_CLAUSE] and audio_bytes(got.items) == len(tts.pcm(FIRST_CLAUSE))

    stt.transcripts = then
    await stream(session, question(3))  # the user talks over the reply
    cancelled = await got.wait_for("response.cancelled", limit_s=LIMIT_S)
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert cancelled["reason"] == "barge_in" and cancelled["response_id"] == old
    assert cancelled["heard_text"] == FIRST_CLAUSE
    assert done["response_id"] != old and done["transcript"] == then
    # Cut while the user was still speaking, before their turn ended.
    assert position(got, cancelled) < position(got, got.events("speech.stopped")[1])
    # Nothing more of the old reply after the cancel: no audio before the new reply's start.
    after = got.items[position(got, cancelled) + 1 :]
    assert not [v for kind, v in after if kind == "event" and v.get("response_id") == old]
    new_start = position(got, got.events("response.audio.started")[1])
    assert audio_bytes(got.items[position(got, cancelled) : new_start]) == 0
    # The LLM stream of the old reply was cancelled, not left generating.
    old_stream, new_stream = chat.stream_for(ASKED), chat.stream_for(then)
    assert old_stream.state == "cancelled" and old_stream.words == HELD_AFTER
    assert new_stream.state == "finished"
    assert not [c for c in chat.streams if c.state == "running"]
    # History keeps what was heard, and the next turn's prompt carries it.
    heard = [ChatMessage("user", ASKED), ChatMessage("assistant", FIRST_CLAUSE)]
    assert session.history == [
        *heard,
        ChatMessage("user", then),
        ChatMessage("assistant", "It is loading."),
    ]
    assert new_stream.messages == [ChatMessage("system", SYSTEM), *heard, ChatMessage("user", then)]
    cut = [t for t in turns if t.turn_id == old]
    assert cut[-1].interrupted and cut[-1].assistant_text == FIRST_CLAUSE
    assert [(t.turn_id, t.interrupted) for t in turns if t.turn_id != old] == [
        (done["response_id"], False)
    ]
    assert not got.events("error")
    await assert_idle()


async def test_barge_in_while_the_sent_reply_still_plays(sessions: Sessions) -> None:
    """The server sends audio faster than real time: the user can cut the playback after
    the reply was fully generated and sent, and hears only a prefix of it."""
    reply = "Forklifts must be inspected before every shift. Keep the forks low and look back."
    tts = FakeTts(ms_per_char=300.0)  # the first clause alone plays for seconds
    chat = FakeChat(replies=reply)
    turns: list[TurnRecord] = []
    session, got = await sessions.open(
        fake_backend(stt=FakeStt(transcripts=ASKED), chat=chat, tts=tts), turns=turns
    )
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)  # all generated and sent
    assert len(tts.texts) > 1 and done["audio_ms"] > 10_000
    assert session.history[1] == ChatMessage("assistant", reply)

    await stream(session, talking())
    cancelled = await got.wait_for("response.cancelled", limit_s=LIMIT_S)
    assert cancelled["reason"] == "barge_in" and cancelled["response_id"] == done["response_id"]
    heard = cancelled["heard_text"]
    assert heard == tts.texts[0]  # playing when cut; the later clauses had not started
    assert reply.startswith(heard) and len(heard) < len(reply)
    assert session.history == [ChatMessage("user", ASKED), ChatMessage("assistant", heard)]
    assert chat.cancelled == 0 and chat.finished == 1
    # Recorded complete when sent, then re-recorded as interrupted with what was heard.
    assert [(t.interrupted, t.assistant_text) for t in turns] == [(False, reply), (True, heard)]
    assert not got.events("error")


async def test_speech_shorter_than_min_speech_does_not_barge_in(sessions: Sessions) -> None:
    gate = asyncio.Event()
    chat = FakeChat(replies=LONG, gate=gate, pause_after=HELD_AFTER)
    session, got = await sessions.open(fake_backend(stt=FakeStt(transcripts=ASKED), chat=chat))
    await stream(session, question())
    await wait_set(chat.waiting)
    await stream(session, blip())
    await settle()
    assert not got.events("response.cancelled") and chat.cancelled == 0
    assert got.events("speech.stopped")[-1]["ignored"]
    gate.set()
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["text"] == LONG and not got.events("error")
    await assert_idle()


async def test_without_barge_in_speech_does_not_cut_but_the_new_turn_does(
    sessions: Sessions,
) -> None:
    gate = asyncio.Event()
    then = "Please tell me the status of the morning delivery."
    chat = FakeChat(
        replies=reply_to({ASKED: LONG, then: "It is loading."}), gate=gate, pause_after=HELD_AFTER
    )
    stt = FakeStt(transcripts=ASKED)
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat), barge_in=False)
    await stream(session, question(0))
    old = (await got.wait_for("response.audio.started", limit_s=LIMIT_S))["response_id"]
    await wait_set(chat.waiting)

    stt.transcripts = then
    await stream(session, talking(3))  # seconds of speech over the reply
    await settle()
    assert not got.events("response.cancelled") and chat.cancelled == 0

    await stream(session, silence(600))  # the user's turn ends: the old reply gives way
    cancelled = await got.wait_for("response.cancelled", limit_s=LIMIT_S)
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert cancelled["reason"] == "new_turn" and cancelled["response_id"] == old
    assert cancelled["heard_text"] == FIRST_CLAUSE
    stopped, final = got.events("speech.stopped")[1], got.events("transcript.final")[1]
    assert position(got, stopped) < position(got, cancelled) < position(got, final)
    assert done["transcript"] == then
    assert chat.stream_for(ASKED).state == "cancelled"
    assert chat.stream_for(then).state == "finished"
    assert session.history[:2] == [
        ChatMessage("user", ASKED),
        ChatMessage("assistant", FIRST_CLAUSE),
    ]
    assert not got.events("error")
    await assert_idle()


async def test_without_barge_in_the_reply_finishes_while_the_user_talks(
    sessions: Sessions,
) -> None:
    gate = asyncio.Event()
    chat = FakeChat(replies=LONG, gate=gate, pause_after=HELD_AFTER)
    session, got = await sessions.open(
        fake_backend(stt=FakeStt(transcripts=ASKED), chat=chat), barge_in=False
    )
    speech = talking(3)
    half = len(speech) // 2 // FRAME * FRAME
    await stream(session, question(0))
    await wait_set(chat.waiting)
    await stream(session, speech[:half])  # the user talks while the reply is generated...
    gate.set()
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    await stream(session, speech[half:])  # ...and while it plays
    await settle()
    assert done["text"] == LONG and not got.events("response.cancelled")
    assert chat.stream_for(ASKED).state == "finished" and not got.events("error")


# ----- control messages ---------------------------------------------------------------


async def test_input_end_and_response_cancel(sessions: Sessions) -> None:
    gate = asyncio.Event()
    chat = FakeChat(replies=LONG, gate=gate, pause_after=HELD_AFTER)
    stt = FakeStt(transcripts=ASKED)
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat), vad_silence_ms=3000)
    # Nothing to end or cancel yet: no events.
    await session.on_text('{"type": "input.end"}')
    await session.on_text('{"type": "response.cancel"}')
    assert got.types() == ["session.created"]

    await stream(session, talking() + silence(500))  # a 3 s hangover: the turn goes on
    assert not got.events("speech.stopped")
    await session.on_text('{"type": "input.end"}')
    stopped = await got.wait_for("speech.stopped", limit_s=LIMIT_S)
    assert not stopped["ignored"]
    started = await got.wait_for("response.audio.started", limit_s=LIMIT_S)
    await wait_set(chat.waiting)

    await session.on_text('{"type": "response.cancel"}')
    cancelled = await got.wait_for("response.cancelled", limit_s=LIMIT_S)
    assert cancelled["reason"] == "client" and cancelled["response_id"] == started["response_id"]
    assert cancelled["heard_text"] == FIRST_CLAUSE
    assert chat.stream_for(ASKED).state == "cancelled"
    count = len(got.items)
    gate.set()
    await session.on_text('{"type": "response.cancel"}')  # nothing running: no second event
    await settle()
    assert len(got.items) == count and not got.events("response.done")
    assert session.history == [ChatMessage("user", ASKED), ChatMessage("assistant", FIRST_CLAUSE)]

    # The session goes on: the next turn, ended by input.end again, is answered in full.
    await played(got)
    stt.transcripts = "And load four two eight?"
    await stream(session, talking(2))
    await session.on_text('{"type": "input.end"}')
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == "And load four two eight?" and done["text"] == LONG
    # input.end also reset turn detection: the next speech was a new turn.
    assert len(got.events("speech.started")) == len(got.events("speech.stopped")) == 2
    assert not got.events("error")
    await assert_idle()


# ----- failures -----------------------------------------------------------------------


async def test_an_stt_failure_is_an_error_and_the_session_goes_on(sessions: Sessions) -> None:
    stt = FakeStt(transcripts=ASKED, fail=RuntimeError("whisper crashed"))
    chat = FakeChat(replies="On time.")
    turns: list[TurnRecord] = []
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat), turns=turns)
    await stream(session, question())
    err = await got.wait_for("error", limit_s=LIMIT_S)
    await settle()
    assert err["code"] == "response_failed"
    assert "fake-stt" in err["message"] and "whisper crashed" in err["message"]
    # The speculative transcription failed at the pause; the error waits for the turn's end.
    assert position(got, got.events("speech.stopped")[0]) < position(got, err)
    assert len(got.events("error")) == 1
    assert not got.events("transcript.final") and chat.started == 0
    assert session.history == [] and turns == []

    stt.fail = None
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == ASKED and done["text"] == "On time."
    assert session.history == [ChatMessage("user", ASKED), ChatMessage("assistant", "On time.")]
    await assert_idle()


@pytest.mark.parametrize("fail_after", [0, HELD_AFTER], ids=["before-words", "mid-reply"])
async def test_a_chat_failure_is_an_error_and_the_session_goes_on(
    sessions: Sessions, fail_after: int
) -> None:
    chat = FakeChat(replies=LONG, fail=RuntimeError("llama died"), fail_after=fail_after)
    stt, tts = FakeStt(transcripts=ASKED), FakeTts()
    session, got = await sessions.open(fake_backend(stt=stt, chat=chat, tts=tts))
    await stream(session, question())
    err = await got.wait_for("error", limit_s=LIMIT_S)
    await settle()
    assert err["code"] == "response_failed"
    assert "fake-llm" in err["message"] and "llama died" in err["message"]
    assert got.events("transcript.final")[0]["text"] == ASKED
    assert not got.events("response.done") and not got.events("response.cancelled")
    spoken = [FIRST_CLAUSE] if fail_after else []  # what was complete before the failure
    assert tts.texts == spoken
    assert audio_bytes(got.items) == sum(len(tts.pcm(t)) for t in spoken)

    await played(got)
    chat.fail, then = None, "Please tell me the status of the morning delivery."
    stt.transcripts = then
    await stream(session, question(3))
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["transcript"] == then and done["text"] == LONG
    assert not got.events("response.cancelled")
    assert session.history[-2:] == [ChatMessage("user", then), ChatMessage("assistant", LONG)]
    await assert_idle()


# ----- tools --------------------------------------------------------------------------


class WritesOnConfirm(FakeTools):
    """A tool layer whose answer is a confirmed write: refused on a speculative transcript."""

    def __init__(self) -> None:
        super().__init__(tool_call=ToolCall("schedule_pickup", {}), result=ToolResult("Done."))
        self.finals: list[bool] = []

    async def answer(
        self, messages: Sequence[ChatMessage], *, final: bool = True
    ) -> ToolUse | None:
        self.finals.append(final)
        if not final:
            raise SpeculativeWriteRefused("a write waits for the end of the turn")
        return await super().answer(messages, final=final)


async def test_a_write_waits_for_the_end_of_the_turn(sessions: Sessions) -> None:
    """The preemptive reply starts on the speculative transcript; a turn that would write is
    refused there and answered again once the turn has ended, not before."""
    tools = WritesOnConfirm()
    session, got = await sessions.open(
        fake_backend(stt=FakeStt(transcripts="Yes."), chat=FakeChat(replies="unused"), tools=tools)
    )
    await stream(session, talking() + silence(160))  # paused: the speculative reply starts
    await settle()
    assert tools.finals == [False] and not tools.called  # refused, nothing run
    await stream(session, silence(440))  # the turn ends
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert tools.finals == [False, True] and len(tools.called) == 1
    assert done["text"] == "Done." and done["latency"]["preemptive_llm_used"]
    assert not got.events("error")
    await assert_idle()


async def test_a_tool_use_lands_in_the_turn_record(sessions: Sessions) -> None:
    spoken = "Load 427 is on time, arriving at the north yard at six."
    tools = FakeTools(
        tool_call=ToolCall("load_status", {"load_id": "427"}),
        result=ToolResult(spoken, {"load_id": "427", "eta": "18:00"}),
    )
    chat, tts = FakeChat(replies="not used"), FakeTts()
    turns: list[TurnRecord] = []
    session, got = await sessions.open(
        fake_backend(stt=FakeStt(transcripts=ASKED), chat=chat, tts=tts, tools=tools),
        turns=turns,
    )
    await stream(session, question())
    done = await got.wait_for("response.done", limit_s=LIMIT_S)
    assert done["text"] == spoken and " ".join(tts.texts) == spoken  # read out verbatim
    assert chat.started == 0 and tools.routed == [ASKED]
    assert done["providers"]["llm"] == "tools"  # a tool's sentence, no model's words
    assert tools.called == [ToolCall("load_status", {"load_id": "427"})]
    (turn,) = turns
    assert turn.tool_use == ToolUse(
        "load_status", {"load_id": "427"}, spoken, {"load_id": "427", "eta": "18:00"}, True
    )
    assert turn.assistant_text == spoken and not turn.interrupted
    await assert_idle()


# ----- bad input ----------------------------------------------------------------------


async def test_bad_frames_and_messages_get_error_events(sessions: Sessions) -> None:
    session, got = await sessions.open(fake_backend())
    before = session.options
    await session.on_audio(b"\x01\x02\x03")
    await session.on_audio(b"\0" * 6402)
    await session.on_text("not json")
    await session.on_text('{"type": "dance"}')
    await session.on_text("[1, 2]")
    await session.on_text('{"type": 5}')
    await session.on_text('{"type": "session.update", "session": {"vad_silence_ms": 5}}')
    await session.on_text('{"type": "session.update", "session": {"colour": "red"}}')
    await session.on_text('{"type": "session.update", "session": [1]}')
    codes = [e["code"] for e in got.events("error")]
    assert codes == [
        "bad_audio",
        "frame_too_large",
        "bad_json",
        "unknown_type",
        "unknown_type",
        "unknown_type",
        "bad_update",
        "bad_update",
        "bad_update",
    ]
    assert "6402" in got.events("error")[1]["message"]
    assert "session.update" in got.events("error")[3]["message"]  # names the known types
    assert session.options == before and not got.events("session.updated")
    # A frame of exactly the limit (200 ms) is audio, not an error.
    await session.on_audio(b"\0" * 6400)
    assert len(got.events("error")) == len(codes)


async def test_session_update_applies_and_unknown_fields_are_refused(
    sessions: Sessions,
) -> None:
    stt = FakeStt(transcripts=ASKED)
    session, got = await sessions.open(fake_backend(stt=stt))
    # There is no per-session voice (docs/sessions.md): unknown fields are refused.
    await session.on_text(json.dumps({"type": "session.update", "session": {"voice": "joe"}}))
    err = got.events("error")[-1]
    assert err["code"] == "bad_update" and "voice" in err["message"]
    assert session.options == SessionOptions(smart_end_of_turn=False)  # as opened

    await session.on_text(json.dumps({"type": "session.update", "session": {"min_speech_ms": 20}}))
    updated = got.events("session.updated")[0]
    assert updated["options"]["min_speech_ms"] == 20 and session.options.min_speech_ms == 20
    # It takes effect: a 160 ms blip, ignored at the default 200 ms, is now a turn.
    await stream(session, blip())
    assert not got.events("speech.stopped")[0]["ignored"]
    await got.wait_for("transcript.final", limit_s=LIMIT_S)


async def test_session_update_mid_utterance_keeps_the_utterance_whole(
    sessions: Sessions,
) -> None:
    stt = FakeStt(transcripts=ASKED)
    session, got = await sessions.open(fake_backend(stt=stt), speculative_stt=False)
    lead, speech = silence(200), frames_only(pcm16k(QUESTIONS[3], trim=True))
    half = len(speech) // 2 // FRAME * FRAME
    await stream(session, lead + speech[:half])
    await session.on_text('{"type": "session.update", "session": {"vad_silence_ms": 400}}')
    await stream(session, speech[half:] + silence(600))
    await got.wait_for("transcript.final", limit_s=LIMIT_S)
    assert len(got.events("speech.started")) == 1
    # What was transcribed is the speech as streamed, in order.
    (audio,) = stt.calls
    pcm = (audio * 32768).round().astype("<i2").tobytes()
    assert speech in pcm


async def test_audio_faster_than_real_time_is_refused(sessions: Sessions) -> None:
    # Within the burst (2 s by default) a client may run ahead of real time...
    session, got = await sessions.open(fake_backend(), limits=SessionLimits())
    await stream(session, silence(1500))
    # ...but not further: the session must close with 1008.
    with pytest.raises(SessionClosed) as closed:
        await stream(session, silence(10_000))
    assert closed.value.code == 1008 and "faster than real time" in closed.value.reason
    assert not got.events("error")
