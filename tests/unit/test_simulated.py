"""Simulated providers: configured by stage, no model loaded, a voice session answers over them."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pipeline.config import AppArgs, LlmArgs, SessionLimits, SimulatedArgs, SttArgs, TtsArgs
from pipeline.providers.build import build_chat, build_stt, build_tts
from pipeline.providers.in_process import LocalBackend
from pipeline.providers.simulated import (
    QUESTIONS,
    REPLIES,
    SimulatedSTT,
    SimulatedSttStream,
    SimulatedTtsStream,
)
from pipeline.providers.streams import (
    FinalTranscript,
    InterimTranscript,
    LiveEvent,
    UtteranceEnd,
    spoken_chars,
)
from pipeline.types import ChatMessage
from pipeline.voice.session import VoiceSession
from tests.session_driver import Received, stream
from tests.speech import QUESTIONS as SPOKEN
from tests.speech import pcm16k, silence


def simulated_args(first_ms: float = 20) -> AppArgs:
    sim = SimulatedArgs(first_ms=first_ms, tokens_per_s=500, jitter=0)
    return AppArgs(
        stt=SttArgs(provider="simulated", simulated=sim),
        llm=LlmArgs(provider="simulated", simulated=sim, tools=False),
        tts=TtsArgs(provider="simulated", simulated=sim),
    )


async def test_each_stage_waits_its_latency_and_answers_the_same_way() -> None:
    args = simulated_args(first_ms=50)
    stt, chat, tts = build_stt(args.stt, None), build_chat(args.llm, None), build_tts(args.tts)  # type: ignore[arg-type]
    audio = np.zeros(16_000, dtype=np.float32)
    start = time.perf_counter()
    heard = await stt.transcribe(audio)
    assert time.perf_counter() - start >= 0.05  # a sleep never ends early
    assert heard in QUESTIONS and heard == await stt.transcribe(audio)  # same audio, same text
    reply = "".join(
        [d async for d in chat.stream([ChatMessage("user", heard)], max_tokens=80, temperature=0)]
    )
    assert reply == REPLIES[QUESTIONS.index(heard)]
    pcm = await tts.synthesize("Dock door three is open.")
    assert len(pcm) == 2 * int(0.065 * len("Dock door three is open.") * tts.sample_rate)
    assert not any(pcm)  # silence: no CPU spent making sound


def test_the_embedded_providers_stay_the_default() -> None:
    args = AppArgs()
    assert (args.stt.provider, args.llm.provider, args.tts.provider) == (
        "whisper",
        "llama",
        "piper",
    )
    assert isinstance(build_stt(SttArgs(provider="simulated"), None), SimulatedSTT)  # type: ignore[arg-type]


async def test_a_voice_session_answers_over_simulated_providers() -> None:
    args = simulated_args()
    backend = LocalBackend.build(args, None)  # type: ignore[arg-type]  # nothing to load
    got = Received()
    session = VoiceSession(
        backend,
        send_event=got.on_event,
        send_audio=got.on_audio,
        output_rate=backend.sample_rate,
        system_prompt=args.llm.system_prompt,
        limits=SessionLimits(realtime_burst_s=600),  # fed faster than real time
    )
    await session.start()
    await stream(session, silence(200) + pcm16k(SPOKEN[1]) + silence(600))
    done = await got.wait_for("response.done", limit_s=10)
    assert done["transcript"] in QUESTIONS and done["text"] in REPLIES
    assert done["audio_ms"] > 0 and done["latency"]["first_audio_sent_ms"] > 0
    await session.close()


# ----- streaming ----------------------------------------------------------------------


async def _events(
    stream: SimulatedSttStream, out: list[LiveEvent] | None = None
) -> list[LiveEvent]:
    out = [] if out is None else out
    async for event in stream.events():
        out.append(event)
    return out


async def test_the_simulated_live_stt_stream_on_the_audio_timeline() -> None:
    """Interim results every `interim_ms` of audio in speech, a final `final_ms` after
    Finalize, in order; the same audio always gives the same events."""
    runs = []
    for _ in range(2):
        stt = SimulatedSttStream(
            final_ms=30, interim_ms=400, endpointing_ms=None, utterance_end_ms=None, jitter=0
        )
        reader = asyncio.create_task(_events(stt))
        pcm = silence(200) + pcm16k(SPOKEN[0]) + silence(300)
        for i in range(0, len(pcm), 640):
            await stt.send(pcm[i : i + 640])
        await stt.finalize()
        await stt.finalize()  # nothing open: an empty final
        await stt.aclose()
        events = await reader
        runs.append(events)
        kinds = [type(e).__name__ for e in events]
        assert kinds[0] == "SpeechStarted" and kinds[-1] == "Closed"
        interims = [e for e in events if isinstance(e, InterimTranscript)]
        finals = [e for e in events if isinstance(e, FinalTranscript)]
        assert interims and [len(e.text.split()) for e in interims] == list(
            range(1, len(interims) + 1)
        )
        assert [f.from_finalize for f in finals] == [True, True]
        assert finals[0].text in QUESTIONS and finals[0].text.startswith(interims[-1].text)
        assert finals[1].text == ""
        assert kinds.index("FinalTranscript") > max(
            i for i, k in enumerate(kinds) if k == "InterimTranscript"
        )
    assert runs[0] == runs[1]  # seeded: the same words


async def test_the_simulated_stream_endpoints_on_silence() -> None:
    stt = SimulatedSttStream(final_ms=0, endpointing_ms=300, utterance_end_ms=1000, jitter=0)
    seen: list[LiveEvent] = []
    reader = asyncio.create_task(_events(stt, seen))
    pcm = silence(200) + pcm16k(SPOKEN[1], trim=True)
    for i in range(0, len(pcm), 640):
        await stt.send(pcm[i : i + 640])
    await stt.send(silence(280))
    await asyncio.sleep(0.01)
    assert seen and not any(isinstance(e, FinalTranscript) for e in seen)
    await stt.send(silence(40))  # 320 ms of silence: endpointing
    await stt.send(silence(700))  # 1020 ms: UtteranceEnd
    await stt.aclose()
    events = await reader
    (final,) = [e for e in events if isinstance(e, FinalTranscript)]
    assert final.speech_final and not final.from_finalize and final.text in QUESTIONS
    assert isinstance(events[-2], UtteranceEnd)


async def test_the_simulated_tts_stream_timing_and_alignment() -> None:
    tts = SimulatedTtsStream(sample_rate=16_000, first_audio_ms=150, speed=10, jitter=0)
    start = time.perf_counter()
    await tts.send("Dock three is open,")
    await tts.flush()
    await tts.send("and door nine opens soon.")
    await tts.close()
    first: float | None = None
    chunks = []
    async for chunk in tts.chunks():
        first = first or time.perf_counter() - start
        chunks.append(chunk)
    elapsed = time.perf_counter() - start
    audio_s = sum(len(c.pcm) for c in chunks) / 2 / 16_000
    assert tts.texts == ["Dock three is open,", "and door nine opens soon."]
    assert audio_s == pytest.approx(0.065 * sum(len(t) for t in tts.texts), abs=0.001)
    # the first audio no sooner than 150 ms after the first text; the rest faster than it plays
    assert first is not None and 0.15 <= first < elapsed < audio_s
    assert sum(c.chars or 0 for c in chunks) == sum(spoken_chars(t) for t in tts.texts)


async def test_the_simulated_tts_stream_cancels_at_once() -> None:
    tts = SimulatedTtsStream(sample_rate=16_000, first_audio_ms=50, speed=1, jitter=0)
    await tts.send("A long sentence that would take a few seconds to say out loud.")
    await tts.flush()
    got = []
    async for chunk in tts.chunks():
        got.append(chunk)
        await tts.cancel()
    assert len(got) == 1
