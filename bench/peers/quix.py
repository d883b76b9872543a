"""The Quix Streams peer, in its own virtual environment, on the run's topics.

The environment (``bench/peers/.venv-quix``) is made on first use from PyPI with the pins of
``quix-requirements.txt`` (quixstreams pins an older confluent-kafka than ours, so it cannot
share our virtualenv), and remade when that file changes. ``quix_app.py`` then runs there as
a child process, from offset 0 with its own consumer group, into a fresh database.

Rate: from the first bronze row in PostgreSQL until both bronze tables hold every record
(polled every 0.1 s). CPU and peak RSS are the child's over that span (``/proc``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.harness import BenchContext, Row, delete_topics_named, scenario
from bench.peers.proc import cpu_seconds, peak_rss_mb
from sinks.postgres.connection import connect

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-quix"
REQUIREMENTS = HERE / "quix-requirements.txt"
APP = HERE / "quix_app.py"
TABLES = {"orders": "quix_bronze_orders", "order_items": "quix_bronze_order_items"}


def ensure_venv() -> Path:
    """The peer's interpreter; creates or refreshes its virtualenv when the pins changed."""
    python = VENV / "bin" / "python"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".bench-installed"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603 - our pinned requirements file
        [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
    )
    stamp.write_text(want + "\n")
    return python


async def _counts(connection: asyncpg.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES.values():
        exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{table}")
        counts[table] = (
            await connection.fetchval(f"SELECT count(*) FROM public.{table}")  # noqa: S608
            if exists
            else 0
        )
    return counts


@scenario("quix", "Quix Streams 3 peer: bronze sink + hourly revenue (own venv)", heavy=True)
async def quix(context: BenchContext) -> list[Row]:
    python = await asyncio.to_thread(ensure_venv)
    settings = context.settings
    database = await context.warehouses.fresh("quix")
    group = context.group("quix")
    context.cleanups.append(lambda: delete_topics_named(context.bootstrap, f"repartition__{group}"))
    context.cleanups.append(lambda: delete_topics_named(context.bootstrap, f"changelog__{group}"))
    state_dir = tempfile.mkdtemp(prefix="bv-bench-quix-")
    pg = settings.postgres
    config = {
        "bootstrap": context.bootstrap,
        "registry": settings.registry.confluent_url,
        "group": group,
        "state_dir": state_dir,
        "orders_topic": context.cdc.topics["orders"],
        "items_topic": context.cdc.topics["order_items"],
        "postgres": {
            "host": pg.host,
            "port": pg.port,
            "database": database,
            "user": pg.admin_user,
            "password": pg.admin_password.get_secret_value(),
        },
    }
    expected = {
        TABLES[table]: sum(v for (t, _), v in context.cdc.marks.items() if t == topic)
        for table, topic in context.cdc.topics.items()
    }
    log = Path(state_dir) / "quix.log"
    timeout = context.options.peer_timeout_s
    with log.open("w") as output:
        child = subprocess.Popen(  # noqa: S603, ASYNC220 - our venv's app; returns at once
            [str(python), str(APP), "--config", json.dumps(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    connection = await connect(settings.postgres, database)
    try:
        deadline = time.monotonic() + timeout + 60  # + start-up of the interpreter
        started: float | None = None
        cpu_start = 0.0
        counts = await _counts(connection)
        while sum(counts.values()) < sum(expected.values()):
            if child.poll() is not None:
                raise RuntimeError(f"the Quix app exited {child.returncode}: {_tail(log)}")
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
            counts = await _counts(connection)
            if started is None and any(counts.values()):
                started = time.perf_counter()
                cpu_start = cpu_seconds(child.pid)
                deadline = time.monotonic() + timeout
        finished = time.perf_counter()
        cpu = cpu_seconds(child.pid) - cpu_start
        rss = peak_rss_mb(child.pid)
    finally:
        await connection.close()
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(child.wait, 30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        shutil.rmtree(state_dir, ignore_errors=True)
    if started is None:
        raise RuntimeError(f"the Quix app wrote no row in {timeout:.0f} s")
    done = sum(counts.values())
    partial = done < sum(expected.values())
    return [
        Row(
            "quix",
            "Quix Streams 3.28 (bronze sink + hourly revenue)",
            done / (finished - started),
            records=done,
            seconds=finished - started,
            figures={
                "cpu_s_per_1k_records": round(cpu / max(done, 1) * 1000, 4),
                "peak_rss_mb": round(rss, 1),
            },
            status="partial" if partial else "ok",
            note=f"stopped after {timeout:.0f} s" if partial else "first row -> last row",
        )
    ]


def _tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-6:])
    except OSError:
        return "(no log)"
