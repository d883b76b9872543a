"""Analytics state survives its changelog encoding exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tables.features import CustomerFeatures, FeatureValues
from tables.orders import ItemRow, OrderRow
from tables.revenue import Contribution, WindowTotals
from tables.state_codec import StateCodecError, decode, encode

T = datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        Contribution(T, "EUR", Decimal("10.10"), 123),
        Contribution(None, None, None, None),
        WindowTotals(T, T, "USD", Decimal("0.00"), 0, 3, True),
        OrderRow(1, 2, "SHIPPED", "GBP", Decimal("1.05"), T, deleted=True),
        frozenset({3, 1, 2}),
        {5: ItemRow(5, 1, 9, 2, Decimal("3.30"))},
        CustomerFeatures(
            7, FeatureValues(1, Decimal("1.00"), None, "Books", 2, Decimal("9.99"), "NEW"), T, 4, T
        ),
        "Books",
    ],
)
def test_values_round_trip_exactly(value: object) -> None:
    assert decode(encode(value)) == value


def test_unknown_types_are_refused() -> None:
    with pytest.raises(StateCodecError):
        encode(object())
    with pytest.raises(StateCodecError):
        decode(b'{"$c": "os.system"}')
