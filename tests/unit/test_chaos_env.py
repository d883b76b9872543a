"""A chaos run's workers write only under the run's own names (issue 11, I4).

The soak's preferred_category mismatches came from here: the workers were told to use the
stack's default analytics changelog, so the first analytics worker of a run restored the
state of earlier pipelines on the same stack (the same order and item ids, another
database) and their order items counted in this run's category spend.
"""

from __future__ import annotations

from bench.pipeline_env import SinkEnv, derive
from chaos.env import CHAOS_NAMES, derive_chaos_env
from config.settings import Settings


def _worker_env(run_id: str) -> dict[str, str]:
    sink = SinkEnv(derive(Settings(), run_id, 500, CHAOS_NAMES), run_id)
    return derive_chaos_env(sink).worker_env()


def test_every_topic_a_worker_writes_is_the_runs_own() -> None:
    env = _worker_env("0a0a0a")
    topics = {
        k: v for k, v in env.items() if k.startswith("BV_TOPICS__") and k != "BV_TOPICS__CDC_PREFIX"
    }
    assert "BV_TOPICS__ANALYTICS_STATE" in topics
    assert all(v.startswith("bvchaos0a0a0a.") for v in topics.values()), topics


def test_two_runs_share_no_changelog_redis_prefix_or_channel() -> None:
    one, two = _worker_env("0a0a0a"), _worker_env("0b0b0b")
    shared = {k for k in one if k != "BV_SINK__BATCH_MAX_RECORDS" and one[k] == two.get(k)}
    assert shared == {"BV_FEATURES__IDLE_PARTITION_AFTER"}
    defaults = Settings()
    assert one["BV_TOPICS__ANALYTICS_STATE"] != defaults.topics.analytics_state
