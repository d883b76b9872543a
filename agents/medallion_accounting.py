"""What a committed medallion batch counts: the sink's totals, the metrics, one log line."""

from __future__ import annotations

import logging
from collections import Counter

from agents.medallion_commit import SinkStats
from observability.logging import distinct_trace_ids
from observability.metrics import Metrics
from records.change_events import ChangeEvent
from sinks.postgres.batch import ConsumedRecord, PlannedBatch
from sinks.postgres.medallion import BatchOutcome

log = logging.getLogger("bitvelocity.medallion")
PIPELINE = "medallion"


def account_batch(
    stats: SinkStats,
    metrics: Metrics,
    plan: PlannedBatch,
    outcome: BatchOutcome,
    seconds: float,
    records: list[ConsumedRecord],
) -> None:
    """Count a committed batch in ``stats`` and the metrics, and log it."""
    stats.batches += 1
    stats.consumed += plan.consumed
    stats.bronze_rows += outcome.bronze_rows
    stats.dead_letters += outcome.dead_letters
    stats.filtered += outcome.filtered
    stats.outcomes.append(outcome)
    metrics.record_batch(PIPELINE, plan.consumed, seconds, "ok")
    metrics.record_sink_commit(outcome.bronze_rows + outcome.silver_rows, seconds)
    # Dead letters count as errors of their class; the DLQ counter is the publisher's.
    for reason, count in Counter(letter.reason for letter in plan.dead_letters).items():
        metrics.record_errors(PIPELINE, reason, count)
    newest = max(
        (r.decoded.committed_at for r in records if isinstance(r.decoded, ChangeEvent)),
        default=None,
    )
    if newest is not None:
        metrics.record_committed_event_time(PIPELINE, newest)
    log.info(
        "committed %s[%d] %d..%d: %d bronze, %d silver, %d dead letters, %d filtered",
        plan.topic,
        plan.partition,
        plan.first_offset,
        plan.last_offset,
        outcome.bronze_rows,
        outcome.silver_rows,
        outcome.dead_letters,
        outcome.filtered,
        extra={"trace_ids": distinct_trace_ids(r.trace_id for r in records)},
    )
