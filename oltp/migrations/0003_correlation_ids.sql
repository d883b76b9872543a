-- Trace ids end to end (DESIGN.md section 10): every captured row carries the correlation
-- id of the transaction that last wrote it, taken from the transaction-local setting
-- `bv.correlation_id`. Debezium publishes it with the row; the sink lifts it into
-- bronze.trace_id and its log lines. A hard delete carries only the key, hence no id.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['categories', 'customers', 'products', 'orders', 'order_items', 'payments'] LOOP
        EXECUTE format('ALTER TABLE public.%I ADD COLUMN IF NOT EXISTS last_correlation_id text', t);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION public.bv_stamp_correlation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.last_correlation_id := nullif(current_setting('bv.correlation_id', true), '');
    RETURN NEW;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['categories', 'customers', 'products', 'orders', 'order_items', 'payments'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgname = t || '_correlation' AND tgrelid = ('public.' || t)::regclass
        ) THEN
            EXECUTE format(
                'CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON public.%I '
                'FOR EACH ROW EXECUTE FUNCTION public.bv_stamp_correlation()',
                t || '_correlation', t);
        END IF;
    END LOOP;
END $$;
