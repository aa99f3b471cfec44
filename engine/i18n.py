"""Languages: negotiation (user choice, then Accept-Language), Babel formatting helpers, and
the ``engine`` translation domain of the services' error messages.

Services mark a message with ``_`` and ``${name}`` placeholders (``_("no kernel named
${name}", mapping={"name": repr(name)})``); the error keeps the English text for the APIs
and the faces show ``translate_error`` in the user's language."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal
from pyramid.i18n import TranslationStringFactory

from engine.errors import QrmError

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"

DOMAIN = "engine"
_ = TranslationStringFactory(DOMAIN)


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


def translate_error(request: Any, error: QrmError) -> str:
    """The error's text in the request's language (a message not marked for translation
    stays as it was raised)."""
    if error.translation is None:
        return error.message
    return request.localizer.translate(error.translation)


def includeme(config: Any) -> None:
    config.set_locale_negotiator(negotiate_locale_name)
    config.add_translation_dirs("engine:locale")
