"""PostgreSQL: migrations runner, offsets store and the medallion writers."""
