"""Key-value stores behind the cache: Redis, or a bounded LRU + TTL dict when none is set.

Both raise `StoreUnavailable` for any failure of the store itself, so the cache can
bypass it; a Redis call that takes longer than `timeout_s` counts as a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry


class StoreUnavailable(Exception):
    """The store did not answer (down, refused, or slower than its timeout)."""


class KeyValueStore(Protocol):
    kind: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def counter(self, key: str) -> int: ...

    async def increment(self, key: str) -> int: ...

    def size(self) -> int | None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """LRU bounded in entries and bytes; entries expire after their TTL. Counters never expire."""

    kind = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 256 * 2**20,
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._counters: dict[str, int] = {}
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._drop(key)
        if len(value) > self._max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._bytes += len(value)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def counter(self, key: str) -> int:
        return self._counters.get(key, 0)

    async def increment(self, key: str) -> int:
        self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters[key]

    def size(self) -> int | None:
        return len(self._entries)

    async def close(self) -> None:
        self._entries.clear()

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])


class RedisStore:
    """Redis with one short deadline per call and no client-side retries: when Redis is
    down or slow the cache must give up fast and let the request compute its answer."""

    kind = "redis"

    def __init__(self, url: str, *, timeout_s: float = 0.1) -> None:
        self._timeout = timeout_s
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    async def _call(self, name: str, *args: object, **kwargs: object) -> object:
        try:
            async with asyncio.timeout(self._timeout):
                return await getattr(self._redis, name)(*args, **kwargs)
        except (RedisError, OSError, TimeoutError) as e:
            raise StoreUnavailable(f"redis {name}: {type(e).__name__}") from e

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call("set", key, value, px=max(1, int(ttl_s * 1000)))

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def counter(self, key: str) -> int:
        value = await self._call("get", key)
        return int(value) if isinstance(value, bytes | str | int) else 0

    async def increment(self, key: str) -> int:
        value = await self._call("incr", key)
        assert isinstance(value, int)
        return value

    def size(self) -> int | None:
        return None  # Redis is shared: its key count is not ours to report

    async def close(self) -> None:
        await self._redis.aclose()
