"""The marker of a column PostgreSQL left out of a change (an unchanged TOAST value)."""

from __future__ import annotations

from typing import Final


class Unchanged:
    """The value of a column PostgreSQL left out of the change (an unchanged TOAST value).

    Downstream must keep the previous value of the column: never write this marker.
    """

    __slots__ = ()
    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
