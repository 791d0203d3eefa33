"""The cache actor: one named Ray actor per application, shared by every replica.

Replicas get it with `get_if_exists`, so the first one creates it and the rest join.
It is owned by the replica that created it; if that replica goes away, so does the
actor, and the next failed call makes a new one (its Redis entries survive; an
in-memory cache starts empty). The actor takes no CPU reservation: its work is a
dictionary or a Redis round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

from pipeline.cache.build import build_cache_core
from pipeline.cache.client import Cache, CacheUnavailable
from pipeline.cache.core import Outcome
from pipeline.config import CacheArgs, Settings

log = logging.getLogger("jarvis.cache")
ACTOR_NAME = "jarvis-cache"
ACTOR_NAMESPACE = "jarvis-serve"
RESOLVE_RETRY_S = 5.0


@ray.remote(num_cpus=0, max_restarts=0)
class CacheActor:
    def __init__(self, args: CacheArgs) -> None:
        self._core = build_cache_core(args, Settings())

    async def lookup(self, namespace: str, key: str) -> tuple[Outcome, Any]:
        return await self._core.lookup(namespace, key)

    async def fill(self, namespace: str, key: str, value: Any) -> None:
        await self._core.fill(namespace, key, value)

    async def abandon(self, namespace: str, key: str) -> None:
        await self._core.abandon(namespace, key)

    async def invalidate(self, namespace: str, key: str | None = None) -> None:
        await self._core.invalidate(namespace, key)

    async def stats(self) -> dict[str, Any]:
        return self._core.stats()


class ActorBackend:
    """`CacheBackend` over the actor handle; finds (or makes) the actor again after a failure."""

    def __init__(self, args: CacheArgs) -> None:
        self._args = args
        self._handle: ActorHandle | None = None
        self._retry_at = 0.0

    def _actor(self) -> ActorHandle:
        if self._handle is None:
            if time.monotonic() < self._retry_at:
                raise CacheUnavailable("cache actor unavailable")
            try:
                self._handle = CacheActor.options(  # type: ignore[attr-defined]
                    name=ACTOR_NAME, namespace=ACTOR_NAMESPACE, get_if_exists=True
                ).remote(self._args)
            except (RayError, ValueError) as e:
                self._retry_at = time.monotonic() + RESOLVE_RETRY_S
                raise CacheUnavailable(str(e)) from e
        return self._handle

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._actor(), method).remote(*args)
        except RayError as e:
            self._handle = None  # the actor died: make or find a new one next time
            self._retry_at = time.monotonic() + RESOLVE_RETRY_S
            raise CacheUnavailable(type(e).__name__) from e

    async def lookup(self, namespace: str, key: str) -> tuple[Outcome, Any]:
        outcome, value = await self._call("lookup", namespace, key)
        return Outcome(outcome), value

    async def fill(self, namespace: str, key: str, value: Any) -> None:
        await self._call("fill", namespace, key, value)

    async def abandon(self, namespace: str, key: str) -> None:
        await self._call("abandon", namespace, key)

    async def invalidate(self, namespace: str, key: str | None = None) -> None:
        await self._call("invalidate", namespace, key)

    async def stats(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._call("stats"), timeout=5)


def shared_cache(args: CacheArgs) -> tuple[Cache | None, ActorBackend]:
    """The `Cache` callers use (None when disabled) and the backend (for stats)."""
    backend = ActorBackend(args)
    return (Cache(backend, call_timeout_s=args.lease_timeout_s + 2) if args.enabled else None), (
        backend
    )
