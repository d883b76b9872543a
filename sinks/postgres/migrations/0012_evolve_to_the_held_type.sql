-- Two workers that meet the same new schema both read silver's old type, and both ask
-- ops.evolve_column for the widening; the second found the column already widened and raised
-- "bigint -> bigint is not a lossless widening", so its table paused until its own re-check
-- resumed it (seen in a CI chaos run: an ERROR line and a paused decision for nothing).
-- Asking for the type the column already has is now a no-op.
CREATE OR REPLACE FUNCTION ops.evolve_column(
    p_schema text, p_table text, p_column text, p_type text
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur record;
    m text[];
    new_p integer;
    new_s integer;
    held text;
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
    -- Already the type asked for: another worker evolved it first (both read the old type
    -- before either altered it). Nothing to do, and no reason to pause the table.
    SELECT format_type(a.atttypid, a.atttypmod) INTO held
      FROM pg_attribute a
     WHERE a.attrelid = format('%I.%I', p_schema, p_table)::regclass
       AND a.attname = p_column AND NOT a.attisdropped;
    IF held = replace(regexp_replace(p_type, '^varchar', 'character varying'), ', ', ',') THEN
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
