-- Debezium's heartbeat row (decision 0024). A replication slot moves forward only when its
-- connector confirms a position, and Debezium confirms one only after it has received a
-- change of a published table. When the captured tables are quiet while other databases of
-- the cluster (or unpublished tables) write, the slot never moves: it retains every WAL
-- segment written since, and on each connector restart the walsender reads all of it again
-- before the first change (29 GB and several minutes of a full core, measured). The
-- connector's heartbeat.action.query updates this one row every heartbeat interval, so there
-- is always a recent published change to confirm. Its changes are not in
-- table.include.list: Debezium drops them after moving its offset, no topic is written.
CREATE SCHEMA IF NOT EXISTS cdc;

CREATE TABLE IF NOT EXISTS cdc.heartbeat (
    id smallint PRIMARY KEY CHECK (id = 1),
    beat_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO cdc.heartbeat (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

-- debezium may touch this one row and nothing else it may write.
GRANT USAGE ON SCHEMA cdc TO debezium;
GRANT SELECT, UPDATE ON cdc.heartbeat TO debezium;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_publication_tables
        WHERE pubname = 'bitvelocity_cdc' AND schemaname = 'cdc' AND tablename = 'heartbeat'
    ) THEN
        ALTER PUBLICATION bitvelocity_cdc ADD TABLE cdc.heartbeat;
    END IF;
END $$;
