"""The serdes metrics (Prometheus), registered once at import in the default registry.

Only what serdes itself counts; the process-wide metrics module owns the rest of
DESIGN.md section 10 and can import these.
"""

from __future__ import annotations

from prometheus_client import Counter

#: Records sent to a dead-letter topic, by origin topic and error class.
DLQ_RECORDS = Counter(
    "bv_dlq_records",
    "Records that could not be decoded or validated and went to <topic>.dlq",
    ["topic", "reason"],
)
