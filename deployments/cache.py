"""The cache actor: one named Ray actor per cluster namespace, shared by every replica.

Replicas get it with `get_if_exists`, so the first one creates it and the rest join. It
is detached: owned by no replica, it outlives replica restarts and scale-downs (an
in-memory cache would otherwise be lost with whichever replica happened to create it),
and it ends with the cluster. Each replica hands it its configuration at first use
(`configure`): after a redeploy with other TTLs or another REDIS_URL, the new replicas
rebuild it. It takes no CPU reservation: its work is a dictionary or a Redis round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError
from ray.util.metrics import Counter

from pipeline.cache.build import build_cache_core
from pipeline.cache.client import Cache, CacheUnavailable
from pipeline.cache.core import Outcome
from pipeline.config import CacheArgs, Settings

log = logging.getLogger("jarvis.cache")
ACTOR_NAME = "jarvis-cache"
ACTOR_NAMESPACE = "jarvis-serve"
RESOLVE_RETRY_S = 5.0
# A lease is a miss: the caller computes the value and fills it in.
LOOKUP_TAG = {Outcome.HIT: "hit", Outcome.LEASE: "miss", Outcome.BYPASS: "bypass"}


@ray.remote(num_cpus=0, max_restarts=-1)
class CacheActor:
    def __init__(self, args: CacheArgs, redis_url: str | None) -> None:
        self._config = (args, redis_url)
        self._core = build_cache_core(args, redis_url)
        # A plain actor, not a replica: Ray's own metrics API (README, Metrics).
        self._lookups = Counter(
            "jarvis_cache_lookups",
            description="Cache lookups by namespace and outcome (hit, miss, coalesced, ...).",
            tag_keys=("namespace", "outcome"),
        )

    async def configure(self, args: CacheArgs, redis_url: str | None) -> None:
        if (args, redis_url) != self._config:
            old, self._core = self._core, build_cache_core(args, redis_url)
            self._config = (args, redis_url)
            await old.close()
            log.info("cache reconfigured")

    async def lookup(self, namespace: str, key: str) -> tuple[Outcome, Any]:
        outcome, value = await self._core.lookup(namespace, key)
        self._lookups.inc(tags={"namespace": namespace, "outcome": LOOKUP_TAG[Outcome(outcome)]})
        return outcome, value

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
        url = Settings().redis_url
        self._redis_url = url.get_secret_value() if url is not None else None
        self._handle: ActorHandle | None = None
        self._retry_at = 0.0

    async def _actor(self) -> ActorHandle:
        if self._handle is None:
            if time.monotonic() < self._retry_at:
                raise CacheUnavailable("cache actor unavailable")
            handle = CacheActor.options(  # type: ignore[attr-defined]
                name=ACTOR_NAME,
                namespace=ACTOR_NAMESPACE,
                get_if_exists=True,
                lifetime="detached",
            ).remote(self._args, self._redis_url)
            await handle.configure.remote(self._args, self._redis_url)
            self._handle = handle
        return self._handle

    async def _call(self, method: str, *args: Any) -> Any:
        for attempt in (1, 2):  # a vanished actor is looked up (or made) again once at once
            try:
                return await getattr(await self._actor(), method).remote(*args)
            except (RayError, ValueError) as e:
                self._handle = None
                if attempt == 2:
                    self._retry_at = time.monotonic() + RESOLVE_RETRY_S
                    raise CacheUnavailable(type(e).__name__) from e
        raise AssertionError("unreachable")

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

    async def ready(self) -> bool:
        try:
            await self.stats()
        except (CacheUnavailable, TimeoutError):
            return False
        return True


def shared_cache(args: CacheArgs) -> tuple[Cache | None, ActorBackend]:
    """The `Cache` callers use (None when disabled) and the backend (for stats)."""
    backend = ActorBackend(args)
    cache = Cache(backend, call_timeout_s=args.lease_timeout_s + 2) if args.enabled else None
    return cache, backend
