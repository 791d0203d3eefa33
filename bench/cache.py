"""Cache benchmark, in one plain process (no Ray): the embedded model, the real Postgres and
the real Redis of this machine.

1. Tool calls (routing + the tool's query) over a repeated question mix: no cache (the
   baseline) vs the cache in memory vs Redis; latency of misses and hits, hit rates.
2. Turns (speech in -> first reply audio) on repeated small-talk questions, with and
   without the LLM response cache.

    scripts/bench.sh cache [--asks 80] [--turns 12]
DATABASE_URL (default: the local `test` database; a throwaway schema) and REDIS_URL
(default: the local Redis; a fresh key prefix per run) choose the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from typing import Any

from bench.common import write_results
from bench.db import schema_pool
from pipeline.cache.client import Cache
from pipeline.cache.core import CacheCore
from pipeline.cache.store import KeyValueStore, MemoryStore, RedisStore
from pipeline.config import AppArgs, CacheTtls, Settings
from pipeline.llm.orchestrator import Orchestrator
from pipeline.metrics import summarize
from pipeline.providers.build import build_llama, build_stt, build_tts
from pipeline.providers.in_process import LocalBackend
from pipeline.tools.cached import CachedTools
from pipeline.tools.definitions import EXAMPLES, GUIDE, company_tools
from pipeline.tools.policy import Tools
from pipeline.tools.router import ToolRouter
from pipeline.voice import audio
from pipeline.voice.turn import run_turn

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUESTIONS = [
    *[f"What is the status of load {n}?" for n in (427, 215, 3051, 88, 120, 301, 999, 42)],
    "How many pallets of bottled water are in the north warehouse?",
    "How much rice is in the south warehouse?",
    "Do we have motor oil in the east warehouse?",
    "How many cases of paper towels do we have?",
    "Are any trailers in maintenance?",
    "Which trucks are available?",
    "Is forklift FL-07 working?",
    "Is dock door DD-03 free?",
    "Good morning, how are you?",
    "Thanks, that is all.",
]
SMALL_TALK = [
    "What time does the night shift start?",
    "What should I do if a driver arrives early?",
    "How long does it take to unload a full trailer?",
]


def question_mix(asks: int, seed_: int = 7) -> list[str]:
    """Some questions are asked far more often than others (weights 1/rank)."""
    weights = [1 / (rank + 1) for rank in range(len(QUESTIONS))]
    return random.Random(seed_).choices(QUESTIONS, weights=weights, k=asks)


def new_core(kind: str) -> CacheCore:
    store: KeyValueStore = MemoryStore() if kind == "memory" else RedisStore(REDIS, timeout_s=0.1)
    prefix = "bench-" + uuid.uuid4().hex[:8]  # a fresh, cold cache in a shared Redis
    return CacheCore(store, CacheTtls().model_dump(), prefix=prefix)


async def tool_calls(
    router: ToolRouter, registry: Any, kind: str, mix: list[str]
) -> dict[str, Any]:
    core = new_core(kind) if kind != "none" else None
    tools: Tools = router if core is None else CachedTools(router, registry, Cache(core))
    samples: dict[str, list[float]] = {"miss": [], "hit": []}
    for question in mix:
        hits_before = core.stats()["namespaces"]["search"]["hits"] if core else 0
        start = time.perf_counter()
        call = await tools.route(question)
        if call is not None:
            await tools.call(call)
        ms = (time.perf_counter() - start) * 1000
        hit = core is not None and core.stats()["namespaces"]["search"]["hits"] > hits_before
        samples["hit" if hit else "miss"].append(ms)
    out: dict[str, Any] = {"samples": samples}
    if core is not None:
        out["stats"] = core.stats()["namespaces"]
        await core.close()
        if kind == "redis":
            await _drop_prefix(core.prefix)
    return out


async def _drop_prefix(prefix: str) -> None:
    """Leave the shared Redis as found (the entries would expire by TTL anyway)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def turns(backend: LocalBackend, wavs: list[bytes], system: str) -> list[float]:
    first_audio = []
    for wav in wavs:
        samples = audio.decode_audio(wav, max_seconds=30)
        result = await run_turn(backend, samples, (), system)
        assert result.timings.tts_first_audio_ms is not None
        first_audio.append(result.timings.tts_first_audio_ms)
    return first_audio


def _ms(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.2f}"


def row(name: str, values: list[float], extra: str = "") -> str:
    if not values:
        return f"| {name} | 0 | - | - | - | {extra} |"
    p = summarize(values)
    cells = [name, str(len(values)), *(_ms(p[k]) for k in ("p50", "p90", "p99")), extra]
    return "| " + " | ".join(cells) + " |"


async def run(asks: int, repeats: int) -> tuple[str, dict[str, Any]]:
    args = AppArgs()
    cache_dir = Settings().cache_dir
    chat = build_llama(args.llm, cache_dir)
    mix = question_mix(asks)
    raw: dict[str, Any] = {"mix": mix}
    lines = [
        f"## Tool calls (routing + query), {asks} asks of {len(QUESTIONS)} questions (1/rank)",
        "",
        "| cache | calls | P50 ms | P90 ms | P99 ms | hit rate (search / tool results) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    async for pool in schema_pool("bench"):
        registry = company_tools(pool)
        router = ToolRouter(chat, registry, EXAMPLES, GUIDE)
        await router.route(QUESTIONS[0])  # load the few-shot prefixes into the KV cache
        for kind in ("none", "memory", "redis"):
            result = await tool_calls(router, registry, kind, mix)
            raw[kind] = result
            s = result["samples"]
            if kind == "none":
                lines.append(row("none (baseline)", s["miss"]))
                continue
            ns = result["stats"]
            rates = " / ".join(
                f"{n} {ns[n]['hit_rate']:.0%}"
                for n in ("search", "loads", "inventory", "equipment")
            )
            lines.append(row(f"{kind}: miss", s["miss"], rates))
            lines.append(row(f"{kind}: hit", s["hit"]))

    tts = build_tts(args.tts)
    pcms = await tts.synthesize_batch([*SMALL_TALK, "Good evening."])
    *questions, warm = [audio.encode_wav(p, tts.sample_rate) for p in pcms]
    wavs = questions * repeats
    stt = build_stt(args.stt, cache_dir)
    lines += [
        "",
        f"## Turns: speech in -> first reply audio, {len(SMALL_TALK)} small-talk questions x"
        f" {repeats}",
        "",
        "| LLM response cache | turns | P50 ms | P90 ms | P99 ms | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, cache in (("off", None), ("on (memory)", Cache(new_core("memory")))):
        backend = LocalBackend(stt, Orchestrator(chat, args.llm, cache=cache), tts)
        await turns(backend, [warm], args.llm.system_prompt)  # warm-up (not counted)
        first_audio = await turns(backend, wavs, args.llm.system_prompt)
        raw[f"turns {name}"] = first_audio
        lines.append(row(name, first_audio))
    return "\n".join(lines) + "\n", raw


def actor_hop(n: int) -> list[str]:
    """What the deployed graph adds: each cache call is a round trip to the cache actor."""
    import ray

    from deployments.cache import shared_cache
    from pipeline.config import CacheArgs

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        async def measure() -> dict[str, list[float]]:
            cache, _ = shared_cache(CacheArgs(key_prefix="bench-" + uuid.uuid4().hex[:8]))
            assert cache is not None
            out: dict[str, list[float]] = {"miss": [], "hit": []}

            async def answer() -> dict[str, str]:
                return {"spoken": "Load 427 from Dallas to Houston is in transit."}

            for i in range(n):
                for kind in ("miss", "hit"):
                    start = time.perf_counter()
                    await cache.get_or_compute("loads", f"hop-{i}", answer)
                    out[kind].append((time.perf_counter() - start) * 1000)
            return out

        samples = asyncio.run(measure())
    finally:
        ray.shutdown()
    return [
        "",
        f"## Through the cache actor (Ray, in-memory store), {n} keys",
        "",
        "| call | calls | P50 ms | P90 ms | P99 ms | |",
        "|---|---:|---:|---:|---:|---|",
        row("miss (lookup + fill)", samples["miss"]),
        row("hit (lookup)", samples["hit"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asks", type=int, default=80)
    parser.add_argument("--turns", type=int, default=4, help="repeats of each small-talk question")
    a = parser.parse_args()
    md, raw = asyncio.run(run(a.asks, a.turns))
    md += "\n".join(actor_hop(200)) + "\n"
    write_results("cache", md, raw)


if __name__ == "__main__":
    main()
