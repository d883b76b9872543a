"""Writers to the stores: PostgreSQL (migrations, offsets, bronze/silver/gold), Redis,
Cassandra and MongoDB."""
