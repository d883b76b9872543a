"""The lake on S3-compatible object storage, and its maintenance commands.

An S3-compatible server (moto's, in its own process on a loopback port: delta-rs holds the
GIL while it talks to storage, so an in-process server would deadlock) stands in for S3.
The store's write path, offsets, fence and reads, and `lake compact` / `lake vacuum` through
the CLI with the lake configured only by BV_LAKE__* variables.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import boto3
import polars as pl
import pytest
from botocore.exceptions import EndpointConnectionError
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from pydantic import SecretStr

from config.settings import LakeSettings
from sinks.delta.bronze import BRONZE_SCHEMA, app_id
from sinks.delta.store import DeltaBronzeStore
from tests.integration.cli import run_cli

DAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """delta-rs storage options of a fresh bucket on a local S3-compatible server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",  # one writer per partition; no lock service
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=options["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=options["AWS_SECRET_ACCESS_KEY"],
        region_name=options["AWS_REGION"],
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket="lake")
                break
            except EndpointConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield options
    finally:
        server.terminate()
        server.wait(10)


def store_on(options: dict[str, str], prefix: str) -> DeltaBronzeStore:
    uri = f"s3://lake/{prefix}"
    settings = LakeSettings(
        uri=uri, storage_options={key: SecretStr(value) for key, value in options.items()}
    )
    return DeltaBronzeStore(settings, uri)


def row(offset: int) -> tuple[Any, ...]:
    return (
        uuid.uuid4(),
        datetime(2026, 3, 1, 12, tzinfo=UTC),
        "postgres.bitvelocity",
        "INSERT",
        "orders",
        json.dumps({"after": {"id": offset}}),
        "bitvelocity.public.orders",
        0,
        offset,
        offset,
        None,
        None,
        DAY,
    )


def test_offsets_commit_with_the_files_on_object_storage_and_a_stale_writer_is_refused(
    s3: dict[str, str],
) -> None:
    store = store_on(s3, "offsets")
    app = app_id("g", "bitvelocity.public.orders", 0)
    assert store.positions("orders", [app]) == {app: None}
    staged = store.stage("orders", [row(n) for n in range(5)])
    assert store.read_days("orders", [DAY]).num_rows == 0
    store.commit("orders", staged, {app: 5})
    assert store.positions("orders", [app]) == {app: 5}
    assert store.read_days("orders", [DAY]).column("source_offset").to_pylist() == list(range(5))
    frame = pl.read_delta(store.table_uri("orders"), storage_options=s3)
    assert sorted(frame["source_offset"].to_list()) == list(range(5))

    zombie = DeltaTable(store.table_uri("orders"), storage_options=s3)
    store.commit("orders", store.stage("orders", [row(5)]), {app: 6})
    with pytest.raises(CommitFailedError):
        zombie.create_write_transaction(
            [],
            "append",
            BRONZE_SCHEMA,
            partition_by=["ingestion_date"],
            commit_properties=CommitProperties(app_transactions=[Transaction(app, 6)]),
        )
    assert store.positions("orders", [app]) == {app: 6}


def test_compact_merges_small_files_and_vacuum_deletes_only_when_asked(
    s3: dict[str, str],
) -> None:
    store = store_on(s3, "maintenance")
    for offset in range(4):  # four commits, four small files
        store.append("orders", [row(offset)], {"test": "small"})
    uri = store.table_uri("orders")
    assert len(DeltaTable(uri, storage_options=s3).file_uris()) == 4
    env = {
        "BV_LAKE__URI": "s3://lake/maintenance",
        "BV_LAKE__STORAGE_OPTIONS": json.dumps(s3),
    }

    compacted = run_cli("lake", "compact", "--table", "orders", env=env)
    assert compacted.returncode == 0, compacted.stderr
    table = DeltaTable(uri, storage_options=s3)
    assert len(table.file_uris()) == 1
    assert sorted(table.to_pyarrow_table().column("source_offset").to_pylist()) == [0, 1, 2, 3]

    listed = run_cli("lake", "vacuum", "--table", "orders", env=env)  # dry run, 7 days kept
    assert listed.returncode == 0, listed.stderr
    assert '"files": 0' in listed.stdout
    forced = run_cli(
        "lake",
        "vacuum",
        "--table",
        "orders",
        "--apply",
        "--retention-hours",
        "0",
        "--force",
        env=env,
    )
    assert forced.returncode == 0, forced.stderr
    assert '"files": 4' in forced.stdout
    assert sorted(
        DeltaTable(uri, storage_options=s3).to_pyarrow_table().column("source_offset").to_pylist()
    ) == [0, 1, 2, 3]
