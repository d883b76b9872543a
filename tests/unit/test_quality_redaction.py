"""Samples never carry personal data in the clear."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from quality.redaction import failure_sample, mask_email, redact_value


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("john@example.com", "j***@e***.com"),
        ("j.smith@mail.example.co.uk", "j***@m***.uk"),
        ("nobody@localhost", "n***@l***"),
        ("@example.com", "***@e***.com"),
        ("broken@", "b***@***"),
    ],
)
def test_emails_keep_only_first_letters_and_top_level_domain(raw: str, masked: str) -> None:
    assert mask_email(raw) == masked


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("first_name", "Johanna", "J***"),
        ("last_name", "Smith", "S***"),
        ("email", "ann@shop.example", "a***@s***.example"),
        ("email", "not an email", "n***"),
        ("total_amount", Decimal("-3.50"), "-3.50"),
        ("quantity", 3, 3),
        ("order_date", date(2024, 5, 1), "2024-05-01"),
        ("status", "PAID", "PAID"),
        ("status", None, None),
    ],
)
def test_values_are_masked_when_personal_and_kept_otherwise(
    column: str, value: object, shown: object
) -> None:
    assert redact_value(column, value) == shown


def test_a_sample_holds_the_key_the_column_and_the_masked_value_only() -> None:
    sample = failure_sample({"customer_id": 7}, "email", "ann@shop", "does not match the pattern")
    assert sample == {
        "key": {"customer_id": 7},
        "column": "email",
        "value": "a***@s***",
        "reason": "does not match the pattern",
    }
