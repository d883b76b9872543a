"""Cassandra: the chat and telemetry stores (schema, session, idempotent writers)."""
