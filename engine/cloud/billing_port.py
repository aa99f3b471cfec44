"""What the cloud needs from billing, as an interface the billing package implements.

The engine never imports ``billing`` (billing imports the engine); the billing package
registers its implementation for this interface with ``pyramid_services``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """The priced parts of a request (names, not ids)."""

    kernel: str
    virtualization: str
    memory_mb: int
    cpus: int
    disk_mb: int
    network_cards: int
    quantity: int
    ha: bool = False
    puppet_groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Quote:
    """The price of one appliance per hour, its components, and the request's total."""

    per_appliance: Decimal
    components: list[dict]
    quantity: int

    @property
    def total(self) -> Decimal:
        return self.per_appliance * self.quantity


@dataclasses.dataclass(frozen=True)
class MoneyValue:
    """What CCUs per hour are worth in real money (display only; only CCUs are charged)."""

    currency: str
    hour: Decimal
    day: Decimal
    month: Decimal


class BillingPort(Protocol):
    def quote(self, spec: RequestSpec) -> Quote:
        """Price per hour of a request from the enabled products."""

    def money_value(self, ccus_per_hour: Decimal) -> MoneyValue:
        """The real-money value of ``ccus_per_hour`` per hour, day and (31-day) month."""

    def balance(self, user: Any) -> Decimal:
        """The user's CCU balance (the sum of the ledger)."""

    def credit(self, user: Any, amount: Decimal, *, reason: str, comment: str, actor: Any,
               request_id: int | None = None, key: str | None = None) -> Any:
        """Post a credit (> 0) or debit (< 0) to the ledger."""

    def has_history(self, user: Any, *, request_id: int | None = None) -> bool:
        """Whether the ledger holds rows of the user (of one request, if given)."""

    def charge_appliance(self, cloud_appliance: Any, *, now: dt.datetime, actor: Any) -> int:
        """Charge every started, uncharged hour of one appliance; return hours charged."""
