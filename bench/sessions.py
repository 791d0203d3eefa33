"""Voice-to-voice latency over WebSocket sessions, with each latency technique on and off.

    scripts/bench.sh sessions [--turns 6] [--concurrency 1 2 4 8] [--url http://127.0.0.1:8000]

Simulated speakers stream real synthesized speech at real-time pace (20 ms frames),
keep streaming silence like an open microphone, and take several turns with pauses.
Voice-to-voice = arrival of the first reply audio byte - the moment the last speech
sample of the question was sent (known from the audio itself, not from the server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    COMPANY_QUESTIONS,
    RESULTS,
    SENTENCES,
    app_running,
    config_with,
    write_results,
)
from pipeline.config import AppArgs
from pipeline.metrics import summarize
from pipeline.providers.build import build_tts
from pipeline.voice import audio
from pipeline.web.client import VoiceClient

FRAME = 640
STAGES = [
    "turn_detected_ms",
    "stt_ms",
    "llm_first_token_ms",
    "first_clause_ms",
    "tts_first_audio_ms",
    "first_audio_sent_ms",
]
DEFAULTS: dict[str, Any] = {  # as in serve_config.yaml
    "speculative_stt": True,
    "preemptive_llm": True,
    "partial_transcripts": False,
    "first_clause_max_chars": 32,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": DEFAULTS,
    "+ partial transcripts": {**DEFAULTS, "partial_transcripts": True},
    "no preemptive LLM": {**DEFAULTS, "preemptive_llm": False},
    "no speculative STT": {**DEFAULTS, "speculative_stt": False, "preemptive_llm": False},
    "first clause at punctuation only": {**DEFAULTS, "first_clause_max_chars": 400},
    "first clause <= 24 chars": {**DEFAULTS, "first_clause_max_chars": 24},
    "first clause <= 48 chars": {**DEFAULTS, "first_clause_max_chars": 48},
    "fixed end of turn": {**DEFAULTS, "smart_end_of_turn": False},
    "all off": {
        "speculative_stt": False,
        "preemptive_llm": False,
        "partial_transcripts": False,
        "first_clause_max_chars": 400,
        "smart_end_of_turn": False,
    },
}


def make_questions(sentences: list[str] = SENTENCES) -> list[tuple[bytes, float]]:
    """(16 kHz PCM16, seconds to the last speech sample) per sentence."""
    tts = build_tts(AppArgs().tts)
    out = []
    for pcm in asyncio.run(tts.synthesize_batch(sentences)):
        samples = audio.resample(audio.pcm16_to_float(pcm), tts.sample_rate, 16_000)
        end = int(np.flatnonzero(np.abs(samples) > 0.02)[-1]) + 1
        out.append((audio.float_to_pcm16(samples), end / 16_000))
    return out


async def speaker(
    url: str, options: dict[str, Any], questions: list[tuple[bytes, float]], turns: int, seat: int
) -> list[dict[str, Any]]:
    client = await VoiceClient.open(url)
    await client.send_json({"type": "session.update", "session": options})
    await client.wait_for("session.updated")
    silence = b"\0" * FRAME * 5
    results = []
    for turn in range(turns):
        pcm, speech_s = questions[(seat * 3 + turn) % len(questions)]
        sent_at = await client.send_audio(pcm)
        speech_end = sent_at - (len(pcm) / 32_000 - speech_s)
        count = len(client.events("response.done")) + 1
        waiter = asyncio.create_task(client.wait_for("response.done", count, limit_s=120))
        while not waiter.done():  # an open microphone keeps sending silence
            await client.send_audio(silence)
        done = waiter.result()
        first = client.first_audio_after(speech_end)
        results.append(
            {
                "v2v_ms": (first - speech_end) * 1000 if first else float("nan"),
                **{k: v for k, v in done["latency"].items() if k in STAGES and v is not None},
            }
        )
        await client.send_audio(b"\0" * 32_000)  # a one-second pause before the next question
    await client.close()
    return results


async def run(url: str, options: dict[str, Any], questions: Any, turns: int, c: int) -> list[Any]:
    per_seat = await asyncio.gather(*(speaker(url, options, questions, turns, s) for s in range(c)))
    return [r for seat in per_seat for r in seat]


def row(name: str, c: int, samples: list[dict[str, float]]) -> str:
    v2v = summarize([s["v2v_ms"] for s in samples])
    stages = " | ".join(
        f"{summarize([s[k] for s in samples if k in s])['p50']:.0f}" for k in STAGES
    )
    return (
        f"| {name} | {c} | {len(samples)} | {v2v['p50']:.0f} | {v2v['p90']:.0f} | "
        f"{v2v['p99']:.0f} | {stages} |"
    )


HEADER = (
    "| config | sessions | turns | V2V P50 | V2V P90 | V2V P99 | "
    + " | ".join(f"{k.removesuffix('_ms')} P50" for k in STAGES)
    + " |\n|---|---:|---:|---:|---:|---:|"
    + "---:|" * len(STAGES)
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6, help="turns per speaker")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--url", default=None, help="a running app; default: start one")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="ARG=VALUE",
        help="change the started app's args, e.g. llm.tools=false stt.provider=whisper",
    )
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--configs", nargs="+", default=list(CONFIGS), help=f"which of: {', '.join(CONFIGS)}"
    )
    parser.add_argument(
        "--questions",
        choices=["mixed", "company"],
        default="mixed",
        help="mixed: the bench sentences, repeats included; company: distinct company questions "
        "(first-time, answered by tools; use --turns 15 or fewer)",
    )
    args = parser.parse_args()

    questions = warm_up = make_questions()
    if args.questions == "company":
        questions = make_questions(COMPANY_QUESTIONS)
    rows: list[str] = []
    raw: dict[str, Any] = {}
    config = config_with(args.set, Path(tempfile.mkdtemp()) / "serve_config.yaml")
    with app_running(args.url, config) as base:
        url = base.replace("http", "ws", 1) + "/v1/sessions"
        asyncio.run(run(url, DEFAULTS, warm_up, 1, 1))  # warm-up
        for name in args.configs:
            options = CONFIGS[name]
            samples = asyncio.run(run(url, options, questions, args.turns, 1))
            rows.append(row(name, 1, samples))
            raw[f"{name}/1"] = samples
            print(rows[-1], flush=True)
        for c in args.concurrency:
            if c == 1:
                continue
            samples = asyncio.run(run(url, DEFAULTS, questions, args.turns, c))
            rows.append(row("defaults", c, samples))
            raw[f"defaults/{c}"] = samples
            print(rows[-1], flush=True)

    md = (
        f"## Voice-to-voice latency over WebSocket sessions ({args.turns} turns per speaker, "
        f"embedded models, {os.cpu_count()} cores)\n\n"
        f"App args changed: {' '.join(args.set) or 'none'}\n\n"
        "V2V: end of speech in the streamed audio -> first reply audio byte at the client.\n"
        "Stage columns: server-side ms after the end of speech (P50).\n\n"
        f"{HEADER}\n" + "\n".join(rows) + "\n"
    )
    write_results("sessions", md, raw, Path(args.out))


if __name__ == "__main__":
    main()
