"""The lower anchor: a naive Faust agent that awaits one INSERT per record.

What DESIGN.md section 12 warns against ("per-record awaits on I/O are the usual way to miss
these by 50x"), measured so the distance is a figure of the run: faust-streaming's own
consumer, our decoder, one ``await connection.execute(INSERT ...)`` per record (autocommit,
no batching) into a bronze-like table. It runs in its own process for a time budget, not to
the end (it would take minutes); its rate is records done over the time taken.

    python -m bench.peers.naive_faust --topics A,B --database DB --expected N --budget-s S
writes a JSON file with ``records``, ``seconds``, ``cpu_s`` and ``peak_rss_mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import BenchContext, Row, delete_topics_named, scenario
from bench.peers.proc import peak_rss_mb

NAIVE_TABLE = "naive_bronze"


def _agent_main(args: argparse.Namespace) -> None:  # pragma: no cover - runs in the child
    import faust

    from config.settings import load_settings
    from records.change_events import ChangeEvent
    from serdes.avro import AvroCodec
    from serdes.debezium import DebeziumAvroDecoder
    from serdes.registry import RegistryClient
    from sinks.postgres.connection import connect

    settings = load_settings()
    app = faust.App(
        args.app_id,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        datadir=args.datadir,
        key_serializer="raw",
        value_serializer="raw",
        topic_replication_factor=1,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    topic = app.topic(*args.topics.split(","), key_type=bytes, value_type=bytes)
    decoder = DebeziumAvroDecoder(AvroCodec(RegistryClient(settings.registry)))
    state: dict[str, Any] = {"count": 0, "started": None, "done": False}

    @app.agent(topic)
    async def naive(stream: Any) -> None:
        connection = await connect(settings.postgres, args.database)
        async for event in stream.events():
            if state["done"]:
                continue
            if state["started"] is None:
                state["started"] = time.perf_counter()
                state["cpu"] = time.process_time()
            message = event.message
            change = decoder.decode(message.key, message.value)
            if isinstance(change, ChangeEvent):
                await connection.execute(
                    f"INSERT INTO {NAIVE_TABLE} (topic, partition, offset_, op, payload) "  # noqa: S608
                    "VALUES ($1, $2, $3, $4, $5)",
                    message.topic,
                    message.partition,
                    message.offset,
                    str(change.op.value),
                    json.dumps(dict(change.after or change.before or {}), default=str),
                )
            state["count"] += 1
            elapsed = time.perf_counter() - state["started"]
            if state["count"] >= args.expected or elapsed >= args.budget_s:
                state["done"] = True
                _write_result(
                    args.result,
                    json.dumps(
                        {
                            "records": state["count"],
                            "seconds": elapsed,
                            "cpu_s": time.process_time() - state["cpu"],
                            # /proc, not ru_maxrss: that one keeps the parent's peak
                            # across fork + exec.
                            "peak_rss_mb": peak_rss_mb(os.getpid()),
                        }
                    ),
                )
                os.kill(os.getpid(), signal.SIGTERM)

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


@scenario("naive-faust", "naive Faust agent, one awaited INSERT per record (lower anchor)")
async def naive_faust(context: BenchContext) -> list[Row]:
    from sinks.postgres.connection import connect

    options = context.options
    database = await context.warehouses.fresh("naive")
    connection = await connect(context.settings.postgres, database)
    try:
        await connection.execute(
            f"CREATE TABLE {NAIVE_TABLE} (topic text, partition int, offset_ bigint, op text,"
            " payload jsonb, PRIMARY KEY (topic, partition, offset_))"
        )
    finally:
        await connection.close()
    app_id = f"{context.settings.kafka.consumer_group}-naive-{secrets.token_hex(2)}"
    context.groups.append(app_id)
    # Faust declares its assignor's topic whatever topic_allow_declare says.
    context.cleanups.append(lambda: delete_topics_named(context.bootstrap, app_id))
    datadir = tempfile.mkdtemp(prefix="bv-bench-faust-")
    command = [
        sys.executable,
        "-m",
        "bench.peers.naive_faust",
        "--topics",
        ",".join(context.topics),
        "--database",
        database,
        "--expected",
        str(context.data_records),
        "--budget-s",
        str(options.anchor_budget_s),
        "--app-id",
        app_id,
        "--datadir",
        datadir,
        "--result",
        str(Path(datadir) / "result.json"),
    ]
    env = {**os.environ, **_settings_env(context)}
    try:
        result = await _run_child(command, env, options.anchor_budget_s + 120)
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
    records = int(result["records"])
    partial = records < context.data_records
    return [
        Row(
            "naive-faust",
            "naive Faust agent (await per record)",
            records / result["seconds"],
            records=records,
            seconds=result["seconds"],
            figures={
                "cpu_s_per_1k_records": round(result["cpu_s"] / max(records, 1) * 1000, 4),
                "peak_rss_mb": round(result["peak_rss_mb"], 1),
            },
            status="ok",
            note=f"{options.anchor_budget_s:.0f} s budget" if partial else "to the end",
        )
    ]


def _settings_env(context: BenchContext) -> dict[str, str]:
    settings = context.settings
    return {
        "BV_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "BV_REGISTRY__URL": settings.registry.url,
        "BV_POSTGRES__PORT": str(settings.postgres.port),
    }


async def _run_child(command: list[str], env: dict[str, str], limit_s: float) -> dict[str, Any]:
    """Run ``command``; the JSON file it writes is the result (killed after ``limit_s``)."""
    import asyncio

    result = Path(command[command.index("--result") + 1])

    def run() -> tuple[subprocess.CompletedProcess[str], str | None]:
        completed = subprocess.run(  # noqa: S603 - our own interpreter and module
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=limit_s,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
        return completed, result.read_text() if result.exists() else None

    completed, text = await asyncio.to_thread(run)
    if text is not None:
        return dict(json.loads(text))
    tail = (completed.stderr or completed.stdout)[-600:]
    raise RuntimeError(f"{command[2]} exited {completed.returncode} without a result: {tail}")


def _write_result(path: str, text: str) -> None:
    Path(path).write_text(text)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - runs in the child
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--budget-s", type=float, required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--result", required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # faust.Worker parses the command line too
    _agent_main(args)


if __name__ == "__main__":
    main()
