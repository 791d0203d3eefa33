"""Which embedded recogniser: word error rate on synthesized and on human speech, latency
for a 3 s and a 10 s clip, memory.

    scripts/bench.sh stt [--reps 10] [--only moonshine-tiny ...]

Each recogniser loads in a process of its own (its memory is that process's growth) with
2 threads, as in the `stt` deployment. Synthesized speech: the benchmark's and the company
questions, spoken by the embedded Piper voice (no noise: the same audio every run). Human
speech: `bench/human_speech.py`. Latency: one clip at a time, P50/P90 over `--reps`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np
import psutil

from bench.common import COMPANY_QUESTIONS, ROOT, SENTENCES, write_results
from pipeline.config import Settings, SttArgs, SttModel
from pipeline.metrics import summarize

RECOGNISERS: dict[str, dict[str, Any]] = {
    "moonshine-tiny": {"provider": "moonshine"},
    "whisper-tiny.en, 30 s window": {"model": SttModel.TINY_EN, "window_s": 30},
    "whisper-tiny.en, 15 s window": {"model": SttModel.TINY_EN, "window_s": 15},
    "whisper-base, 15 s window": {"model": SttModel.BASE, "window_s": 15},
    "whisper-base, 30 s window": {"model": SttModel.BASE, "window_s": 30},
}


def synthesized() -> list[tuple[str, np.ndarray]]:
    from pipeline.voice import audio
    from tests.speech import pcm16k

    return [(t, audio.pcm16_to_float(pcm16k(t))) for t in SENTENCES + COMPANY_QUESTIONS]


def clip_of(seconds: float, pool: list[np.ndarray]) -> np.ndarray:
    """Speech of about `seconds`: clips of `pool` joined with 0.3 s pauses."""
    pause = np.zeros(4_800, dtype=np.float32)
    parts: list[np.ndarray] = []
    for clip in pool * 10:
        if sum(len(p) for p in parts) >= seconds * 16_000:
            break
        parts += [clip, pause]
    return np.concatenate(parts)[: int(seconds * 16_000)]


def measure(name: str, reps: int) -> dict[str, Any]:
    """In this process: load `name`, transcribe both sets, time the two clip lengths."""
    import jiwer

    from bench import human_speech
    from pipeline.providers.build import build_stt

    proc = psutil.Process()
    sets = {"synthesized": synthesized(), "human": human_speech.load()}
    rss0 = proc.memory_info().rss
    stt = build_stt(SttArgs(**RECOGNISERS[name]), Settings().cache_dir)

    async def run(a: np.ndarray) -> str:
        return await stt.transcribe(a)

    out: dict[str, Any] = {"name": name, "misheard": []}
    for set_name, items in sets.items():
        refs = [human_speech.for_wer(text) for text, _ in items]
        hyps = [human_speech.for_wer(asyncio.run(run(a))) for _, a in items]
        out[f"wer_{set_name}"] = float(jiwer.wer(refs, hyps))  # errors / reference words
        out[f"n_{set_name}"] = len(items)
        out["misheard"] += [(r, h) for r, h in zip(refs, hyps, strict=True) if r != h]
    pool = [a for _, a in sets["synthesized"]]
    for seconds in (3, 10):
        clip = clip_of(seconds, pool)
        asyncio.run(run(clip))  # warm
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            asyncio.run(run(clip))
            times.append((time.perf_counter() - t0) * 1000)
        out[f"ms_{seconds}s"] = summarize(times)
    out["rss_mb"] = (proc.memory_info().rss - rss0) / 1e6
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--only", nargs="+", choices=list(RECOGNISERS), default=list(RECOGNISERS))
    args = parser.parse_args()
    rows = []
    for name in args.only:
        done = subprocess.run(
            [sys.executable, "-m", "bench.stt", "--one", name, str(args.reps)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: done", file=sys.stderr)
    lines = [
        "| recogniser | WER synthesized | WER human | 3 s clip P50 / P90 ms "
        "| 10 s clip P50 / P90 ms | memory MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['wer_synthesized']:.1%} | {r['wer_human']:.1%} "
            f"| {r['ms_3s']['p50']:.0f} / {r['ms_3s']['p90']:.0f} "
            f"| {r['ms_10s']['p50']:.0f} / {r['ms_10s']['p90']:.0f} | {r['rss_mb']:.0f} |"
        )
    n_syn, n_hum = rows[0]["n_synthesized"], rows[0]["n_human"]
    lines.append(f"\n({n_syn} synthesized and {n_hum} human utterances; {args.reps} reps per clip)")
    write_results("stt", "\n".join(lines), rows)


if __name__ == "__main__":
    main()
