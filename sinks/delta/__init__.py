"""The Delta Lake bronze tier: bronze rows as Delta tables (delta-rs), exactly once."""
