"""Column helpers shared by every model module."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Enum, Numeric

#: CCU amounts and prices: exact decimals, never float.
Money = Numeric(18, 4, asdecimal=True)

#: A JSON list/dict column (stored as text where the backend has no JSON type).
JsonValue = JSON()


def enum_type(enum_class: type[enum.Enum], length: int = 20) -> Enum:
    """Store an enum by its value as a plain string (no native enum, no migration pain)."""
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )


def plain(value: Decimal) -> str:
    """A CCU amount as people write it: ``7``, ``0.5`` (no ``7.0000``, no exponent)."""
    return f"{Decimal(value).normalize():f}"


def quantize_ccus(value: Any) -> Decimal:
    """Round a CCU amount to the ledger's precision (4 decimal places)."""
    return Decimal(value).quantize(Decimal("0.0001"))
