"""The cache core from configuration: Redis when REDIS_URL is set, else a bounded memory store."""

from __future__ import annotations

from pipeline.cache.core import CacheCore
from pipeline.cache.namespaces import VALUE_VERSIONS
from pipeline.cache.store import KeyValueStore, MemoryStore, RedisStore
from pipeline.config import CacheArgs


def build_cache_core(args: CacheArgs, redis_url: str | None) -> CacheCore:
    store: KeyValueStore
    if redis_url is not None:
        store = RedisStore(redis_url, timeout_s=args.redis_timeout_s)
    else:
        store = MemoryStore(
            max_entries=args.memory_max_entries, max_bytes=args.memory_max_mb * 2**20
        )
    return CacheCore(
        store,
        args.ttl_s.model_dump(),
        versions=VALUE_VERSIONS,
        prefix=args.key_prefix,
        retry_after_s=args.redis_retry_s,
        lease_timeout_s=args.lease_timeout_s,
    )
