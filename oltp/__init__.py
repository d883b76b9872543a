"""The OLTP source: BitVelocity's transactional schema, its migrations and the load generator."""
