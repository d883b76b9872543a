"""An isolated pipeline for one chaos run: the medallion pipeline of ``bench.pipeline_env``
plus the run's own analytics topics, Redis key prefixes and invalidation channel.

Everything the run creates is named after its run id and removed afterwards (the Redis keys
included), so a chaos run can share a stack with other pipelines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from bench.pipeline_env import (
    PipelineNames,
    SinkEnv,
    pipeline_environment,
    with_analytics_outputs,
)
from config.settings import Settings

CHAOS_NAMES = PipelineNames("bv_chaos_", "bvchaos", "bv-chaos-", "bv-chaos-")
#: The run's revenue retention is about this long, so the load (20 days back, see
#: ``chaos.runner.DAYS_BACK``) holds orders beyond it and within it.
CHAOS_RETENTION_DAYS = 10
#: ... and one hourly window leaves retention this long after the environment is made,
#: while load and faults run: its orders are applied before, and late after (issue 22).
CROSSING_AFTER = timedelta(seconds=100)


def crossing_retention(
    moment: datetime, days: int, size: timedelta = timedelta(hours=1)
) -> timedelta:
    """A retention of ``days`` days plus less than one window ``size`` at which a window
    edge (window end + retention) falls exactly at ``moment``."""
    base = moment - timedelta(days=days)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    window_end = base - (base - epoch) % size
    return moment - window_end


def iso_duration(value: timedelta) -> str:
    """``value`` as an ISO 8601 duration, for a ``BV_*`` environment variable."""
    return f"P{value.days}DT{value.seconds}.{value.microseconds:06d}S"


@dataclass(frozen=True)
class ChaosEnv:
    """The pipeline (``sink``) and the settings every worker of the run shares."""

    sink: SinkEnv

    @property
    def settings(self) -> Settings:
        return self.sink.settings

    @property
    def run_id(self) -> str:
        return self.sink.run_id

    @property
    def medallion_group(self) -> str:
        return self.sink.group

    def worker_env(self) -> dict[str, str]:
        """Environment of a ``bitvelocity worker`` subprocess on this run's pipeline."""
        s = self.settings
        return {
            **self.sink.worker_env(),
            "BV_TOPICS__HOURLY_REVENUE": s.topics.hourly_revenue,
            "BV_TOPICS__CUSTOMER_FEATURES": s.topics.customer_features,
            "BV_TOPICS__PRODUCT_UPDATES": s.topics.product_updates,
            "BV_TOPICS__LATE_EVENTS": s.topics.late_events,
            "BV_TOPICS__OPENLINEAGE": s.topics.openlineage,
            # The run's own analytics changelog: the default topic would restore other runs'
            # state (order ids overlap between runs' databases).
            "BV_TOPICS__ANALYTICS_STATE": s.topics.analytics_state,
            "BV_FEATURES__REDIS_PREFIX": s.features.redis_prefix,
            "BV_FEATURES__IDLE_PARTITION_AFTER": "PT1S",
            "BV_WINDOWS__RETENTION": iso_duration(s.windows.retention),
            "BV_CACHE__KEY_PREFIX": s.cache.key_prefix,
            "BV_CACHE__CHANNEL": s.cache.channel,
        }


def derive_chaos_env(env: SinkEnv) -> ChaosEnv:
    """The run's own names for everything its workers write. The analytics outputs (topics,
    and above all the state changelog) come from ``with_analytics_outputs``: a worker on the
    stack's default changelog restored other pipelines' state (the same order and item ids,
    another database), which surfaced as preferred_category mismatches (I4)."""
    run = env.run_id
    settings = with_analytics_outputs(env).settings
    prefix = settings.topics.cdc_prefix
    crossing = datetime.now(UTC) + CROSSING_AFTER
    retention = crossing_retention(
        crossing, CHAOS_RETENTION_DAYS, settings.windows.hourly_revenue_size
    )
    derived = settings.model_copy(
        update={
            "windows": settings.windows.model_copy(update={"retention": retention}),
            "topics": settings.topics.model_copy(
                update={
                    "product_updates": f"{prefix}.product-updates",
                    "openlineage": f"{prefix}.openlineage",
                }
            ),
            "features": settings.features.model_copy(
                update={"redis_prefix": f"bv:chaos:{run}:features:customer:"}
            ),
            "cache": settings.cache.model_copy(
                update={"key_prefix": f"bv:chaos:{run}:cache", "channel": f"bv:chaos:{run}:inv"}
            ),
        }
    )
    return ChaosEnv(SinkEnv(derived, run))


@contextlib.contextmanager
def chaos_environment(base: Settings, *, batch_max_records: int = 500) -> Iterator[ChaosEnv]:
    """A fresh isolated pipeline; its database, connector, topics and Redis keys go after.

    The derived topics are named under the CDC prefix, so ``pipeline_environment`` removes
    them with the CDC topics.
    """
    with pipeline_environment(base, batch_max_records=batch_max_records, names=CHAOS_NAMES) as sink:
        env = derive_chaos_env(sink)
        try:
            yield env
        finally:
            _delete_redis_keys(env.settings, f"bv:chaos:{env.run_id}:*")


def _delete_redis_keys(settings: Settings, pattern: str) -> None:
    r = settings.redis
    client = redis.Redis(
        host=r.host, port=r.port, username=r.client_auth()[0], password=r.client_auth()[1], db=r.db
    )
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
