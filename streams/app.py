"""The Faust application: one factory, configured from ``Settings``, nothing opened at import.

Web views bind to loopback unless ``BV_WEB__HOST`` says otherwise. Faust's built-in views
(``/router``, ``/table``, ``/graph``, stats, ``/performance``) are switched off: they would
serve table contents without the ``BV_WEB__TOKEN`` check our own views make. Table state lives in
RocksDB (rocksdict) under the state folder and is backed by changelog topics, so a
restarted worker recovers it.
"""

from __future__ import annotations

import faust

from config.settings import Settings


def create_app(settings: Settings, *, store: str = "rocksdb://") -> faust.App:
    """A Faust app for ``settings``; ``store="memory://"`` for broker-free tests."""
    return faust.App(
        settings.app_name,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store=store,
        datadir=str(settings.stack.state_dir / "faust"),
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=1,
        web_bind=settings.web.host,
        web_host=settings.web.host,
        web_port=settings.web.port,
        web_in_thread=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        autodiscover=False,
    )
