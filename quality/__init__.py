"""Data quality: rules as data, a pure engine that scores silver rows, and its database edge.

``rules`` parses rule rows, ``engine`` evaluates batches and pending references without
I/O, ``redaction`` keeps PII out of samples, ``store`` is the asyncpg edge (rule cache,
reference lookups, results and the pending-reference sweep).
"""
