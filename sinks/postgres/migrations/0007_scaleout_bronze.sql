-- Bronze for the scale-out topics (issue 9 item 3, docs/decisions/0015): chat-messages,
-- device-telemetry and social-posts carry plain Avro events, not Debezium envelopes, and
-- land here with the shape of every other bronze table (0001): one row per Kafka record,
-- raw_payload = the decoded event as JSON, origin topic/partition/offset, trace id, and
-- ingestion_date = the event's own date (never now(), so a replay hits the same partition
-- and the primary key guard). source_lsn and source_tx_id stay NULL: these events have no
-- source transaction. Written by the medallion sink in the batch's offsets transaction.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['chat_messages', 'device_telemetry', 'social_posts'] LOOP
        EXECUTE format($f$
            CREATE TABLE IF NOT EXISTS bronze.%I (
                event_id          uuid NOT NULL,
                event_timestamp   timestamptz NOT NULL,
                source_system     text NOT NULL,
                operation_type    text NOT NULL
                                  CHECK (operation_type IN ('INSERT', 'UPDATE', 'DELETE', 'READ', 'TRUNCATE')),
                table_name        text NOT NULL,
                raw_payload       jsonb NOT NULL,
                source_topic      text NOT NULL,
                source_partition  integer NOT NULL,
                source_offset     bigint NOT NULL,
                source_lsn        bigint,
                source_tx_id      bigint,
                trace_id          text,
                ingestion_date    date NOT NULL,
                ingested_at       timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (source_topic, source_partition, source_offset, ingestion_date)
            ) PARTITION BY RANGE (ingestion_date)$f$, t);
        IF NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'bronze.' || t) THEN
            PERFORM partman.create_parent(
                p_parent_table := 'bronze.' || t,
                p_control := 'ingestion_date',
                p_type := 'native',
                p_interval := 'daily',
                p_premake := 7,
                p_start_partition := to_char(now() - interval '3 days', 'YYYY-MM-DD')
            );
        END IF;
        -- Least privilege, as 0004 for the CDC bronze tables: the pipeline appends and reads.
        EXECUTE format('GRANT SELECT, INSERT ON bronze.%I TO bv_worker', t);
    END LOOP;
END $$;
