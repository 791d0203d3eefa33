"""Simulated providers: configured by stage, no model loaded, a voice session answers over them."""

from __future__ import annotations

import time

import numpy as np

from pipeline.config import AppArgs, LlmArgs, SessionLimits, SimulatedArgs, SttArgs, TtsArgs
from pipeline.providers.build import build_chat, build_stt, build_tts
from pipeline.providers.in_process import LocalBackend
from pipeline.providers.simulated import QUESTIONS, REPLIES, SimulatedSTT
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
