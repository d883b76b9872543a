"""Cache-aside caches of DESIGN.md section 9: L1 in process, L2 in Redis, CDC-driven eviction.

Invariant I5: no stale value survives an invalidation. See ``cache.aside`` for how.
"""
