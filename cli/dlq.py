"""``bitvelocity dlq list|show|replay``: inspect dead letters and replay them after a fix.

The reading, planning and sending live in ``admin.dead_letters``; this module prints.
``replay`` is bounded by ``--limit`` and ``--dry-run`` only prints what it would send.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from admin.dead_letters import (
    dead_letter_counts,
    one_per_origin,
    read_dead_letters,
    replay_plan,
    send_replay,
)
from cli.console import out
from config.settings import load_settings
from serdes.dead_letters import (
    ERROR_CLASS,
    ERROR_MESSAGE,
    ORIGIN_OFFSET,
    ORIGIN_PARTITION,
    ORIGIN_TOPIC,
    SCHEMA_ID,
    header,
)

dlq_app = typer.Typer(
    help="Dead letters: list the <topic>.dlq topics, show records, replay them to their origin.",
    no_args_is_help=True,
)


@dlq_app.command("list")
def dlq_list() -> None:
    """Every dead-letter topic with how many records it holds."""
    counts = dead_letter_counts(load_settings())
    table = Table("dead-letter topic", "records")
    for topic, count in counts:
        table.add_row(topic, str(count))
    out.print(table if counts else "no dead-letter topics")


Limit = Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many records.")]
FromOffset = Annotated[int, typer.Option(min=0, help="Start at this offset in each partition.")]
Partition = Annotated[int | None, typer.Option(help="Only this partition.")]


@dlq_app.command("show")
def dlq_show(
    topic: Annotated[
        str, typer.Argument(help="A dead-letter topic, e.g. bitvelocity.public.orders.dlq")
    ],
    limit: Limit = 20,
    from_offset: FromOffset = 0,
    partition: Partition = None,
) -> None:
    """Print dead letters: origin, error class and message, schema id, sizes."""
    records = read_dead_letters(load_settings(), topic, limit, from_offset, partition)
    table = Table("p:offset", "origin", "error", "schema id", "key/value bytes", "message")
    for r in records:
        origin = ":".join(
            str(header(r.headers, name)) for name in (ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET)
        )
        sizes = f"{len(r.key or b'')}/{len(r.value or b'')}"
        table.add_row(
            f"{r.partition}:{r.offset}",
            origin,
            header(r.headers, ERROR_CLASS) or "?",
            header(r.headers, SCHEMA_ID) or "-",
            sizes,
            (header(r.headers, ERROR_MESSAGE) or "")[:120],
        )
    out.print(table if records else f"{topic}: no records from offset {from_offset}")


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="The dead-letter topic to replay from.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Required upper bound.")],
    from_offset: FromOffset = 0,
    partition: Partition = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what would be sent.")
    ] = False,
) -> None:
    """Re-produce up to --limit dead letters to their origin topic (after fixing the cause)."""
    settings = load_settings()
    letters = read_dead_letters(settings, topic, limit, from_offset, partition)
    plans, repeats = one_per_origin([replay_plan(r) for r in letters])
    if repeats:
        out.print(f"{repeats} dead letters repeat an origin record already listed: skipped")
    for plan in plans:
        verb = "would replay" if dry_run else "replaying"
        out.print(f"{verb} {topic}:{plan.dlq.partition}:{plan.dlq.offset} -> {plan.target_topic}")
    if dry_run or not plans:
        out.print(f"{len(plans)} records {'would be ' if dry_run else ''}replayed")
        return
    send_replay(settings, plans)
    out.print(f"{len(plans)} records replayed")
