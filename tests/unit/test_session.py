"""The voice session loop on real models in-process (no Ray, no WebSocket): only what needs
the models themselves. A spoken question gets an accurate transcript and a spoken answer
with sane latency fields; a pause mid-sentence is transcribed as one utterance; partial
transcripts arrive while the user speaks. The state machine (event order, speculation,
barge-in, cancel, errors, limits) is tested over scripted providers, independent of CPU
speed, in test_session_states.py.
"""

from __future__ import annotations

import pytest

from pipeline.config import AppArgs, SessionLimits, SessionOptions, Settings
from pipeline.providers.in_process import LocalBackend
from pipeline.types import TurnRecord
from pipeline.voice.session import VoiceSession
from tests.session_driver import Received, stream
from tests.speech import QUESTIONS, pcm16k, silence, wer


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend.build(AppArgs(), Settings().cache_dir)


def make(
    backend: LocalBackend, *, turns: list[TurnRecord] | None = None, **options: object
) -> tuple[VoiceSession, Received]:
    got = Received()
    session = VoiceSession(
        backend,
        send_event=got.on_event,
        send_audio=got.on_audio,
        output_rate=backend.sample_rate,
        system_prompt=AppArgs().llm.system_prompt,
        options=SessionOptions(**options),  # type: ignore[arg-type]
        limits=SessionLimits(realtime_burst_s=600),  # tests feed faster than real time
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
