"""The shared cache: namespaces with TTLs over Redis or a bounded in-memory store.

`namespaces.Namespace` names what is cached; `core.CacheCore` is the logic the cache
actor runs (single-flight leases, invalidation, Redis outage bypass, counters);
`client.Cache` is what callers use (`get_or_compute`).
"""
