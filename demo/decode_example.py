"""The runnable example of docs/decoder.md: read a connector's topics from the beginning and
print, one line per record, what the decoder makes of it.

    ./bv demo                                    # stack, connector, a seeded workload
    .venv/bin/python -m demo.decode_example   # every topic of the prefix bitvelocity
    .venv/bin/python -m demo.decode_example --max-records 40 --timeout 20

It reads without a consumer group commit (nothing of the pipeline's is touched) and decodes
each record with ``decode_any``: change events, tombstones and the transaction topic's
BEGIN/END; what cannot be decoded is shown as the dead letter the pipeline would write.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence

from confluent_kafka.admin import AdminClient

from admin.capture import read_topics
from config.settings import Settings, load_settings
from records.change_events import ChangeEvent, Tombstone
from serdes.avro import AvroCodec
from serdes.consumer_step import decode_or_dead_letter
from serdes.dead_letters import DLQ_SUFFIX, DeadLetter, RecordOrigin
from serdes.debezium import DebeziumAvroDecoder
from serdes.json_envelope import DebeziumJsonDecoder
from serdes.registry import RegistryClient
from serdes.transactions import TransactionEvent
from streams.runtime import origin_of

Record = ChangeEvent | Tombstone | TransactionEvent | DeadLetter


def connector_topics(bootstrap: str, prefix: str) -> list[str]:
    """Every topic the connector with ``prefix`` writes (tables, transaction, message)."""
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return sorted(t for t in topics if t.startswith(prefix + ".") and not t.endswith(DLQ_SUFFIX))


def read_decoded(
    settings: Settings, prefix: str, *, max_records: int, timeout_s: float
) -> Iterator[tuple[RecordOrigin, Record]]:
    """Up to ``max_records`` records of ``prefix``'s topics, each with what it decodes to."""
    bootstrap = settings.kafka.bootstrap_servers
    topics = connector_topics(bootstrap, prefix)
    if not topics:
        return
    messages = read_topics(
        bootstrap, topics, done=lambda read: len(read) >= max_records, timeout_s=timeout_s
    )
    with RegistryClient(settings.registry) as registry:
        decoder: DebeziumAvroDecoder | DebeziumJsonDecoder = (
            DebeziumJsonDecoder()
            if settings.connect.converter == "json"
            else DebeziumAvroDecoder(AvroCodec(registry))
        )
        for message in messages[:max_records]:
            origin = origin_of(message)
            yield origin, decode_or_dead_letter(decoder.decode_any, origin)


def describe(record: Record) -> str:
    """One line saying what a consumer learns from ``record``."""
    if isinstance(record, DeadLetter):
        return f"dead letter: {record.reason}"
    if isinstance(record, Tombstone):
        return f"tombstone key={record.key}"
    if isinstance(record, TransactionEvent):
        if record.event_count is None:
            return f"{record.status} tx={record.tx_id}"
        counts = ", ".join(f"{name}={n}" for name, n in record.data_collections.items())
        return f"{record.status} tx={record.tx_id} events={record.event_count} {counts}"
    where = f"{record.schema}.{record.table}" if record.table else "-"
    tx = record.position.tx_id
    if record.message is not None:
        kind = "transactional" if record.message.transactional else "non-transactional"
        return f"message {record.message.prefix!r} {kind} tx={tx} {record.message.content[:40]!r}"
    line = f"{record.op.name} {where} key={record.key} tx={tx}"
    line += f" before={record.before_image} after={record.after_image}"
    changed = record.changed_columns
    return line if changed is None else f"{line} changed={sorted(changed)}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", help="topic prefix (default: the settings' CDC prefix)")
    parser.add_argument("--max-records", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to read for")
    args = parser.parse_args(argv)
    settings = load_settings()
    prefix = args.prefix or settings.topics.cdc_prefix
    shown = 0
    for origin, record in read_decoded(
        settings, prefix, max_records=args.max_records, timeout_s=args.timeout
    ):
        print(f"{origin.topic}[{origin.partition}]@{origin.offset}  {describe(record)}")
        shown += 1
    print(f"{shown} records of {prefix}.*")


if __name__ == "__main__":
    main()
