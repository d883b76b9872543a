"""Metrics, ``/metrics`` endpoint, JSON logs with trace ids, lag and slow-query reports."""
