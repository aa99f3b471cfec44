"""The price preview of the request form: the billing quote, and its value in real money.

The CCU prices come from ``BillingPort.quote``, their real-money value (display only) from
``BillingPort.money_value``.
"""

from __future__ import annotations

from typing import Any

from engine.cloud.billing_port import BillingPort, Quote, RequestSpec
from engine.i18n import format_ccus
from engine.types import plain
from portal.i18n import format_money


def price_preview(request: Any, spec: RequestSpec) -> dict[str, Any]:
    """The quote for ``spec`` as numbers (strings of decimals) and as localized text."""
    billing = request.find_service(BillingPort)
    quote: Quote = billing.quote(spec)
    value = billing.money_value(quote.total)
    money = {"hour": value.hour, "day": value.day, "month": value.month}
    locale = request.locale_name
    return {
        "per_appliance": plain(quote.per_appliance),
        "total": plain(quote.total),
        "quantity": quote.quantity,
        "components": quote.components,
        "currency": value.currency,
        "money": {period: str(value) for period, value in money.items()},
        "text": {
            "per_appliance": format_ccus(quote.per_appliance, locale),
            "total": format_ccus(quote.total, locale),
            **{f"money_{period}": format_money(request, value)
               for period, value in money.items()},
        },
    }
