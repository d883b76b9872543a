-- Gold columns by a mapping (issue 26, docs/decisions/0021): a silver column that
-- BV_SINK__GOLD_COLUMNS maps to a gold fact table follows silver's evolution there, through
-- ops.evolve_gold_column (SECURITY DEFINER, like ops.evolve_silver_column of 0009). Both now
-- share the checks of 0009 in ops.evolve_column: a new nullable column of an allowed type,
-- or a lossless widening of an existing one; anything else raises. Only the two wrappers,
-- owned by the same admin, call it: the worker may not.
CREATE OR REPLACE FUNCTION ops.evolve_column(
    p_schema text, p_table text, p_column text, p_type text
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur record;
    m text[];
    new_p integer;
    new_s integer;
BEGIN
    IF p_column !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'column name % is not a plain identifier', p_column;
    END IF;
    IF p_type !~ '^(smallint|integer|bigint|text|boolean|date|uuid|jsonb|bytea|double precision|real|timestamp with time zone|timestamp without time zone|numeric|numeric\(\d{1,4}, ?\d{1,4}\)|varchar\(\d{1,5}\))$' THEN
        RAISE EXCEPTION 'type % is not one the sink may evolve to', p_type;
    END IF;
    SELECT data_type, numeric_precision, numeric_scale, character_maximum_length
      INTO cur FROM information_schema.columns
     WHERE table_schema = p_schema AND table_name = p_table AND column_name = p_column;
    IF NOT FOUND THEN
        EXECUTE format('ALTER TABLE %I.%I ADD COLUMN IF NOT EXISTS %I %s', p_schema, p_table, p_column, p_type);
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
        EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN %I TYPE %s', p_schema, p_table, p_column, p_type);
        RETURN;
    END IF;
    RAISE EXCEPTION '%.%.% (%) -> % is not a lossless widening', p_schema, p_table, p_column,
        cur.data_type, p_type;
END $$;
REVOKE ALL ON FUNCTION ops.evolve_column(text, text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ops.evolve_silver_column(
    p_table text, p_column text, p_type text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_table NOT IN ('categories', 'customers', 'products', 'orders', 'order_items', 'payments') THEN
        RAISE EXCEPTION 'silver.% is not a medallion table', p_table;
    END IF;
    PERFORM ops.evolve_column('silver', p_table, p_column, p_type);
END $$;
REVOKE ALL ON FUNCTION ops.evolve_silver_column(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.evolve_silver_column(text, text, text) TO bv_worker;

-- A gold fact table fed row by row from silver, and never one of its own columns (the
-- writer's statements name those).
CREATE OR REPLACE FUNCTION ops.evolve_gold_column(
    p_table text, p_column text, p_type text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_table NOT IN ('order_facts') THEN
        RAISE EXCEPTION 'gold.% takes no mapped columns', p_table;
    END IF;
    IF p_column IN ('order_fact_id', 'order_id', 'order_date', 'customer_id', 'status',
                    'currency', 'total_amount', 'total_amount_usd', 'is_revenue_bearing',
                    'is_deleted', 'valid_from', 'valid_to', 'is_current', 'source_lsn',
                    'source_bronze_id', 'lineage_id') THEN
        RAISE EXCEPTION 'gold.%.% is a column of the fact itself, not a mapped one', p_table,
            p_column;
    END IF;
    PERFORM ops.evolve_column('gold', p_table, p_column, p_type);
END $$;
REVOKE ALL ON FUNCTION ops.evolve_gold_column(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.evolve_gold_column(text, text, text) TO bv_worker;
