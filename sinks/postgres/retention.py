"""The pure partition-retention decision: which children are past retention, and their
archive names. No database here; ``sinks/postgres/partitions.py`` reads the catalog and acts.

A child is past retention when all of its rows are older than ``now - retention``: its
exclusive upper bound is at or before that cutoff. The default partition, a child without a
time upper bound (MAXVALUE, non-time keys) and anything unparsed are never past retention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from sinks.postgres.partition_bounds import PartitionBounds

V = TypeVar("V")
#: PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
MAX_IDENTIFIER = 63


def retention_cutoff(now: datetime, retention: timedelta) -> datetime:
    """The instant before which rows have outlived ``retention``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now - retention


def is_past_retention(bounds: PartitionBounds, now: datetime, retention: timedelta) -> bool:
    """True when every row the child can hold is older than ``now - retention``."""
    if bounds.is_default or bounds.upper is None:
        return False
    return bounds.upper <= retention_cutoff(now, retention)


def is_ahead(bounds: PartitionBounds, now: datetime) -> bool:
    """True for a premade child: it starts after ``now`` (the current one does not count)."""
    return not bounds.is_default and bounds.lower is not None and bounds.lower > now


def setting_for(parent: str, values: Mapping[str, V]) -> tuple[bool, V | None]:
    """``(found, value)`` for ``schema.table``: its exact key first, then ``schema.*``."""
    if parent in values:
        return True, values[parent]
    wildcard = f"{parent.split('.', 1)[0]}.*"
    if wildcard in values:
        return True, values[wildcard]
    return False, None


def unknown_keys(keys: Iterable[str], parents: Iterable[str], *, wildcards: bool) -> list[str]:
    """Keys naming no managed parent; ``schema.*`` keys are checked only when ``wildcards``."""
    known = set(parents)
    schemas = {parent.split(".", 1)[0] for parent in known}
    unknown = []
    for key in keys:
        schema, _, table = key.partition(".")
        if table == "*":
            if wildcards and schema not in schemas:
                unknown.append(key)
        elif key not in known:
            unknown.append(key)
    return sorted(unknown)


def archive_table_name(parent_schema: str, parent_table: str, bounds: PartitionBounds) -> str:
    """``<schema>_<table>_<from>_<to>``: unique across parents (silver.orders and public.orders
    both have an ``orders_p2024_01``) and readable without the catalog."""
    return fit_identifier(
        f"{parent_schema}_{parent_table}_{_stamp(bounds.lower)}_{_stamp(bounds.upper)}"
    )


def archive_index_name(child_name: str, archive_name: str, index_name: str) -> str:
    """An index of an archived child renamed after it, so that indexes of children of
    different parents never collide in the archive schema."""
    if index_name.startswith(child_name):
        return fit_identifier(archive_name + index_name[len(child_name) :])
    return fit_identifier(f"{archive_name}_{index_name}")


def fit_identifier(name: str) -> str:
    """``name`` if PostgreSQL keeps it whole, else a prefix plus a hash of the whole name."""
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_IDENTIFIER - len(digest) - 1
    prefix = name.encode()[:keep].decode(errors="ignore")
    return f"{prefix}_{digest}"


def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return "min"
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return f"{moment:%Y%m%d}"
    return f"{moment:%Y%m%dT%H%M%S}"
