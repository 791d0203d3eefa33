"""Turn latency: the Ray Serve graph over HTTP vs the same providers in one plain process.

    scripts/bench.sh [--turns 12] [--concurrency 1 2 4] [--url http://127.0.0.1:8000]

Speech is real: the embedded Piper voice speaks a set of operations questions.
The in-process baseline runs first (same `run_turn`, same providers, no Ray), then
the app is started with `serve run serve_config.yaml` (unless --url points at a
running one) and the same turns go through POST /v1/turn. Results are printed and
written to bench/results/ as JSON and markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, SENTENCES, app_running, write_results
from pipeline.config import AppArgs, Settings
from pipeline.llm.history import ConversationLog
from pipeline.metrics import summarize
from pipeline.providers.build import build_tts
from pipeline.providers.in_process import LocalBackend
from pipeline.store.db import open_database
from pipeline.voice import audio
from pipeline.voice.turn import converse

STAGES = ["stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "llm_total_ms", "total_ms"]
Sample = dict[str, float]
RUN = uuid.uuid4().hex[:8]


def make_speech() -> list[bytes]:
    tts = build_tts(AppArgs().tts)
    pcms = asyncio.run(tts.synthesize_batch(SENTENCES))
    return [audio.encode_wav(p, tts.sample_rate) for p in pcms]


TurnFn = Callable[[int, bytes, str], Coroutine[Any, Any, Sample]]


async def level(name: str, one_turn: TurnFn, wavs: list[bytes], turns: int, c: int) -> list[Sample]:
    """`turns` turns spread over `c` concurrent speakers, each with its own session."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(turns):
        queue.put_nowait(i)
    samples: list[Sample] = []

    async def speaker(s: int) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            session = f"{name}-{RUN}-c{c}-s{s}"  # a fresh conversation per run
            samples.append(await one_turn(i, wavs[i % len(wavs)], session))

    await asyncio.gather(*(speaker(s) for s in range(c)))
    return samples


async def sweep(
    name: str, one_turn: TurnFn, wavs: list[bytes], turns: int, levels: list[int]
) -> dict[int, list[Sample]]:
    await one_turn(0, wavs[0], f"{name}-{RUN}-warmup")  # first call loads lazily built state
    results: dict[int, list[Sample]] = {}
    for c in levels:
        results[c] = await level(name, one_turn, wavs, turns, c)
        print(f"  {name} c={c}: {len(results[c])} turns", flush=True)
    return results


class InProcess:
    """The ingress's turn (`converse`: history from the conversation log, the turn recorded
    behind the reply, Postgres as configured) over in-process providers instead of handles."""

    def __init__(self) -> None:
        args = AppArgs()
        self.backend = LocalBackend.build(args, Settings().cache_dir)
        self.limits = args.limits
        self.system_prompt = args.llm.system_prompt
        self.conversations = ConversationLog(
            lambda: open_database(Settings()), history_turns=args.llm.history_turns
        )

    async def turn(self, _: int, wav: bytes, session: str) -> Sample:
        start = time.perf_counter()
        samples = audio.decode_audio(wav, max_seconds=self.limits.max_audio_seconds)
        result, _ = await converse(
            self.backend, self.conversations, session, samples, self.system_prompt
        )
        out = {k: v for k, v in result.timings.as_dict().items() if v is not None}
        out["client_ms"] = (time.perf_counter() - start) * 1000
        return out

    async def close(self) -> None:
        await self.conversations.flush()
        await self.conversations.close()


async def http_sweep(
    url: str, wavs: list[bytes], turns: int, levels: list[int]
) -> dict[int, list[Sample]]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def turn(_: int, wav: bytes, session: str) -> Sample:
            start = time.perf_counter()
            r = await client.post(
                "/v1/turn",
                content=wav,
                params={"session_id": session},
                headers={"Content-Type": "audio/wav"},
            )
            r.raise_for_status()
            out = {k: v for k, v in r.json()["timings"].items() if v is not None}
            out["client_ms"] = (time.perf_counter() - start) * 1000
            return out

        return await sweep("ray", turn, wavs, turns, levels)


def table(results: dict[str, dict[int, list[Sample]]]) -> str:
    lines = [
        "| mode | conc | turns | stage | P50 ms | P90 ms | P99 ms |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for mode, by_c in results.items():
        for c, samples in by_c.items():
            for stage in [*STAGES, "client_ms"]:
                s = summarize([x[stage] for x in samples if stage in x])
                lines.append(
                    f"| {mode} | {c} | {len(samples)} | {stage} | "
                    f"{s['p50']:.0f} | {s['p90']:.0f} | {s['p99']:.0f} |"
                )
    return "\n".join(lines)


def overhead(results: dict[str, dict[int, list[Sample]]]) -> str:
    lines = [
        "| conc | stage | in-process P50 | Ray P50 | Ray - in-process ms | ratio |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in results["ray"]:
        for stage in ["stt_ms", "tts_first_audio_ms", "client_ms"]:
            base = summarize([x[stage] for x in results["in-process"][c]])["p50"]
            ray = summarize([x[stage] for x in results["ray"][c]])["p50"]
            lines.append(
                f"| {c} | {stage} | {base:.0f} | {ray:.0f} | {ray - base:+.0f} | {ray / base:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12, help="turns per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--url", default=None, help="a running app; default: start one")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    wavs = make_speech()
    results: dict[str, dict[int, list[Sample]]] = {}
    print("in-process (no Ray) ...", flush=True)

    async def in_process() -> dict[int, list[Sample]]:
        local = InProcess()
        try:
            return await sweep("local", local.turn, wavs, args.turns, args.concurrency)
        finally:
            await local.close()

    results["in-process"] = asyncio.run(in_process())
    gc.collect()

    with app_running(args.url) as url:
        print("ray serve over HTTP ...", flush=True)
        results["ray"] = asyncio.run(http_sweep(url, wavs, args.turns, args.concurrency))

    md = (
        f"## Turn latency ({args.turns} turns per level, embedded models, "
        f"{os.cpu_count()} cores)\n\n"
        "All times in ms from the start of the turn (request received); `client_ms` is the\n"
        "client's wall time for the whole request.\n\n"
        f"{table(results)}\n\n### Ray overhead (P50)\n\n{overhead(results)}\n"
    )
    write_results("turns", md, results, Path(args.out))


if __name__ == "__main__":
    main()
