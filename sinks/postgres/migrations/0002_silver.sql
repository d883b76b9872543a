-- Silver: typed, deduplicated current state of every OLTP table. A row is replaced only by
-- a change from a newer source position (source_lsn, then source_offset); deletes set
-- deleted_at (hard_deleted tells a hard delete from the source's own soft delete).
-- Every column but the key is nullable: a delete may be the first change silver sees.

CREATE TABLE IF NOT EXISTS silver.categories (
    category_id         bigint PRIMARY KEY,
    name                text,
    parent_category_id  bigint,
    created_at timestamptz, created_by text, updated_at timestamptz, updated_by text,
    version integer, deleted_at timestamptz, deleted_by text,
    hard_deleted boolean NOT NULL DEFAULT false,
    source_lsn bigint NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
    source_tx_id bigint, source_committed_at timestamptz NOT NULL,
    data_quality_score numeric(3, 2) NOT NULL, quality_checks_passed text[] NOT NULL,
    quality_issues text[] NOT NULL, source_bronze_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(), processing_version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS silver.customers (
    customer_id  bigint PRIMARY KEY,
    email        text,
    first_name   text,
    last_name    text,
    country      text,
    created_at timestamptz, created_by text, updated_at timestamptz, updated_by text,
    version integer, deleted_at timestamptz, deleted_by text,
    hard_deleted boolean NOT NULL DEFAULT false,
    source_lsn bigint NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
    source_tx_id bigint, source_committed_at timestamptz NOT NULL,
    data_quality_score numeric(3, 2) NOT NULL, quality_checks_passed text[] NOT NULL,
    quality_issues text[] NOT NULL, source_bronze_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(), processing_version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS silver.products (
    product_id   bigint PRIMARY KEY,
    sku          text,
    name         text,
    category_id  bigint,
    price        numeric(12, 2),
    currency     text,
    created_at timestamptz, created_by text, updated_at timestamptz, updated_by text,
    version integer, deleted_at timestamptz, deleted_by text,
    hard_deleted boolean NOT NULL DEFAULT false,
    source_lsn bigint NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
    source_tx_id bigint, source_committed_at timestamptz NOT NULL,
    data_quality_score numeric(3, 2) NOT NULL, quality_checks_passed text[] NOT NULL,
    quality_issues text[] NOT NULL, source_bronze_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(), processing_version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS silver.orders (
    order_id      bigint NOT NULL,
    order_date    date NOT NULL,
    customer_id   bigint,
    status        text,
    currency      text,
    total_amount  numeric(12, 2),
    created_at timestamptz, created_by text, updated_at timestamptz, updated_by text,
    version integer, deleted_at timestamptz, deleted_by text,
    hard_deleted boolean NOT NULL DEFAULT false,
    source_lsn bigint NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
    source_tx_id bigint, source_committed_at timestamptz NOT NULL,
    data_quality_score numeric(3, 2) NOT NULL, quality_checks_passed text[] NOT NULL,
    quality_issues text[] NOT NULL, source_bronze_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(), processing_version integer NOT NULL,
    PRIMARY KEY (order_id, order_date)
) PARTITION BY RANGE (order_date);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'silver.orders') THEN
        PERFORM partman.create_parent(
            p_parent_table := 'silver.orders',
            p_control := 'order_date',
            p_type := 'native',
            p_interval := 'monthly',
            p_premake := 3,
            p_start_partition := to_char(date_trunc('month', now()) - interval '3 months', 'YYYY-MM-DD')
        );
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS silver.order_items (
    order_item_id       bigint PRIMARY KEY,
    order_id            bigint,
    order_created_date  date,
    product_id          bigint,
    quantity            integer,
    unit_price          numeric(12, 2),
    created_at timestamptz, created_by text, updated_at timestamptz, updated_by text,
    version integer, deleted_at timestamptz, deleted_by text,
    hard_deleted boolean NOT NULL DEFAULT false,
    source_lsn bigint NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
    source_tx_id bigint, source_committed_at timestamptz NOT NULL,
    data_quality_score numeric(3, 2) NOT NULL, quality_checks_passed text[] NOT NULL,
    quality_issues text[] NOT NULL, source_bronze_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(), processing_version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS silver_order_items_order_idx ON silver.order_items (order_id);

CREATE TABLE IF NOT EXISTS silver.payments (
    payment_id          bigint PRIMARY KEY,
    order_id            bigint,
    order_created_date  date,
    amount              numeric(12, 2),
    currency            text,
    method              text,
    status              text,
    created_at timestamptz, created_by text, updated_at timestamptz, updated_by text,
    version integer, deleted_at timestamptz, deleted_by text,
    hard_deleted boolean NOT NULL DEFAULT false,
    source_lsn bigint NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
    source_tx_id bigint, source_committed_at timestamptz NOT NULL,
    data_quality_score numeric(3, 2) NOT NULL, quality_checks_passed text[] NOT NULL,
    quality_issues text[] NOT NULL, source_bronze_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(), processing_version integer NOT NULL
);
