"""Cost of the per-batch metric calls a sink makes, against the batch's time budget.

Not yet the acceptance benchmark of issue 8 (pipeline throughput with metrics on vs off in
one run): that needs the bronze/silver sink. This measures what the sink will add per batch
(record_batch + record_sink_commit + record_committed_event_time + a lag update over 3
partitions) and relates it to the time a batch takes at the DESIGN.md section 12 target rate.

    .venv/bin/python bench/metrics_overhead.py [--batches 20000] [--batch-records 5000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from observability.lag import PartitionLag
from observability.metrics import Metrics

TARGET_RECORDS_PER_S = 20_000  # DESIGN.md section 12, per worker process


def per_batch_cost_s(batches: int, batch_records: int) -> float:
    metrics = Metrics(CollectorRegistry())
    lags = [PartitionLag("bitvelocity.public.orders", p, 0) for p in range(3)]
    newest = datetime.now(UTC)
    started = time.perf_counter()
    for _ in range(batches):
        metrics.record_batch("bronze", batch_records, 0.05)
        metrics.record_sink_commit(batch_records, 0.02)
        metrics.record_committed_event_time("bronze", newest)
        metrics.set_lag(lags)
    return (time.perf_counter() - started) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--batch-records", type=int, default=5_000)
    args = parser.parse_args()
    cost = per_batch_cost_s(args.batches, args.batch_records)
    for size in (100, 500, args.batch_records):
        budget = size / TARGET_RECORDS_PER_S
        print(
            f"batch of {size:>5} records: metrics {cost * 1e6:.1f} us per batch = "
            f"{cost / budget * 100:.3f} % of the batch's time at {TARGET_RECORDS_PER_S:,} rec/s"
        )


if __name__ == "__main__":
    main()
