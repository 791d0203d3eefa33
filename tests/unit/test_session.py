"""The voice session loop on real models in-process (no Ray, no WebSocket)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.config import AppArgs, SessionLimits, SessionOptions, Settings
from pipeline.providers.in_process import LocalBackend
from pipeline.types import TurnRecord
from pipeline.voice.session import SessionClosed, VoiceSession
from tests.session_driver import Received, stream
from tests.speech import QUESTIONS, pcm16k, silence, wer


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend.build(AppArgs(), Settings().cache_dir)


def make(
    backend: LocalBackend,
    *,
    limits: SessionLimits | None = None,
    turns: list[TurnRecord] | None = None,
    **options: object,
) -> tuple[VoiceSession, Received]:
    got = Received()
    session = VoiceSession(
        backend,
        send_event=got.on_event,
        send_audio=got.on_audio,
        output_rate=backend.sample_rate,
        system_prompt=AppArgs().llm.system_prompt,
        options=SessionOptions(**options),  # type: ignore[arg-type]
        # tests feed faster than real time unless they test exactly that
        limits=limits or SessionLimits(realtime_burst_s=600),
        on_turn=turns.append if turns is not None else None,
    )
    return session, got


async def test_spoken_question_gets_a_spoken_answer(backend: LocalBackend) -> None:
    turns: list[TurnRecord] = []
    session, got = make(backend, turns=turns)
    await session.start()
    await stream(session, silence(200) + pcm16k(QUESTIONS[0]) + silence(600), pace=0.25)
    final = await got.wait_for("transcript.final")
    assert wer(QUESTIONS[0], final["text"]) <= 0.15, final["text"]
    done = await got.wait_for("response.done")
    types = got.types()
    assert types[0] == "session.created" and "speech.started" in types
    assert types.index("speech.stopped") < types.index("transcript.final")
    assert types.index("response.audio.started") < types.index("response.done")
    audio_bytes = sum(len(v) for k, v in got.items if k == "audio")
    assert audio_bytes > 0.5 * backend.sample_rate * 2 and done["text"]
    lat = done["latency"]
    assert lat["speculative_stt_used"] and lat["preemptive_llm_used"]
    assert (
        lat["first_audio_sent_ms"] > 0 and lat["tts_first_audio_ms"] <= lat["first_audio_sent_ms"]
    )
    assert [m.role for m in session.history] == ["user", "assistant"]
    # The turn is handed to the conversation log (which writes it behind the reply).
    (turn,) = turns
    assert turn.conversation_id == session.conversation_id and turn.turn_id == done["response_id"]
    assert turn.user_text == final["text"] and turn.assistant_text == session.history[1].content
    assert not turn.interrupted and turn.timings["stt_ms"] > 0
    await session.close()


async def test_techniques_off_still_answers(backend: LocalBackend) -> None:
    session, got = make(
        backend, speculative_stt=False, preemptive_llm=False, partial_transcripts=False
    )
    await session.start()
    await stream(session, pcm16k(QUESTIONS[2]) + silence(500))
    done = await got.wait_for("response.done")
    assert not done["latency"]["speculative_stt_used"]
    assert not got.events("transcript.partial")
    await session.close()


async def test_partial_transcripts_while_speaking(backend: LocalBackend) -> None:
    session, got = make(backend, partial_transcripts=True, partial_interval_ms=500)
    await session.start()
    await stream(session, pcm16k(QUESTIONS[0]), pace=1.0)
    await stream(session, silence(500), pace=1.0)
    await got.wait_for("transcript.final")
    partials = got.events("transcript.partial")
    assert partials and all(p["text"] for p in partials)
    await session.close()


async def test_a_pause_mid_sentence_is_not_the_end(backend: LocalBackend) -> None:
    session, got = make(backend)
    await session.start()
    first, second = "Which dock doors", "are open right now?"
    pcm = pcm16k(first, trim=True) + silence(160) + pcm16k(second, trim=True) + silence(500)
    await stream(session, pcm)
    final = await got.wait_for("transcript.final")
    assert len(got.events("speech.started")) == 1
    assert wer(f"{first} {second}", final["text"]) <= 0.25, final["text"]
    await session.close()


async def test_barge_in_cancels_and_keeps_what_was_heard(backend: LocalBackend) -> None:
    turns: list[TurnRecord] = []
    session, got = make(
        backend, turns=turns, system_prompt="Answer with a long story of five sentences."
    )
    await session.start()
    await stream(session, pcm16k("Tell me a story about a forklift.") + silence(400))
    await got.wait_for("response.audio.started")
    cut_at = len(got.items)
    await stream(session, pcm16k(QUESTIONS[3]) + silence(400), pace=0.5)
    cancelled = await got.wait_for("response.cancelled")
    assert cancelled["reason"] == "barge_in"
    i = next(i for i, (k, v) in enumerate(got.items) if k == "event" and v is cancelled)
    after = got.items[i + 1 :]
    next_start = next(
        (
            j
            for j, (k, v) in enumerate(after)
            if k == "event" and v["type"] == "response.audio.started"
        ),
        len(after),
    )
    assert not [1 for k, _ in after[:next_start] if k == "audio"]  # nothing more of the old reply
    assert cut_at < i
    await got.wait_for("transcript.final", 2)
    hist = session.history
    assert hist[0].content and hist[1].role == "assistant"
    assert hist[1].content == cancelled["heard_text"]
    cut = [t for t in turns if t.turn_id == cancelled["response_id"]]
    assert cut[-1].interrupted and cut[-1].assistant_text == cancelled["heard_text"]
    await session.close()


async def test_bad_frames_and_messages_get_error_events(backend: LocalBackend) -> None:
    session, got = make(backend)
    await session.start()
    await session.on_audio(b"\x01\x02\x03")
    await session.on_audio(b"\0" * 7000)
    await session.on_text("not json")
    await session.on_text('{"type": "dance"}')
    await session.on_text('{"type": "session.update", "session": {"vad_silence_ms": 5}}')
    await session.on_text('{"type": "session.update", "session": {"colour": "red"}}')
    codes = [e["code"] for e in got.events("error")]
    assert codes == [
        "bad_audio",
        "frame_too_large",
        "bad_json",
        "unknown_type",
        "bad_update",
        "bad_update",
    ]
    await session.on_text('{"type": "session.update", "session": {"vad_silence_ms": 500}}')
    assert (await got.wait_for("session.updated"))["options"]["vad_silence_ms"] == 500
    await session.close()


async def test_audio_faster_than_real_time_is_refused(backend: LocalBackend) -> None:
    session, _ = make(backend, limits=SessionLimits(realtime_burst_s=0.5))
    with pytest.raises(SessionClosed) as closed:
        await stream(session, silence(2000))
    assert closed.value.code == 1008 and "faster than real time" in closed.value.reason


async def test_input_end_and_cancel(backend: LocalBackend) -> None:
    session, got = make(backend, vad_silence_ms=3000)
    await session.start()
    await stream(session, pcm16k(QUESTIONS[5]))
    await session.on_text('{"type": "input.end"}')
    await got.wait_for("response.text.delta")
    await session.on_text('{"type": "response.cancel"}')
    cancelled = await got.wait_for("response.cancelled")
    assert cancelled["reason"] == "client"
    await asyncio.sleep(0.3)
    assert not got.events("response.done")
    await session.close()


async def test_barge_in_after_generation_while_audio_still_plays(backend: LocalBackend) -> None:
    """The server sends audio faster than real time; the user can still cut the playback."""
    session, got = make(backend, system_prompt="Answer in two long sentences.")
    await session.start()
    await stream(session, pcm16k("Tell me about forklift safety.") + silence(400))
    done = await got.wait_for("response.done")  # all generated and sent
    assert done["audio_ms"] > 1500
    await stream(session, pcm16k(QUESTIONS[3]), pace=1.0)  # talk over the playback
    cancelled = await got.wait_for("response.cancelled")
    assert cancelled["response_id"] == done["response_id"]
    heard = cancelled["heard_text"]
    assert heard and len(heard) < len(done["text"])  # the tail was not heard
    assert session.history[1].content == heard
    await session.close()
