"""Languages: negotiation (user choice, then Accept-Language), Babel formatting helpers, and
the ``engine`` translation domain of the services' error messages.

Services mark a message with ``_`` and ``${name}`` placeholders (``_("no kernel named
${name}", mapping={"name": repr(name)})``); the error keeps the English text for the APIs
and the faces show ``translate_error`` in the user's language."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

from babel import Locale
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


@functools.lru_cache(maxsize=16)
def parsed_locale(locale: str) -> Locale:
    """The Babel locale of a language code, parsed once (not for every cell of a list)."""
    return Locale.parse(locale)


class TimeFormat:
    """``format_datetime(format="medium", tzinfo=UTC)`` of one locale, with the locale and
    its date and time patterns parsed once (``time_format``): what Babel looks up on every
    call, done at the first."""

    def __init__(self, locale: str) -> None:
        self.locale = parsed_locale(locale)
        # Babel drops the quotes of the combining pattern as it fills it in
        self._datetime = self.locale.datetime_formats["medium"].replace("'", "")
        self._date = self.locale.date_formats["medium"]
        self._time = self.locale.time_formats["medium"]

    def __call__(self, value: dt.datetime | None) -> str:
        if value is None:
            return "—"
        value = value.astimezone(dt.UTC)
        return self._datetime.replace("{1}", self._date.apply(value, self.locale)).replace(
            "{0}", self._time.apply(value, self.locale))


@functools.lru_cache(maxsize=16)
def time_format(locale: str) -> TimeFormat:
    """The shared (stateless) time format of a locale."""
    return TimeFormat(locale)


def format_time(value: dt.datetime | None, locale: str) -> str:
    """A time in UTC, Babel's medium date and time of ``locale``."""
    return time_format(locale)(value)


def format_ccus(value: Decimal | None, locale: str) -> str:
    if value is None:
        return "—"
    return format_decimal(value, format="#,##0.##", locale=parsed_locale(locale))


def translate_error(request: Any, error: QrmError) -> str:
    """The error's text in the request's language (a message not marked for translation
    stays as it was raised)."""
    if error.translation is None:
        return error.message
    return request.localizer.translate(error.translation)


def includeme(config: Any) -> None:
    config.set_locale_negotiator(negotiate_locale_name)
    config.add_translation_dirs("engine:locale")
