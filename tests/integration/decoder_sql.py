"""Tables and writes whose Debezium output exercises what a downstream decoder must tell apart:
key-only and full before-images, an unchanged TOASTed column, a multi-table transaction on
the transaction topic, and transactional and non-transactional logical messages."""

from __future__ import annotations

TABLES = ("keyed", "full_rows", "toasted", "toasted_full")
MESSAGE_PREFIX = "bv-decoder"
#: Data records the writes produce on the table topics (inserts, updates, deletes, tombstones).
TABLE_RECORDS = 5 + 4 + 2 * 2  # 5 inserts, 4 updates, 2 deletes with their tombstones
#: Logical messages on ``<prefix>.message``.
MESSAGE_RECORDS = 3
#: BEGIN and END of each of the 10 transactions (one per statement, messages included, except
#: the non-transactional message on its own).
TRANSACTION_RECORDS = 2 * 10
#: The first transaction writes two tables: its BEGIN/END counts are checked against this.
FIRST_TRANSACTION_COUNTS = {"keyed": 2, "full_rows": 1}


def ddl(schema: str) -> list[str]:
    columns = """
        id integer PRIMARY KEY,
        name text NOT NULL,
        qty integer NOT NULL,
        price numeric(10,2) NOT NULL,
        flag boolean NOT NULL,
        seen_at timestamptz NOT NULL,
        note text,
        status text NOT NULL DEFAULT 'PENDING',
        version integer NOT NULL DEFAULT 1,
        created_by text NOT NULL DEFAULT CURRENT_USER,
        amount numeric(10,2) NOT NULL DEFAULT 9.99,
        created_at timestamptz NOT NULL DEFAULT now()
    """
    return [
        f"CREATE TABLE {schema}.keyed ({columns})",  # REPLICA IDENTITY DEFAULT
        f"CREATE TABLE {schema}.full_rows ({columns})",
        f"ALTER TABLE {schema}.full_rows REPLICA IDENTITY FULL",
        f"CREATE TABLE {schema}.toasted (id integer PRIMARY KEY, counter integer, body text)",
        # EXTERNAL = out of line without compression, so a few KB are surely TOASTed.
        f"ALTER TABLE {schema}.toasted ALTER COLUMN body SET STORAGE EXTERNAL",
        f"CREATE TABLE {schema}.toasted_full (id integer PRIMARY KEY, counter integer, body text)",
        f"ALTER TABLE {schema}.toasted_full ALTER COLUMN body SET STORAGE EXTERNAL",
        f"ALTER TABLE {schema}.toasted_full REPLICA IDENTITY FULL",
    ]


def dml(schema: str) -> list[str]:
    keyed, full, toasted, toasted_full = (f"{schema}.{t}" for t in TABLES)
    long_text = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100) i)"
    # NOT NULL columns with defaults get other values: a key-only image holds the defaults
    row = "'{name}', {qty}, {price}, {flag}, '2026-12-01 10:00:00+00', {note}, 'SHIPPED', 3"
    row += ", 'app', 5.00, '2026-12-01 09:00:00+00'"
    return [
        # one transaction over two tables: BEGIN, 3 events, END with per-table counts
        f"""BEGIN;
        INSERT INTO {keyed} VALUES (1, {row.format(name="one", qty=5, price=1.50, flag=True, note="'n'")});
        INSERT INTO {keyed} VALUES (2, {row.format(name="two", qty=7, price=2.25, flag=False, note="NULL")});
        INSERT INTO {full} VALUES (1, {row.format(name="one", qty=5, price=1.50, flag=True, note="'n'")});
        SELECT pg_logical_emit_message(false, '{MESSAGE_PREFIX}', 'inside, not transactional');
        COMMIT""",  # noqa: E501
        f"UPDATE {keyed} SET qty = 6, note = NULL WHERE id = 1",
        f"UPDATE {full} SET qty = 6, note = NULL WHERE id = 1",
        f"DELETE FROM {keyed} WHERE id = 1",
        f"DELETE FROM {full} WHERE id = 1",
        f"INSERT INTO {toasted} VALUES (1, 0, {long_text})",
        f"UPDATE {toasted} SET counter = 1 WHERE id = 1",
        f"INSERT INTO {toasted_full} VALUES (1, 0, {long_text})",
        f"UPDATE {toasted_full} SET counter = 1 WHERE id = 1",
        f"SELECT pg_logical_emit_message(true, '{MESSAGE_PREFIX}', 'in a transaction')",
        f"SELECT pg_logical_emit_message(false, '{MESSAGE_PREFIX}', 'on its own')",
    ]
