"""Streaming STT and TTS in the voice session, in one process (no Ray, no network but loopback).

    .venv/bin/python -m bench.streaming [--turns 20] [--sessions 4] [--ws-delay 0.1]

1. End of turn with a live Deepgram socket (the loopback server of tests/wire/, every live
   message delayed by `--ws-delay` s): our VAD + Finalize (speculative at the first pause) vs
   Deepgram's endpointing (`speech_final` at 300 ms of silence). End of turn = the later of
   "the turn is over" and "its transcript is known", from the last voiced frame.
2. Voice-to-voice (last voiced frame -> first reply audio sent) on simulated providers:
   per-utterance STT + per-clause TTS vs the simulated live STT stream + one TTS stream per
   reply, same latency profile (STT final 150 ms, LLM first token 300 ms, TTS first audio
   150 ms).

Speakers stream Piper speech at real-time pace in 20 ms frames, `--sessions` at a time, and
wait for each reply to play before the next question.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import SENTENCES
from pipeline.config import (
    AppArgs,
    LlmArgs,
    SessionLimits,
    SessionOptions,
    Settings,
    SimulatedArgs,
    SttArgs,
    TtsArgs,
)
from pipeline.metrics import summarize
from pipeline.providers.deepgram import DeepgramLiveStreams
from pipeline.providers.in_process import LocalBackend
from pipeline.providers.simulated import SimulatedSttStreams, SimulatedTtsStreams
from pipeline.providers.streams import LiveStt, TtsStreams
from pipeline.voice.events import Event
from pipeline.voice.session import VoiceSession
from tests.fakes import FakeChat, FakeStt, FakeTts, fake_backend
from tests.speech import pcm16k, silence
from tests.wire.deepgram_server import DeepgramServer

FRAME = 640  # 20 ms
KEY = "bench-key"
MakeSession = Callable[[], Awaitable[tuple[VoiceSession, "Turns"]]]


class Turns:
    """A session's `response.done` latencies, as they come."""

    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.audio_s = 0.0

    async def on_event(self, event: Event) -> None:
        if event.type.value == "response.done":
            self.done.append(event.data)
            self.changed.set()

    async def on_audio(self, data: bytes) -> None:
        self.audio_s += len(data) / 2 / 16_000

    async def next_done(self, count: int) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while len(self.done) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.done[count - 1]


async def speaker(make: MakeSession, turns: int, first: int) -> list[dict[str, Any]]:
    session, got = await make()
    try:
        for n in range(turns):
            speech = pcm16k(SENTENCES[(first + n) % len(SENTENCES)])
            pcm = silence(300) + speech + silence(900)
            pcm = pcm[: len(pcm) // FRAME * FRAME]
            start = time.perf_counter()
            for i in range(0, len(pcm), FRAME):  # real time, an open microphone
                await session.on_audio(pcm[i : i + FRAME])
                await asyncio.sleep(max(0.0, start + (i + FRAME) / 32_000 - time.perf_counter()))
            done = await got.next_done(n + 1)
            await asyncio.sleep(done["audio_ms"] / 1000 + 0.2)  # the reply plays out
    finally:
        await session.close()
    return [d["latency"] | {"providers": d["providers"]} for d in got.done]


async def run(make: MakeSession, turns: int, sessions: int) -> list[dict[str, Any]]:
    per = -(-turns // sessions)
    results = await asyncio.gather(*(speaker(make, per, 3 * s) for s in range(sessions)))
    return [t for r in results for t in r][:turns]


def opener(
    backend: LocalBackend,
    *,
    live_stt: LiveStt | None = None,
    tts_streams: TtsStreams | None = None,
    **options: Any,
) -> MakeSession:
    async def make() -> tuple[VoiceSession, Turns]:
        got = Turns()
        session = VoiceSession(
            backend,
            send_event=got.on_event,
            send_audio=got.on_audio,
            output_rate=backend.sample_rate,
            system_prompt="You are a test assistant.",
            options=SessionOptions(**options),
            limits=SessionLimits(),
            live_stt=live_stt,
            tts_streams=tts_streams,
        )
        await session.start()
        return session, got

    return make


def row(name: str, values: list[float]) -> str:
    s = summarize(values)
    return f"| {name} | {len(values)} | {s['p50']:.0f} | {s['p90']:.0f} | {s['p99']:.0f} |"


HEADER = "| mode | turns | P50 ms | P90 ms | P99 ms |\n|---|---:|---:|---:|---:|"


async def end_of_turn(turns: int, sessions: int, ws_delay_s: float) -> str:
    lines = [f"End of turn, live Deepgram (loopback, +{ws_delay_s * 1000:.0f} ms per message)"]
    lines.append(HEADER)
    async with DeepgramServer(api_keys=(KEY,), ws_delay_s=ws_delay_s) as dg:
        dg.transcribe = lambda voiced_s: f"{voiced_s:.1f} seconds"
        for mode in ("vad", "endpointing"):
            endpointing = mode == "endpointing"
            live = LiveStt(
                DeepgramLiveStreams(
                    api_key=KEY,
                    base_url=dg.base_url,
                    endpointing_ms=300 if endpointing else None,
                    utterance_end_ms=1000 if endpointing else None,
                ),
                end_of_turn="endpointing" if endpointing else "vad",
            )
            backend = fake_backend(
                stt=FakeStt(transcripts="fallback"),
                chat=FakeChat(replies="On time."),
                tts=FakeTts(ms_per_char=20),
            )
            got = await run(opener(backend, live_stt=live), turns, sessions)
            assert all(t["stt_streamed"] for t in got), "a turn fell back to whole transcription"
            eot = [max(t["turn_detected_ms"], t["stt_ms"]) for t in got]
            lines.append(row(f"{mode}: end of turn", eot))
            lines.append(row(f"{mode}: transcript known (stt_ms)", [t["stt_ms"] for t in got]))
    return "\n".join(lines)


def simulated_backend() -> LocalBackend:
    sim = SimulatedArgs(first_ms=150, jitter=0.1)
    args = AppArgs(
        stt=SttArgs(provider="simulated", simulated=sim),
        llm=LlmArgs(provider="simulated", simulated=SimulatedArgs(first_ms=300), tools=False),
        tts=TtsArgs(provider="simulated", simulated=sim),
    )
    return LocalBackend.build(args, Settings().cache_dir)


async def v2v(turns: int, sessions: int) -> str:
    lines = ["Voice-to-voice, simulated providers (first_audio_sent_ms)", HEADER]
    modes: dict[str, dict[str, Any]] = {
        "per utterance + per clause": {},
        "live STT + TTS stream": {
            "live_stt": LiveStt(SimulatedSttStreams(final_ms=150)),
            "tts_streams": SimulatedTtsStreams(first_audio_ms=150),
        },
        "live STT only": {"live_stt": LiveStt(SimulatedSttStreams(final_ms=150))},
        "TTS stream only": {"tts_streams": SimulatedTtsStreams(first_audio_ms=150)},
    }
    for name, streams in modes.items():
        got = await run(opener(simulated_backend(), **streams), turns, sessions)
        lines.append(row(name, [t["first_audio_sent_ms"] for t in got]))
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    print(await end_of_turn(args.turns, args.sessions, args.ws_delay), flush=True)
    print()
    print(await v2v(args.turns, args.sessions), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--ws-delay", type=float, default=0.1, help="Deepgram message latency")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
