"""Names of everything the caches keep in Redis: value keys, generation keys, the channel.

``<prefix>:<kind>:<id>`` holds a value (``bv:cache:product:42``); ``<prefix>:gen:<kind>:<id>``
holds the key's generation, a token an eviction replaces and a fill compares. The prefix
and channel come from ``CacheSettings`` so tests can run beside the real caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CacheKind(StrEnum):
    PRODUCT = "product"
    CATEGORY = "category"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class CacheKey:
    """One cached entity: its kind and id."""

    kind: CacheKind
    entity_id: int

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.entity_id}"

    @classmethod
    def parse(cls, text: str) -> CacheKey:
        """``product:42`` -> ``CacheKey(PRODUCT, 42)``; ValueError on anything else."""
        kind, _, entity_id = text.partition(":")
        return cls(CacheKind(kind), int(entity_id))


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Redis key names under one prefix."""

    prefix: str = "bv:cache"

    def value(self, key: CacheKey) -> str:
        return f"{self.prefix}:{key}"

    def generation(self, key: CacheKey) -> str:
        return f"{self.prefix}:gen:{key}"

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this key space (values and generations)."""
        return f"{self.prefix}:*"
