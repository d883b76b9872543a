-- Source schema drift (issue 26, docs/decisions/0021): every difference the medallion sink
-- finds between a new writer schema of a CDC table and its silver table, with the decision
-- the table's policy made (evolve, ignore, keep, pause). A paused table stays paused until
-- an operator accepts (`bitvelocity schema accept TABLE` sets accepted_at); the sink then
-- resumes from the offset it stopped at (paused_offset).
CREATE TABLE IF NOT EXISTS ops.schema_changes (
    change_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at       timestamptz NOT NULL DEFAULT now(),
    table_name        text        NOT NULL,
    schema_id         integer     NOT NULL,
    source_lsn        bigint,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    column_name       text        NOT NULL,
    change            text        NOT NULL
                      CHECK (change IN ('new_column', 'dropped_column', 'widened', 'narrowed',
                                        'incompatible')),
    source_type       text,
    silver_type       text,
    target_type       text,
    policy            text        NOT NULL CHECK (policy IN ('evolve', 'pause', 'ignore')),
    decision          text        NOT NULL CHECK (decision IN ('evolve', 'ignore', 'keep', 'pause')),
    reason            text        NOT NULL,
    accepted_at       timestamptz,
    accepted_by       text,
    UNIQUE (table_name, schema_id, column_name)
);
CREATE INDEX IF NOT EXISTS schema_changes_paused_idx
    ON ops.schema_changes (table_name) WHERE decision = 'pause' AND accepted_at IS NULL;

GRANT SELECT, INSERT ON ops.schema_changes TO bv_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ops TO bv_worker;

-- The worker owns no table (0004, decision 0013): silver follows an `evolve` decision through
-- this function, owned by the admin who runs migrations. It allows exactly the classified,
-- lossless changes: a new nullable column of an allowed type, or a type that holds every
-- value of the old one (integer -> bigint, a numeric with at least the old integer digits
-- and scale, a longer varchar, varchar -> text). Anything else raises.
CREATE OR REPLACE FUNCTION ops.evolve_silver_column(
    p_table text, p_column text, p_type text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur record;
    m text[];
    new_p integer;
    new_s integer;
BEGIN
    IF p_table NOT IN ('categories', 'customers', 'products', 'orders', 'order_items', 'payments') THEN
        RAISE EXCEPTION 'silver.% is not a medallion table', p_table;
    END IF;
    IF p_column !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'column name % is not a plain identifier', p_column;
    END IF;
    IF p_type !~ '^(smallint|integer|bigint|text|boolean|date|uuid|jsonb|bytea|double precision|real|timestamp with time zone|timestamp without time zone|numeric|numeric\(\d{1,4}, ?\d{1,4}\)|varchar\(\d{1,5}\))$' THEN
        RAISE EXCEPTION 'type % is not one the sink may evolve to', p_type;
    END IF;
    SELECT data_type, numeric_precision, numeric_scale, character_maximum_length
      INTO cur FROM information_schema.columns
     WHERE table_schema = 'silver' AND table_name = p_table AND column_name = p_column;
    IF NOT FOUND THEN
        EXECUTE format('ALTER TABLE silver.%I ADD COLUMN IF NOT EXISTS %I %s', p_table, p_column, p_type);
        RETURN;
    END IF;
    m := regexp_match(p_type, '^numeric\((\d+), ?(\d+)\)$');
    IF m IS NOT NULL THEN
        new_p := m[1]::integer; new_s := m[2]::integer;
    END IF;
    IF (cur.data_type IN ('smallint', 'integer') AND p_type IN ('integer', 'bigint')
            AND NOT (cur.data_type = 'integer' AND p_type = 'integer'))
       OR (cur.data_type = 'numeric' AND cur.numeric_precision IS NOT NULL AND (
            p_type = 'numeric'
            OR (m IS NOT NULL AND new_s >= cur.numeric_scale
                AND new_p - new_s >= cur.numeric_precision - cur.numeric_scale)))
       OR (cur.data_type = 'character varying' AND (p_type = 'text'
            OR (p_type ~ '^varchar' AND substring(p_type FROM '\d+')::integer
                >= coalesce(cur.character_maximum_length, 2147483647)))) THEN
        EXECUTE format('ALTER TABLE silver.%I ALTER COLUMN %I TYPE %s', p_table, p_column, p_type);
        RETURN;
    END IF;
    RAISE EXCEPTION 'silver.%.% (%) -> % is not a lossless widening', p_table, p_column,
        cur.data_type, p_type;
END $$;
REVOKE ALL ON FUNCTION ops.evolve_silver_column(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.evolve_silver_column(text, text, text) TO bv_worker;
