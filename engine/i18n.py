"""Languages: negotiation (user choice, then Accept-Language) and Babel formatting helpers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"


def negotiate_locale_name(request: Any) -> str:
    """The user's saved choice, else the best match of Accept-Language, else English."""
    chosen = request.session.get("language") if hasattr(request, "session") else None
    if chosen in LANGUAGES:
        return chosen
    offers = request.accept_language.lookup(LANGUAGES, default=DEFAULT_LANGUAGE)
    return offers if offers in LANGUAGES else DEFAULT_LANGUAGE


def format_time(value: dt.datetime | None, locale: str) -> str:
    if value is None:
        return "—"
    return format_datetime(value, format="medium", tzinfo=dt.UTC, locale=Locale.parse(locale))


def format_ccus(value: Decimal | None, locale: str) -> str:
    if value is None:
        return "—"
    return format_decimal(value, format="#,##0.##", locale=Locale.parse(locale))


def includeme(config: Any) -> None:
    config.set_locale_negotiator(negotiate_locale_name)
