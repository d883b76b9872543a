"""Tables holding every PostgreSQL type of debezium-postgres.md, and the writes to capture."""

from __future__ import annotations


def ddl(schema: str) -> list[str]:
    return [
        f"CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok', 'happy')",
        f"""CREATE TABLE {schema}.all_types (
            id integer PRIMARY KEY,
            amount numeric(12,2),
            fine numeric(38,10),
            free numeric,
            day date,
            clock time,
            clock_ms time(3),
            clock_tz timetz,
            moment timestamp,
            moment_ms timestamp(3),
            moment_tz timestamptz,
            span interval,
            ident uuid,
            doc json,
            docb jsonb,
            feeling {schema}.mood,
            numbers integer[],
            words text[],
            blob bytea,
            flag boolean,
            ratio double precision,
            small smallint,
            large bigint
        )""",
        f"ALTER TABLE {schema}.all_types REPLICA IDENTITY FULL",
        f"""CREATE TABLE {schema}.toasted (
            id integer PRIMARY KEY, counter integer, body text, numbers integer[],
            blob bytea, docb jsonb
        )""",
        # EXTERNAL = out of line without compression, so a few KB are surely TOASTed.
        *(
            f"ALTER TABLE {schema}.toasted ALTER COLUMN {c} SET STORAGE EXTERNAL"
            for c in ("body", "numbers", "blob", "docb")
        ),
    ]


def dml(schema: str) -> list[str]:
    t = f"{schema}.all_types"
    cols = (
        "id, amount, fine, free, day, clock, clock_ms, clock_tz, moment, moment_ms, moment_tz,"
        " span, ident, doc, docb, feeling, numbers, words, blob, flag, ratio, small, large"
    )
    return [
        f"""INSERT INTO {t} ({cols}) VALUES
        (1, 123.45, 12345678901234567890.0123456789, 3141.5926, '2024-02-29', '13:14:15.123456',
         '08:00:00.5', '10:11:12.345+02', '2018-06-20 15:13:16.945104', '2018-06-20 15:13:16.9',
         '2024-12-17 08:30:00.5+00', '3 days 04:05:06.789', 'ef9b5beb-1f7c-4b8e-a6c1-0f8c2f4c8a11',
         '{{"a": [1, 2.5, "x"], "b": null}}', '{{"k": {{"n": 1}}}}', 'happy', '{{1,-2,3}}',
         '{{"hello","wo rld"}}', '\\x00ff10', true, 0.25, -32768, 9223372036854775807)""",
        f"""INSERT INTO {t} ({cols}) VALUES
        (2, -42.50, -0.0000000001, -0.5, '1969-07-20', '00:00:00', '23:59:59.999',
         '00:00:00-05', '1900-01-01 00:00:00.000001', '1969-12-31 23:59:59.999',
         '2024-03-31 01:30:00 Europe/Berlin', '-1 days -00:00:00.000001',
         '00000000-0000-0000-0000-000000000000', '[]', '"text"', 'sad', '{{}}', '{{NULL,""}}',
         '\\x', false, -1e300, 0, -1)""",
        f"""INSERT INTO {t} ({cols}) VALUES
        (3, 99999999.99, 9999999999999999999999999999.9999999999, 0, '9999-12-31',
         '23:59:59.999999', '12:00:00', '23:59:59.999999+14', '9999-12-31 23:59:59.999999',
         '0001-01-01 00:00:00', '2024-10-27 02:30:00 Europe/Berlin', '0', NULL, 'null', '123',
         'ok', '{{2147483647}}', '{{}}', '\\xdeadbeef', NULL, NULL, NULL, NULL)""",
        f"""INSERT INTO {t} (id, amount, moment_tz, free) VALUES
        (4, 1.28, '2024-10-27 02:30:00+01', 12345678901234567890123456789012345678901234.5)""",
        f"UPDATE {t} SET amount = 0.01, free = NULL WHERE id = 4",
        f"DELETE FROM {t} WHERE id = 3",
        f"UPDATE {t} SET id = 40 WHERE id = 4",
        f"""INSERT INTO {schema}.toasted VALUES (1, 0,
            (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i),
            (SELECT array_agg(i) FROM generate_series(1, 3000) i),
            (SELECT decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 300) i),
            (SELECT jsonb_agg(md5(i::text)) FROM generate_series(1, 300) i))""",
        f"UPDATE {schema}.toasted SET counter = 1 WHERE id = 1",
    ]


# all_types: 4 inserts, 1 update, 1 delete + tombstone, PK change = delete + tombstone + create
ALL_TYPES_RECORDS = 10
# toasted: 1 insert, 1 update
TOASTED_RECORDS = 2
