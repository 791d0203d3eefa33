"""What callers use: `get_or_compute` and `stream_through` over the cache actor (or, without
Ray, over a `CacheCore` in the same process).

The cache never fails a request: if the cache itself cannot be reached, the value is
computed as if there were no cache. A computation that fails or is cancelled gives its
lease back, so the next caller computes instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pipeline.cache.core import Outcome
from pipeline.cache.namespaces import Namespace

log = logging.getLogger("jarvis.cache")
T = TypeVar("T")


class CacheUnavailable(Exception):
    """The cache itself (the actor) could not be reached; backends raise it for any transport
    failure so that callers compute without the cache."""


class CacheBackend(Protocol):
    async def lookup(self, namespace: str, key: str) -> tuple[Outcome, Any]: ...

    async def fill(self, namespace: str, key: str, value: Any) -> None: ...

    async def abandon(self, namespace: str, key: str) -> None: ...

    async def invalidate(self, namespace: str, key: str | None = None) -> None: ...


def _identity(value: Any) -> Any:
    return value


class Cache:
    def __init__(self, backend: CacheBackend, *, call_timeout_s: float = 12.0) -> None:
        self._backend = backend
        self._timeout = call_timeout_s  # above the lease timeout: lookups may wait for one
        self._warned_at = 0.0

    async def get_or_compute(
        self,
        namespace: Namespace,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        dump: Callable[[T], Any] = _identity,
        load: Callable[[Any], T] = _identity,
        keep: Callable[[T], bool] | None = None,
    ) -> T:
        """The cached value of `key`, or `compute()`'s (stored for the next caller unless
        `keep` says no). `dump`/`load` convert to and from a bytes or JSON value."""
        outcome, value = await self._lookup(namespace, key)
        if outcome is Outcome.HIT:
            return load(value)
        if outcome is Outcome.BYPASS:
            return await compute()
        try:
            result = await compute()
        except BaseException:
            self._release(namespace, key)
            raise
        if keep is None or keep(result):
            await self._call(self._backend.fill(namespace, key, dump(result)))
        else:
            await self._call(self._backend.abandon(namespace, key))
        return result

    async def stream_through(
        self, namespace: Namespace, key: str, stream: Callable[[], AsyncIterator[str]]
    ) -> AsyncIterator[str]:
        """A cached text in one piece, or `stream()`'s pieces as they come (the whole text
        is stored once the stream ends; a stream cut short is not stored)."""
        outcome, value = await self._lookup(namespace, key)
        if outcome is Outcome.HIT and isinstance(value, str):
            yield value
            return
        pieces: list[str] = []
        complete = False
        try:
            async for piece in stream():
                pieces.append(piece)
                yield piece
            complete = True
        finally:
            if outcome is Outcome.LEASE:
                if complete:
                    await self._call(self._backend.fill(namespace, key, "".join(pieces)))
                else:
                    self._release(namespace, key)

    async def invalidate(self, namespace: Namespace, key: str | None = None) -> None:
        await self._call(self._backend.invalidate(namespace, key))

    async def _lookup(self, namespace: str, key: str) -> tuple[Outcome, Any]:
        found = await self._call(self._backend.lookup(namespace, key))
        return found if found is not None else (Outcome.BYPASS, None)

    def _release(self, namespace: str, key: str) -> None:
        # From a `finally` that may be running because of cancellation: do not await here.
        task = asyncio.get_running_loop().create_task(
            self._call(self._backend.abandon(namespace, key))
        )
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _call(self, call: Awaitable[Any]) -> Any:
        """One call to the cache; None when the cache itself fails (it never fails a request)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (CacheUnavailable, TimeoutError) as e:
            if time.monotonic() - self._warned_at > 30:
                self._warned_at = time.monotonic()
                log.warning("cache unreachable (%s); computing without it", type(e).__name__)
            return None
