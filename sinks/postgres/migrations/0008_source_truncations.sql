-- TRUNCATE of a captured table (issue 26, docs/decisions/0021). The connector emits
-- truncates (skipped.operations=none); bronze keeps the record; silver marks every row
-- older than the truncate deleted at its LSN. A truncate has no key, so Debezium puts it on
-- one partition of the table's topic while the rows' changes hash over all of them: a
-- change from before the truncate may still arrive later on another partition. This table
-- is the barrier the writer checks such late changes against (written in the batch's
-- transaction, once per record: the offsets compare-and-set forbids a second commit).
CREATE TABLE IF NOT EXISTS ops.source_truncations (
    table_name        text        NOT NULL,
    source_lsn        bigint      NOT NULL,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    source_tx_id      bigint,
    committed_at      timestamptz NOT NULL,
    source_bronze_id  uuid        NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
CREATE INDEX IF NOT EXISTS source_truncations_table_lsn_idx
    ON ops.source_truncations (table_name, source_lsn DESC);

GRANT SELECT, INSERT ON ops.source_truncations TO bv_worker;
