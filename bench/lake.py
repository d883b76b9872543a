"""Records/s into Delta per lake-sink worker, against delta-rs's raw ``write_deltalake``.

Run: ``python -m bench.lake [--changes N] [--batch N] [--repeats N] [--json PATH]``.
One run builds an isolated pipeline (``bench.pipeline_env``), lets the seeded load generator
write until the CDC topics hold N records, reads them back, decodes and plans them into the
bronze Arrow batches the sink writes (per topic, ``--batch`` records at a time), then
measures on those same batches, in one process, alternating the arms (best of repeats):

- baseline: ``deltalake.write_deltalake(mode="append", partition_by=["ingestion_date"])``
  of each batch, zstd like ours: the write path a user would call themselves (rows/s);
- ours, write path: ``DeltaBronzeStore.stage`` + ``commit`` of the same batches, with the
  per-partition application transactions that make the sink exactly once (rows/s);
- our decode alone over the same records (the sink's CPU floor: ``bench/decode.py``);
- ours, end to end: ``LakeSink`` from offset 0 with a fresh group and a fresh lake folder,
  consuming, decoding, planning and committing every record, from the partition
  assignment to the last commit (records/s and rows/s).

Not a test: no figure is asserted; it fails only when the sink's table lost or duplicated a
record. Everything it creates (pipeline, groups, lake folders) is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import deltalake
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake
from rich.console import Console
from rich.table import Table

from agents.lakehouse import LakeSink, table_of
from bench.pipeline_env import (
    PipelineNames,
    SinkEnv,
    delete_consumer_groups,
    high_watermarks,
    pipeline_environment,
)
from bench.sink import BenchOptions, decode_records, generate_load, read_records
from config.settings import Settings, load_settings
from serdes.avro import AvroCodec
from serdes.debezium import DebeziumAvroDecoder
from serdes.registry import RegistryClient
from sinks.delta.bronze import BRONZE_SCHEMA, PARTITION_COLUMN, app_id
from sinks.delta.store import DeltaBronzeStore
from sinks.postgres.batch import ConsumedRecord, plan_batch
from streams.runtime import PartitionId

RESULTS = Path(__file__).resolve().parent / "results" / "lake.json"
LAKE_BENCH_NAMES = PipelineNames("bv_lbench_", "bvlbench", "bv-lbench-", "bv-lbench-")
log = logging.getLogger("bitvelocity.bench.lake")
console = Console(width=150)


@dataclass(frozen=True)
class LakeBenchOptions:
    changes: int = 20_000
    batch_max_records: int = 5_000
    repeats: int = 2
    seed: int = 43
    phase_timeout_s: float = 180.0
    json_path: Path = RESULTS


@dataclass(frozen=True)
class Batch:
    """One commit's worth: the bronze rows of one topic's records, and where they end."""

    table: str
    topic: str
    rows: list[tuple[Any, ...]]
    ends: dict[int, int]  # partition -> next offset


def plan_batches(consumed: Sequence[ConsumedRecord], batch: int, source: str) -> list[Batch]:
    """The batches the sink commits: per topic, ``batch`` records at a time, offset order."""
    by_topic: dict[str, list[ConsumedRecord]] = defaultdict(list)
    for record in consumed:
        by_topic[record.topic].append(record)
    planned = []
    for topic, records in by_topic.items():
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            by_partition: dict[int, list[ConsumedRecord]] = defaultdict(list)
            for record in chunk:
                by_partition[record.partition].append(record)
            rows: list[tuple[Any, ...]] = []
            ends = {}
            for partition, members in by_partition.items():
                plan = plan_batch(members, source, bronze_only=True)
                rows += [row for table_rows in plan.bronze.values() for row in table_rows]
                ends[partition] = plan.last_offset + 1
            planned.append(Batch(table_of(topic), topic, rows, ends))
    return planned


def arrow_table(rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    arrays = [
        pa.array(
            [str(v) for v in columns[i]] if field.name == "event_id" else columns[i], field.type
        )
        for i, field in enumerate(BRONZE_SCHEMA)
    ]
    return pa.Table.from_arrays(arrays, schema=BRONZE_SCHEMA)


def baseline_write_deltalake(batches: Sequence[tuple[str, pa.Table]], root: Path) -> float:
    """Seconds for ``write_deltalake`` of every batch (Arrow tables built beforehand)."""
    properties = WriterProperties(compression="ZSTD", compression_level=3)
    for table in {table for table, _ in batches}:  # created before the clock, as for ours
        DeltaTable.create(
            str(root / "bronze" / table), BRONZE_SCHEMA, partition_by=[PARTITION_COLUMN]
        )
    started = time.perf_counter()
    for table, data in batches:
        write_deltalake(
            str(root / "bronze" / table),
            data,
            mode="append",
            partition_by=[PARTITION_COLUMN],
            writer_properties=properties,
        )
    return time.perf_counter() - started


def ours_write_path(settings: Settings, batches: Sequence[Batch], root: Path, group: str) -> float:
    """Seconds for our fence check, stage and commit (with application transactions) of
    every batch: the sink's write path without Kafka."""
    store = DeltaBronzeStore(settings.lake, str(root))
    for table in {b.table for b in batches}:
        store.table(table)  # created before the clock, as a running sink finds them
    started = time.perf_counter()
    for batch in batches:
        targets = {app_id(group, batch.topic, p): end for p, end in batch.ends.items()}
        store.positions(batch.table, list(targets))  # the sink's fence check reads the log
        files = store.stage(batch.table, batch.rows)
        store.commit(batch.table, files, targets)
    return time.perf_counter() - started


class _TimedLakeSink(LakeSink):
    assigned_at: float | None = None

    def _start_positions(self, partitions: list[PartitionId]) -> dict[PartitionId, int]:
        starts = super()._start_positions(partitions)
        if partitions and self.assigned_at is None:
            self.assigned_at = time.perf_counter()
        return starts


def ours_end_to_end(
    settings: Settings, root: Path, group: str, total: int, timeout_s: float
) -> tuple[float, LakeSink]:
    """Seconds from assignment to the commit that made every record consumed."""
    done = threading.Event()
    last = [0.0]
    consumed = [0]

    def committed(_topic: str, records: int) -> None:
        consumed[0] += records
        last[0] = time.perf_counter()
        if consumed[0] >= total:
            done.set()

    store = DeltaBronzeStore(settings.lake, str(root))
    sink = _TimedLakeSink(
        settings, worker_id="bench", group_id=group, store=store, on_committed=committed
    )
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    try:
        if not done.wait(timeout_s):
            raise TimeoutError(f"the lake sink consumed {consumed[0]} of {total} in {timeout_s} s")
    finally:
        stop.set()
        thread.join(60)
    if sink.assigned_at is None:
        raise RuntimeError("the lake sink was never assigned a partition")
    return last[0] - sink.assigned_at, sink


def check_table(root: Path, expected_rows: int) -> None:
    keys: list[tuple[str, int, int]] = []
    for folder in sorted((root / "bronze").iterdir()):
        data = DeltaTable(str(folder)).to_pyarrow_table(
            columns=["source_topic", "source_partition", "source_offset"]
        )
        keys += list(zip(*(data.column(i).to_pylist() for i in range(3)), strict=True))
    if len(keys) != expected_rows or len(set(keys)) != len(keys):
        raise RuntimeError(
            f"the lake sink wrote {len(keys)} rows ({len(set(keys))} distinct), "
            f"expected {expected_rows}"
        )


def measure(env: SinkEnv, options: LakeBenchOptions, work: Path) -> dict[str, Any]:
    settings = env.settings
    say = console.log
    say(f"generating load until {options.changes:,} CDC records are on Kafka")
    load = BenchOptions(
        changes=options.changes, seed=options.seed, phase_timeout_s=options.phase_timeout_s
    )
    asyncio.run(generate_load(env, load))
    marks = {k: v for k, v in high_watermarks(env).items() if v}
    total = sum(marks.values())
    group = settings.kafka.consumer_group
    records = read_records(settings.kafka.bootstrap_servers, marks, f"{group}-capture")
    with RegistryClient(settings.registry) as registry:
        decoder = DebeziumAvroDecoder(AvroCodec(registry))
        consumed = decode_records(decoder, records)  # warms the schema cache
        decode_s = float("inf")
        for _ in range(max(1, options.repeats)):
            started = time.perf_counter()
            decode_records(decoder, records)
            decode_s = min(decode_s, time.perf_counter() - started)
    batches = plan_batches(
        consumed, options.batch_max_records, f"postgres.{settings.postgres.database}"
    )
    rows = sum(len(b.rows) for b in batches)
    arrow = [(b.table, arrow_table(b.rows)) for b in batches if b.rows]
    say(f"{total:,} records, {rows:,} bronze rows in {len(batches)} batches")

    best: dict[str, float] = defaultdict(lambda: float("inf"))
    end_to_end: list[dict[str, Any]] = []
    for repeat in range(max(1, options.repeats)):
        say(f"round {repeat + 1}: baseline write_deltalake, our write path, our sink")
        folder = work / f"raw{repeat}"
        best["baseline"] = min(best["baseline"], baseline_write_deltalake(arrow, folder))
        folder = work / f"ours{repeat}"
        best["write_path"] = min(
            best["write_path"], ours_write_path(settings, batches, folder, f"{group}-w{repeat}")
        )
        folder = work / f"sink{repeat}"
        seconds, sink = ours_end_to_end(
            settings, folder, f"{group}-lake-r{repeat}", total, options.phase_timeout_s
        )
        check_table(folder, rows)
        best["end_to_end"] = min(best["end_to_end"], seconds)
        end_to_end.append(
            {"seconds": round(seconds, 3), "commits": sink.stats.commits, "rows": sink.stats.rows}
        )
        for name in ("raw", "ours", "sink"):
            shutil.rmtree(work / f"{name}{repeat}", ignore_errors=True)
    baseline = rows / best["baseline"]
    write_path = rows / best["write_path"]
    sink_rows = rows / best["end_to_end"]
    return {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "deltalake": deltalake.__version__},
        "records": total,
        "bronze_rows": rows,
        "batches": len(batches),
        "batch_max_records": options.batch_max_records,
        "baseline_write_deltalake_rows_per_s": round(baseline),
        "ours_write_path_rows_per_s": round(write_path),
        "ours_end_to_end_records_per_s": round(total / best["end_to_end"]),
        "ours_end_to_end_rows_per_s": round(sink_rows),
        "ratio_write_path_to_baseline": round(write_path / baseline, 3),
        "ratio_end_to_end_to_baseline": round(sink_rows / baseline, 3),
        "decode_records_per_s": round(total / decode_s),
        "ratio_end_to_end_to_decode": round(total / best["end_to_end"] / (total / decode_s), 3),
        "end_to_end_runs": end_to_end,
    }


def run(options: LakeBenchOptions, settings: Settings | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the result (also written to ``options.json_path``)."""
    base = settings or load_settings()
    work = Path(tempfile.mkdtemp(prefix="bv-lake-bench-"))
    try:
        with pipeline_environment(
            base, batch_max_records=options.batch_max_records, names=LAKE_BENCH_NAMES
        ) as env:
            try:
                result = measure(env, options, work)
            finally:
                group = env.settings.kafka.consumer_group
                delete_consumer_groups(
                    env.settings.kafka.bootstrap_servers,
                    [f"{group}-capture"]
                    + [f"{group}-lake-r{n}" for n in range(max(1, options.repeats))],
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    options.json_path.parent.mkdir(parents=True, exist_ok=True)
    options.json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def render(result: dict[str, Any]) -> Table:
    table = Table(
        title=(
            f"lake sink: {result['records']:,} records, {result['bronze_rows']:,} bronze rows, "
            f"batch {result['batch_max_records']:,} (deltalake {result['machine']['deltalake']})"
        )
    )
    for column in ("measure", "figure", "ratio to baseline"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row(
        "baseline: write_deltalake of the same Arrow batches",
        f"{result['baseline_write_deltalake_rows_per_s']:,} rows/s",
        "",
    )
    table.add_row(
        "ours, write path (rows to Arrow, Parquet, log read, commit with txns)",
        f"{result['ours_write_path_rows_per_s']:,} rows/s",
        f"{result['ratio_write_path_to_baseline']:.2f} x",
    )
    table.add_row(
        "ours, sink end to end (consume, decode, plan, write, commit)",
        f"{result['ours_end_to_end_records_per_s']:,} records/s "
        f"({result['ours_end_to_end_rows_per_s']:,} rows/s)",
        f"{result['ratio_end_to_end_to_baseline']:.2f} x",
    )
    table.add_row(
        "our decode alone (the same records, no I/O)",
        f"{result['decode_records_per_s']:,} records/s",
        f"end to end = {result['ratio_end_to_end_to_decode']:.2f} x decode",
    )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--changes", type=int, default=LakeBenchOptions.changes)
    parser.add_argument("--batch", type=int, default=LakeBenchOptions.batch_max_records)
    parser.add_argument("--repeats", type=int, default=LakeBenchOptions.repeats)
    parser.add_argument("--json", type=Path, default=RESULTS, dest="json_path")
    args = parser.parse_args(argv)
    options = LakeBenchOptions(
        changes=args.changes,
        batch_max_records=args.batch,
        repeats=args.repeats,
        json_path=args.json_path,
    )
    result = run(options)
    console.print(render(result))
    console.print(f"written {options.json_path}")


if __name__ == "__main__":
    main()
