"""Lag per partition from committed offsets and high watermarks (values worked by hand)."""

from __future__ import annotations

from observability.lag import PartitionKey, PartitionLag, Watermarks, compute_lag

T = "bitvelocity.public.orders"


def test_lag_is_high_watermark_minus_next_offset_to_consume() -> None:
    lags = compute_lag(
        {PartitionKey(T, 0): 90, PartitionKey(T, 1): 40},
        {PartitionKey(T, 1): Watermarks(0, 40), PartitionKey(T, 0): Watermarks(0, 100)},
    )
    assert lags == [PartitionLag(T, 0, 10), PartitionLag(T, 1, 0)]


def test_partition_without_committed_offset_lags_by_all_retained_records() -> None:
    assert compute_lag({}, {PartitionKey(T, 2): Watermarks(25, 75)}) == [PartitionLag(T, 2, 50)]


def test_committed_offset_below_retention_counts_from_the_low_watermark() -> None:
    lags = compute_lag({PartitionKey(T, 0): 5}, {PartitionKey(T, 0): Watermarks(20, 30)})
    assert lags == [PartitionLag(T, 0, 10)]


def test_lag_is_never_negative_when_the_watermark_is_stale() -> None:
    lags = compute_lag({PartitionKey(T, 0): 31}, {PartitionKey(T, 0): Watermarks(0, 30)})
    assert lags == [PartitionLag(T, 0, 0)]


def test_partitions_without_watermarks_are_not_reported() -> None:
    assert compute_lag({PartitionKey(T, 9): 3}, {}) == []
