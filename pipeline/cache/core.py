"""The cache actor's logic: namespaces, single-flight leases, invalidation, outage bypass.

Protocol (one round trip on a hit): `lookup` answers HIT with the value, LEASE (compute it,
then `fill` or `abandon`), or BYPASS (compute it, do not fill: the lease holder gave up or
took too long). While the store is down, lookups get LEASE and fills reach only the
callers waiting on them: requests are served, the store is skipped. Concurrent lookups
of a key that is being computed wait for the holder's `fill` instead of computing again
(single-flight).

Keys carry the namespace's generation: invalidating a namespace increments it, so every
old entry becomes unreachable at once and expires by TTL. Keys and values also carry a
format version and the namespace's value version: a new shape never reads an old entry.
Invalidations made while Redis is down are replayed when it is back, before any hit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pipeline.cache.store import KeyValueStore, StoreUnavailable

log = logging.getLogger("jarvis.cache")
FORMAT = 1  # the envelope's layout


class Outcome(StrEnum):
    HIT = "hit"
    LEASE = "lease"
    BYPASS = "bypass"


@dataclass
class NamespaceStats:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0  # misses answered by another caller's computation (single-flight)
    fills: int = 0
    bypassed: int = 0  # store down/slow: computed without the cache
    stale: int = 0  # an entry of another value version was found and ignored
    invalidations: int = 0

    def hit_rate(self) -> float:
        served = self.hits + self.coalesced + self.misses
        return round((self.hits + self.coalesced) / served, 4) if served else 0.0


def encode(value: Any, version: int) -> bytes:
    """Envelope: `FORMAT:version:kind\\n` + payload; bytes stay raw, the rest is JSON."""
    if isinstance(value, bytes):
        return f"{FORMAT}:{version}:b\n".encode() + value
    return f"{FORMAT}:{version}:j\n".encode() + json.dumps(value, default=str).encode()


def decode(raw: bytes, version: int) -> tuple[bool, Any]:
    """(True, value) or (False, None) when the entry is of another format or version."""
    header, _, payload = raw.partition(b"\n")
    try:
        fmt, ver, kind = header.decode().split(":")
        if int(fmt) != FORMAT or int(ver) != version:
            return False, None
        return True, (payload if kind == "b" else json.loads(payload))
    except (ValueError, UnicodeDecodeError):
        return False, None


@dataclass
class _Flight:
    done: asyncio.Future[tuple[Outcome, Any]]
    started: float


class CacheCore:
    def __init__(
        self,
        store: KeyValueStore,
        ttl_s: Mapping[str, float],
        *,
        versions: Mapping[str, int] | None = None,
        prefix: str = "jarvis",
        retry_after_s: float = 2.0,
        lease_timeout_s: float = 10.0,
    ) -> None:
        self._store = store
        self._ttl = dict(ttl_s)
        self._versions = dict(versions or {})
        self._prefix = prefix
        self._retry_after = retry_after_s
        self._lease_timeout = lease_timeout_s
        self._stats = {ns: NamespaceStats() for ns in self._ttl}
        self._generations: dict[str, int] = {}
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._down_until = 0.0
        self._healthy = True
        self._store_errors = 0
        # Invalidations that could not reach the store; replayed when it answers again.
        self._pending_namespaces: set[str] = set()
        self._pending_keys: set[tuple[str, str]] = set()

    # -- the protocol ---------------------------------------------------------------

    async def lookup(self, namespace: str, key: str) -> tuple[Outcome, Any]:
        stats = self._namespace(namespace)
        flight = self._flights.get((namespace, key))
        if flight is not None:
            waited = time.monotonic() - flight.started
            if waited < self._lease_timeout:
                try:
                    outcome, value = await asyncio.wait_for(
                        asyncio.shield(flight.done), self._lease_timeout - waited
                    )
                except TimeoutError:
                    outcome, value = Outcome.BYPASS, None
                if outcome is Outcome.HIT:
                    stats.coalesced += 1
                    return Outcome.HIT, value
                stats.bypassed += 1
                return Outcome.BYPASS, None
            self._finish(namespace, key, Outcome.BYPASS, None)  # the holder vanished
        # Take the lease before the first await: a concurrent lookup of this key must
        # find the flight, not start its own.
        flight = _Flight(asyncio.get_running_loop().create_future(), time.monotonic())
        self._flights[(namespace, key)] = flight
        try:
            raw = await self._guarded(self._store.get(await self._key(namespace, key)))
        except StoreUnavailable:
            stats.bypassed += 1
            return Outcome.LEASE, None  # compute; its fill still reaches concurrent waiters
        except BaseException:
            self._finish(namespace, key, Outcome.BYPASS, None)
            raise
        if raw is not None:
            ok, value = decode(raw, self._versions.get(namespace, 1))
            if ok:
                stats.hits += 1
                self._finish(namespace, key, Outcome.HIT, value)
                return Outcome.HIT, value
            stats.stale += 1
        stats.misses += 1
        return Outcome.LEASE, None

    async def fill(self, namespace: str, key: str, value: Any) -> None:
        stats = self._namespace(namespace)
        self._finish(namespace, key, Outcome.HIT, value)  # waiters get it even if Redis is down
        raw = encode(value, self._versions.get(namespace, 1))
        try:
            store_key = await self._key(namespace, key)
            await self._guarded(self._store.set(store_key, raw, self._ttl[namespace]))
            stats.fills += 1
        except StoreUnavailable:
            pass

    async def abandon(self, namespace: str, key: str) -> None:
        self._finish(namespace, key, Outcome.BYPASS, None)

    async def invalidate(self, namespace: str, key: str | None = None) -> None:
        """Drop one key, or (key None) every entry of the namespace."""
        stats = self._namespace(namespace)
        stats.invalidations += 1
        if key is not None:
            self._finish(namespace, key, Outcome.BYPASS, None)
        try:
            if key is None:
                await self._guarded(self._bump(namespace))
            else:
                await self._guarded(self._store.delete(await self._key(namespace, key)))
        except StoreUnavailable:
            if key is None:
                self._pending_namespaces.add(namespace)
            else:
                self._pending_keys.add((namespace, key))

    @property
    def prefix(self) -> str:
        return self._prefix

    def stats(self) -> dict[str, Any]:
        return {
            "store": {
                "kind": self._store.kind,
                "healthy": self._healthy,
                "errors": self._store_errors,  # the warning metric: store calls that failed
                "entries": self._store.size(),
                "pending_invalidations": len(self._pending_namespaces) + len(self._pending_keys),
            },
            "namespaces": {
                ns: {**asdict(s), "hit_rate": s.hit_rate(), "ttl_s": self._ttl[ns]}
                for ns, s in self._stats.items()
            },
        }

    async def close(self) -> None:
        await self._store.close()

    # -- internals ------------------------------------------------------------------

    def _namespace(self, namespace: str) -> NamespaceStats:
        stats = self._stats.get(namespace)
        if stats is None:
            raise ValueError(f"unknown cache namespace {namespace!r}")
        return stats

    def _finish(self, namespace: str, key: str, outcome: Outcome, value: Any) -> None:
        flight = self._flights.pop((namespace, key), None)
        if flight is not None and not flight.done.done():
            flight.done.set_result((outcome, value))

    async def _key(self, namespace: str, key: str) -> str:
        generation = self._generations.get(namespace)
        if generation is None:
            generation = await self._guarded(self._store.counter(f"{self._prefix}:gen:{namespace}"))
            self._generations[namespace] = generation
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        version = self._versions.get(namespace, 1)
        return f"{self._prefix}:v{FORMAT}:{namespace}:{version}:{generation}:{digest}"

    async def _bump(self, namespace: str) -> None:
        self._generations[namespace] = await self._store.increment(
            f"{self._prefix}:gen:{namespace}"
        )

    async def _guarded(self, call: Any) -> Any:
        """Run one store call; after a failure, skip the store for `retry_after_s`."""
        if time.monotonic() < self._down_until:
            call.close()  # an un-awaited coroutine: close it instead of leaking a warning
            raise StoreUnavailable("store is marked down")
        try:
            result = await call
        except StoreUnavailable as e:
            self._store_errors += 1
            self._down_until = time.monotonic() + self._retry_after
            if self._healthy:
                log.warning("cache store unavailable (%s); bypassing it", e)
            self._healthy = False
            raise
        if not self._healthy:
            await self._recover()
            # This call's key was built before the outage's invalidations were replayed.
            raise StoreUnavailable("store recovered; this call is not trusted")
        return result

    async def _recover(self) -> None:
        """The store answers again: forget cached generations, replay lost invalidations."""
        self._healthy = True
        self._generations.clear()
        log.warning("cache store is back")
        try:
            for namespace in sorted(self._pending_namespaces):
                await self._bump(namespace)
                self._pending_namespaces.discard(namespace)
            for namespace, key in sorted(self._pending_keys):
                await self._store.delete(await self._key(namespace, key))
                self._pending_keys.discard((namespace, key))
        except StoreUnavailable:
            self._healthy = False
            self._down_until = time.monotonic() + self._retry_after
            raise
