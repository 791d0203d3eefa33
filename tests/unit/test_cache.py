"""The cache core and client, in memory and against a real throwaway redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pipeline.cache.client import Cache
from pipeline.cache.core import CacheCore
from pipeline.cache.store import KeyValueStore, MemoryStore, RedisStore
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]
TTLS = {"loads": 60.0, "inventory": 0.3, "llm": 60.0, "tts": 60.0}


class Counter:
    """A computation that counts its runs and answers with the run number."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.runs = 0
        self._delay = delay_s

    def __call__(self, value: str = "v") -> Callable[[], Awaitable[str]]:
        async def compute() -> str:
            self.runs += 1
            await asyncio.sleep(self._delay)
            return f"{value}{self.runs}"

        return compute


def make(store: KeyValueStore, **kwargs: float) -> tuple[Cache, CacheCore]:
    core = CacheCore(store, TTLS, retry_after_s=0.3, **kwargs)
    return Cache(core), core


@pytest.fixture(params=["memory", "redis"])
async def cache(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[Cache, CacheCore]]:
    store: KeyValueStore = (
        MemoryStore() if request.param == "memory" else RedisStore(redis_server.url, timeout_s=2)
    )
    cache, core = make(store)
    yield cache, core
    await core.close()


async def test_hit_miss_and_ttl_expiry(cache: tuple[Cache, CacheCore]) -> None:
    c, core = cache
    count = Counter()
    assert await c.get_or_compute("loads", "427", count()) == "v1"
    assert await c.get_or_compute("loads", "427", count()) == "v1"  # hit
    assert await c.get_or_compute("loads", "428", count()) == "v2"
    assert await c.get_or_compute("inventory", "rice", count()) == "v3"
    await asyncio.sleep(0.5)  # inventory's TTL is 0.3 s here
    assert await c.get_or_compute("inventory", "rice", count()) == "v4"
    loads = core.stats()["namespaces"]["loads"]
    assert (loads["hits"], loads["misses"], loads["hit_rate"]) == (1, 2, 0.3333)
    assert core.stats()["namespaces"]["inventory"]["misses"] == 2


async def test_concurrent_misses_compute_once(cache: tuple[Cache, CacheCore]) -> None:
    c, core = cache
    count = Counter(delay_s=0.2)
    values = await asyncio.gather(*[c.get_or_compute("loads", "7", count()) for _ in range(10)])
    assert values == ["v1"] * 10 and count.runs == 1
    loads = core.stats()["namespaces"]["loads"]
    assert (loads["misses"], loads["coalesced"]) == (1, 9)


async def test_invalidation_by_key_and_by_namespace(cache: tuple[Cache, CacheCore]) -> None:
    c, _ = cache
    count = Counter()
    for key in ("1", "2", "3"):
        await c.get_or_compute("loads", key, count())
    await c.get_or_compute("llm", "hello", count())
    await c.invalidate("loads", "1")
    assert await c.get_or_compute("loads", "1", count()) == "v5"  # recomputed
    assert await c.get_or_compute("loads", "2", count()) == "v2"  # still cached
    await c.invalidate("loads")
    assert await c.get_or_compute("loads", "2", count()) == "v6"
    assert await c.get_or_compute("loads", "3", count()) == "v7"
    assert await c.get_or_compute("llm", "hello", count()) == "v4"  # other namespaces stay


async def test_bytes_values_and_json_values(cache: tuple[Cache, CacheCore]) -> None:
    c, _ = cache
    pcm = bytes(range(256)) * 100

    async def audio() -> bytes:
        return pcm

    async def result() -> dict[str, object]:
        return {"spoken": "Load 427 is in transit.", "ok": True, "data": {"id": 427}}

    for _ in range(2):
        assert await c.get_or_compute("tts", "Hello there.", audio) == pcm
        assert (await c.get_or_compute("loads", "427", result))["data"] == {"id": 427}


async def test_a_new_value_version_never_reads_old_entries(redis_server: RedisServer) -> None:
    old = CacheCore(RedisStore(redis_server.url, timeout_s=2), TTLS, versions={"loads": 1})
    new = CacheCore(RedisStore(redis_server.url, timeout_s=2), TTLS, versions={"loads": 2})
    await Cache(old).get_or_compute("loads", "427", Counter()("old-shape"))
    assert await Cache(new).get_or_compute("loads", "427", Counter()("new-shape")) == "new-shape1"
    assert new.stats()["namespaces"]["loads"]["hits"] == 0


async def test_a_failed_or_cancelled_computation_gives_its_lease_back() -> None:
    c, _core = make(MemoryStore(), lease_timeout_s=30)

    async def fails() -> str:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await c.get_or_compute("loads", "9", fails)
    started = asyncio.get_running_loop().time()
    assert await c.get_or_compute("loads", "9", Counter()()) == "v1"  # no 30 s wait
    assert asyncio.get_running_loop().time() - started < 5

    slow = asyncio.create_task(c.get_or_compute("loads", "10", Counter(delay_s=10)()))
    await asyncio.sleep(0.05)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await c.get_or_compute("loads", "10", Counter()()) == "v1"


async def test_stream_through_caches_whole_replies_only() -> None:
    c, _ = make(MemoryStore())
    calls = 0

    def reply(n: int) -> Callable[[], AsyncIterator[str]]:
        async def stream() -> AsyncIterator[str]:
            nonlocal calls
            calls += 1
            for piece in ["Hello", ", there", "."][:n]:
                yield piece

        return stream

    first = [p async for p in c.stream_through("llm", "k", reply(3))]
    again = [p async for p in c.stream_through("llm", "k", reply(3))]
    assert first == ["Hello", ", there", "."] and again == ["Hello, there."] and calls == 1

    cut = c.stream_through("llm", "cut", reply(3))
    assert await anext(cut) == "Hello"
    await cut.aclose()  # barge-in: the reply stops after its first piece
    await asyncio.sleep(0)
    assert [p async for p in c.stream_through("llm", "cut", reply(3))] == ["Hello", ", there", "."]


async def test_memory_store_is_bounded() -> None:
    c, core = make(MemoryStore(max_entries=3))
    for key in "abcde":
        await c.get_or_compute("loads", key, Counter()())
    assert core.stats()["store"]["entries"] == 3


async def test_redis_stopped_mid_test_then_restarted(redis_server: RedisServer) -> None:
    c, core = make(RedisStore(redis_server.url, timeout_s=0.5))  # generous on a busy box
    count = Counter()
    assert await c.get_or_compute("loads", "427", count()) == "v1"
    assert await c.get_or_compute("loads", "427", count()) == "v1"

    redis_server.stop()
    # Requests are still answered: the cache is bypassed, the values computed.
    assert await c.get_or_compute("loads", "427", count()) == "v2"
    assert await c.get_or_compute("loads", "427", count()) == "v3"
    stats = core.stats()
    assert stats["store"]["healthy"] is False and stats["store"]["errors"] >= 1
    assert stats["namespaces"]["loads"]["bypassed"] >= 2

    redis_server.start()  # same port, empty
    await asyncio.sleep(0.4)  # past retry_after_s
    values = [await c.get_or_compute("loads", "427", count()) for _ in range(4)]
    assert values[-1] == values[-2]  # cached again
    assert core.stats()["store"]["healthy"] is True


async def test_slow_redis_is_bypassed_and_missed_invalidations_replayed(
    redis_server: RedisServer,
) -> None:
    c, core = make(RedisStore(redis_server.url, timeout_s=0.5))
    count = Counter()
    assert await c.get_or_compute("loads", "427", count()) == "v1"
    redis_server.cli("CLIENT", "PAUSE", "1500", "ALL")  # every command now hangs 1.5 s
    assert await c.get_or_compute("loads", "427", count()) == "v2"  # gives up after 0.5 s
    await c.invalidate("loads")  # a write happened: cannot reach Redis, kept for later
    assert core.stats()["store"]["pending_invalidations"] == 1
    await asyncio.sleep(1.7)  # Redis answers again, still holding the old entry
    values = [await c.get_or_compute("loads", "427", count()) for _ in range(3)]
    assert "v1" not in values  # the entry from before the write is never served
    assert values[-1] == values[-2]
    assert core.stats()["store"]["pending_invalidations"] == 0
