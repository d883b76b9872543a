-- Least-privilege roles (passwords are set by `bitvelocity migrate`, never stored here).
-- debezium: logs in, streams WAL (REPLICATION), reads the captured tables; nothing else.
-- bv_worker: the pipeline; reads the OLTP tables, owns none of them, so no DDL on them.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'debezium') THEN
        CREATE ROLE debezium LOGIN REPLICATION;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bv_worker') THEN
        CREATE ROLE bv_worker LOGIN;
    END IF;
END $$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium, bv_worker;
GRANT SELECT ON public.categories, public.customers, public.products,
                public.orders, public.order_items, public.payments TO debezium, bv_worker;
GRANT SELECT ON public.orders_audit TO bv_worker;
