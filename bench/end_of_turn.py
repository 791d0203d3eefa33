"""End of turn: false cuts on questions with a pause in the middle, and how soon a whole
question's turn ends, fixed hangover vs the transcript-aware end of turn.

    scripts/bench.sh eot [--stt moonshine whisper] [--pauses 250 400 600]

A voice session (in process) hears, at real-time pace, synthesized questions cut in two at a
natural pause point, the halves joined by a pause of each length, then 1 s of silence; and
whole questions. The recogniser is real (its latency decides when the speculative
transcript is known); the LLM and TTS are scripted and instant. A false cut is a question
whose halves became two turns. Latency: turn_detected_ms (last voiced frame to the turn's
end) of the whole questions.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.common import SENTENCES, write_results
from pipeline.config import Settings, SttArgs
from pipeline.metrics import summarize
from pipeline.providers.build import build_stt
from pipeline.voice.session import VoiceSession
from tests.fakes import FakeChat, fake_backend
from tests.session_driver import FRAME, Received, Sessions, stream
from tests.speech import pcm16k, silence

# (before the pause, after it): hesitations after a word that needs more, then pauses at a
# phrase boundary where the first half could pass for a whole question.
PAUSED = [
    ("What is the status of", "load four twenty seven?"),
    ("How many pallets of", "bottled water are in the north warehouse?"),
    ("Is the forklift in the", "south warehouse working?"),
    ("Where is the", "reefer trailer right now?"),
    ("Can you tell me when the", "truck from Denver arrives?"),
    ("Which dock doors are open in the", "north warehouse?"),
    ("Schedule a pickup from Dallas to", "Denver tomorrow morning."),
    ("How much rice do we have in", "the south warehouse?"),
    ("Who is driving", "load three hundred?"),
    ("Are any trailers in", "maintenance?"),
    ("How many pallets of bottled water", "are in the north warehouse?"),
    ("The forklift in the south warehouse", "is it working?"),
    ("When will the truck from Denver", "arrive?"),
    ("Please tell me the status", "of the morning delivery."),
    ("Are there any delayed shipments", "this afternoon?"),
    ("Can you remind me", "where the spare batteries are kept?"),
    ("What should I do", "if a driver arrives early?"),
    ("How long does it take", "to unload a full trailer?"),
    ("Is the cold storage room", "at the right temperature?"),
    ("Which trucks are available", "in the north yard?"),
]
HESITATIONS = 10  # the first ten pause after a word that needs more
WHOLE = SENTENCES


def _frames(pcm: bytes) -> bytes:
    return pcm[: len(pcm) // FRAME * FRAME]


async def _hear(session: VoiceSession, got: Received, pcm: bytes) -> list[dict[str, Any]]:
    """Stream `pcm` at real time; the turns it ended (speech.stopped, not ignored)."""
    before = len(got.events("speech.stopped"))
    await stream(session, _frames(pcm), pace=1.0)
    await asyncio.sleep(0.3)
    return [e for e in got.events("speech.stopped")[before:] if not e["ignored"]]


async def run(stt_provider: str, smart: bool, pauses: list[int]) -> dict[str, Any]:
    stt = build_stt(SttArgs(provider=stt_provider), Settings().cache_dir)  # type: ignore[arg-type]
    backend = fake_backend(chat=FakeChat(replies="Okay."))
    backend.stt = stt
    # Real time here, so the harness's default of no transcript-aware end of turn is undone.
    harness = Sessions(barge_in=False)
    session, got = await harness.open(backend, smart_end_of_turn=smart)
    cuts = {(kind, p): 0 for kind in ("hesitation", "boundary") for p in pauses}
    cut_examples: list[str] = []
    try:
        await stream(session, silence(500), pace=1.0)
        for pause in pauses:
            for i, (first, second) in enumerate(PAUSED):
                pcm = pcm16k(first, trim=True) + silence(pause) + pcm16k(second, trim=True)
                turns = await _hear(session, got, pcm + silence(1200))
                if len(turns) > 1:
                    cuts["hesitation" if i < HESITATIONS else "boundary", pause] += 1
                    cut_examples.append(f"{first} | {pause} ms | {second}")
        n_before = len(got.events("response.done"))
        for text in WHOLE:
            await _hear(session, got, pcm16k(text, trim=True) + silence(1200))
        done = got.events("response.done")[n_before:]
        detected = [d["latency"]["turn_detected_ms"] for d in done]
    finally:
        await session.close()
    return {
        "cuts": {f"{k} {p}": n for (k, p), n in cuts.items()},
        "examples": cut_examples,
        "detected": summarize(detected),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stt", nargs="+", default=["moonshine", "whisper"])
    parser.add_argument("--pauses", nargs="+", type=int, default=[250, 400, 600])
    args = parser.parse_args()
    groups = [("hesitation", HESITATIONS), ("boundary", len(PAUSED) - HESITATIONS)]
    cols = [(k, n, p) for k, n in groups for p in args.pauses]
    lines = [
        "| recogniser | end of turn | "
        + " | ".join(f"{k} {p} ms" for k, _, p in cols)
        + " | hesitations cut | boundaries cut | turn detected P50 / P90 ms |",
        "|---|---|" + "---:|" * (len(cols) + 3),
    ]
    raw = []
    for stt, smart in [(s, True) for s in args.stt] + [(args.stt[0], False)]:
        r = asyncio.run(run(stt, smart, args.pauses))
        raw.append({"stt": stt, "smart": smart, **r})
        totals = []
        for kind, n in groups:
            cut = sum(r["cuts"][f"{kind} {p}"] for p in args.pauses)
            totals.append(f"{cut}/{n * len(args.pauses)} ({cut / (n * len(args.pauses)):.0%})")
        d = r["detected"]
        lines.append(
            f"| {stt} | {'transcript-aware' if smart else 'fixed 300 ms'} | "
            + " | ".join(f"{r['cuts'][f'{k} {p}']}/{n}" for k, n, p in cols)
            + f" | {' | '.join(totals)} | {d['p50']:.0f} / {d['p90']:.0f} |"
        )
        print(lines[-1], flush=True)
        for example in r["examples"]:
            print(f"  cut ({stt}, smart={smart}): {example}", flush=True)
    write_results("end_of_turn", "\n".join(lines), raw)


if __name__ == "__main__":
    main()
