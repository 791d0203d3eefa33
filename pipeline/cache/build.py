"""The cache core from configuration: Redis when REDIS_URL is set, else a bounded memory store."""

from __future__ import annotations

from pipeline.cache.core import CacheCore
from pipeline.cache.store import KeyValueStore, MemoryStore, RedisStore
from pipeline.config import CacheArgs

# Bump a namespace's version when the shape of its values changes: old entries are
# then never read (see core.py).
VALUE_VERSIONS = {"loads": 1, "inventory": 1, "equipment": 1, "search": 1, "llm": 1, "tts": 1}


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
