-- The seed's example rules, on real columns. Rules are data: add or change rows to change
-- behaviour without a deploy (`bitvelocity quality rules` lists them).
INSERT INTO ops.data_quality_rules (table_name, column_name, rule_type, rule_config, severity) VALUES
    ('customers', 'email', 'PATTERN', '{"regex": "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"}', 'ERROR'),
    ('orders', 'total_amount', 'RANGE', '{"min": 0, "max": 100000}', 'ERROR'),
    ('orders', 'customer_id', 'REFERENCE', '{"table": "customers", "column": "customer_id"}', 'ERROR'),
    ('order_items', 'quantity', 'NOT_NULL', '{}', 'WARNING')
ON CONFLICT (table_name, column_name, rule_type) DO NOTHING;
