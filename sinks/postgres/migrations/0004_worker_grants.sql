-- The pipeline (bv_worker) writes the warehouse but owns nothing there: no DDL, no DROP.
-- Migrations (run by the admin) create the role's objects; partitions made later by
-- pg_partman are reached through their parents, whose privileges are the ones checked.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bv_worker') THEN
        CREATE ROLE bv_worker LOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA bronze, silver, gold, ops, ref TO bv_worker;
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA bronze TO bv_worker;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA silver, gold TO bv_worker;
GRANT SELECT ON ALL TABLES IN SCHEMA ref TO bv_worker;
GRANT SELECT ON ops.data_quality_rules, ops.data_lineage TO bv_worker;
GRANT SELECT, INSERT, UPDATE ON ops.consumer_offsets TO bv_worker;
GRANT SELECT, INSERT ON ops.sink_batches, ops.data_quality_results TO bv_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ops.pending_reference_checks TO bv_worker;
GRANT INSERT ON ops.data_lineage TO bv_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ops, gold TO bv_worker;
-- REFRESH MATERIALIZED VIEW needs ownership.
ALTER MATERIALIZED VIEW gold.daily_sales OWNER TO bv_worker;
