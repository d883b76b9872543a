"""The SQL oracle of I4 (hourly revenue and customer features from the OLTP tables).

It lives in ``chaos.expectations``, shared with the chaos oracle; re-exported here for the
analytics tests.
"""

from chaos.expectations import FEATURE_COLUMNS, FEATURES, HOURLY, expected_features, expected_hourly

__all__ = ["FEATURES", "FEATURE_COLUMNS", "HOURLY", "expected_features", "expected_hourly"]
