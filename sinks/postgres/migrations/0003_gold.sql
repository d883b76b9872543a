-- Gold: facts, dimensions and aggregates. Rows whose silver source carries an ERROR-severity
-- quality issue never reach gold.

-- Orders as a slowly changing dimension of type 2: a change closes the current row
-- (valid_to, is_current = false) and opens a new one; a re-read of the same values opens none.
CREATE TABLE IF NOT EXISTS gold.order_facts (
    order_fact_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id            bigint NOT NULL,
    order_date          date NOT NULL,
    customer_id         bigint,
    status              text,
    currency            text,
    total_amount        numeric(12, 2),
    total_amount_usd    numeric(14, 2),
    is_revenue_bearing  boolean NOT NULL,
    is_deleted          boolean NOT NULL,
    valid_from          timestamptz NOT NULL,
    valid_to            timestamptz,
    is_current          boolean NOT NULL,
    source_lsn          bigint NOT NULL,
    source_bronze_id    uuid NOT NULL,
    lineage_id          bigint
);
CREATE UNIQUE INDEX IF NOT EXISTS order_facts_current_idx
    ON gold.order_facts (order_id, order_date) WHERE is_current;
CREATE INDEX IF NOT EXISTS order_facts_date_idx ON gold.order_facts (order_date) WHERE is_current;

CREATE TABLE IF NOT EXISTS gold.dim_date (
    date_key     date PRIMARY KEY,
    year         integer NOT NULL,
    quarter      integer NOT NULL,
    month        integer NOT NULL,
    day          integer NOT NULL,
    iso_week     integer NOT NULL,
    day_of_week  integer NOT NULL,
    is_weekend   boolean NOT NULL
);
INSERT INTO gold.dim_date
SELECT d::date, extract(year FROM d)::int, extract(quarter FROM d)::int, extract(month FROM d)::int,
       extract(day FROM d)::int, extract(week FROM d)::int, extract(isodow FROM d)::int,
       extract(isodow FROM d) IN (6, 7)
FROM generate_series(date '2020-01-01', date '2035-12-31', interval '1 day') AS d
ON CONFLICT DO NOTHING;

CREATE OR REPLACE VIEW gold.dim_customer AS
SELECT customer_id, email, first_name, last_name, country, created_at AS customer_since
FROM silver.customers
WHERE deleted_at IS NULL AND NOT EXISTS (
    SELECT 1 FROM unnest(quality_issues) AS issue WHERE issue LIKE 'ERROR:%');

CREATE OR REPLACE VIEW gold.dim_product AS
SELECT p.product_id, p.sku, p.name, p.price, p.currency, p.category_id, c.name AS category_name
FROM silver.products AS p
LEFT JOIN silver.categories AS c ON c.category_id = p.category_id
WHERE p.deleted_at IS NULL AND NOT EXISTS (
    SELECT 1 FROM unnest(p.quality_issues) AS issue WHERE issue LIKE 'ERROR:%');

DO $$
BEGIN
    IF to_regclass('gold.daily_sales') IS NULL THEN
        CREATE MATERIALIZED VIEW gold.daily_sales AS
        SELECT order_date, currency,
               count(*)::bigint                        AS order_count,
               sum(total_amount)                       AS revenue,
               sum(total_amount_usd)                   AS revenue_usd,
               round(avg(total_amount), 2)             AS avg_order_value
        FROM gold.order_facts
        WHERE is_current AND is_revenue_bearing
        GROUP BY order_date, currency
        WITH DATA;
        -- REFRESH ... CONCURRENTLY needs a unique index.
        CREATE UNIQUE INDEX daily_sales_key ON gold.daily_sales (order_date, currency);
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS gold.hourly_revenue (
    window_start     timestamptz NOT NULL,
    currency         text NOT NULL,
    revenue          numeric(14, 2) NOT NULL,
    order_count      integer NOT NULL,
    avg_order_value  numeric(14, 2),
    is_final         boolean NOT NULL DEFAULT false,
    version          bigint NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, currency)
);

CREATE TABLE IF NOT EXISTS gold.customer_features (
    customer_id               bigint PRIMARY KEY,
    order_count_last_30_days  integer NOT NULL,
    total_spent_last_30_days  numeric(14, 2) NOT NULL,
    avg_order_value           numeric(14, 2),
    preferred_category        text,
    lifetime_order_count      integer NOT NULL,
    lifetime_value            numeric(14, 2) NOT NULL,
    lifetime_segment          text NOT NULL,
    features_updated_at       timestamptz NOT NULL,
    feature_version           bigint NOT NULL,
    as_of                     timestamptz NOT NULL
);
