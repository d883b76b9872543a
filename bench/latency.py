"""Latency under load: the sink fed at a fraction of its measured max rate, for a while.

A producer process replays the run's records (in their Kafka timestamp order, repeated as
often as needed) into fresh topics at ``latency_fraction`` x the sink's max rate measured
earlier in the same run, for ``latency_seconds``; a fresh sink consumes them as they come.
Each record's latency is its batch's PostgreSQL commit time minus its Kafka timestamp.
"""

from __future__ import annotations

import math
import multiprocessing
from collections import Counter

from admin.capture import delete_topics_with_prefix
from bench.harness import BenchContext, Row, scenario
from bench.sink import (
    ReplayRecord,
    create_topics,
    latencies_ms,
    percentile,
    replay,
    replay_plan,
    run_sink,
    timestamps,
)


def replay_repeated(bootstrap: str, one_pass: list[ReplayRecord], count: int, rate: float) -> None:
    """``replay`` of the first ``count`` records of ``one_pass`` repeated (in the child, so
    only one pass is pickled to it)."""
    passes = math.ceil(count / len(one_pass))
    replay(bootstrap, (one_pass * passes)[:count], rate)


#: Seconds after the first commit that ``p99_ms_after_warm_up`` leaves out.
WARM_UP_S = 5.0


@scenario("latency", "latency under load: the sink at half its measured max rate")
async def latency(context: BenchContext) -> list[Row]:
    options = context.options
    max_rate = context.rate_of("sink")
    if not max_rate:
        return [
            Row(
                "latency",
                "latency at half max",
                None,
                status="unavailable",
                note="needs the sink scenario's max rate",
            )
        ]
    rate = max_rate * options.latency_fraction
    count = max(1, round(rate * options.latency_seconds))
    prefix = f"{context.settings.topics.cdc_prefix}lat"
    topic_map = {
        t: t.replace(context.settings.topics.cdc_prefix, prefix, 1) for t in context.topics
    }
    context.cleanups.append(lambda: delete_topics_with_prefix(context.bootstrap, prefix))
    create_topics(context.bootstrap, dict.fromkeys(topic_map.values(), context.cdc.partitions))
    one_pass = replay_plan(context.records, topic_map, 1)
    sent = (one_pass * math.ceil(count / len(one_pass)))[:count]
    marks = dict(Counter((topic, partition) for topic, partition, *_ in sent))
    del sent
    database = await context.fresh_warehouse("latency")
    producer = multiprocessing.get_context("spawn").Process(
        target=replay_repeated,
        args=(context.bootstrap, one_pass, count, rate),
        name="bench-latency-producer",
    )
    try:
        run = await run_sink(
            context.settings,
            database=database,
            topics=list(topic_map.values()),
            group=context.group("latency"),
            expected=marks,
            timeout_s=options.latency_seconds + options.phase_timeout_s,
            on_assigned=producer.start,
        )
        producer.join(timeout=60)
    finally:
        if producer.is_alive():
            producer.terminate()
            producer.join(timeout=10)
    stamps = timestamps(context.bootstrap, marks, context.group("latency-read"))
    values = latencies_ms(run.commits, stamps)
    # The first seconds hold the cold start (schemas fetched, statements planned, the backlog
    # of the first writes): reported beside the whole run's percentiles, not instead of them.
    steady = latencies_ms(run.commits, stamps, skip_s=WARM_UP_S) or values
    first = min(s[0] for s in stamps.values())
    last = max(s[-1] for s in stamps.values())
    offered = len(values) / max((last - first) / 1000, 1e-9)
    return [
        Row(
            "latency",
            f"ours: sink latency at {options.latency_fraction:.0%} of max",
            offered,
            "records/s offered",
            len(values),
            (last - first) / 1000,
            figures={
                "target_rate_per_s": round(rate),
                "p50_ms": round(percentile(values, 0.50), 1),
                "p99_ms": round(percentile(values, 0.99), 1),
                "p999_ms": round(percentile(values, 0.999), 1),
                "max_ms": round(max(values), 1),
                "p99_ms_after_warm_up": round(percentile(steady, 0.99), 1),
                "cpu_s_per_1k_records": round(run.cpu_s_per_1k, 4),
                "peak_rss_mb": run.peak_rss_mb,
            },
            note=(
                f"Kafka timestamp -> PostgreSQL commit, {options.latency_seconds:.0f} s; "
                f"p99 {percentile(steady, 0.99):,.0f} ms after the first {WARM_UP_S:.0f} s"
            ),
        )
    ]
