"""What every console template gets: the ``admin`` translation domain, Babel formatting in
the admin's language, flash messages, the CSRF token and the acting admin.

The ``.jinja2`` environment is shared by the faces, so the console binds its own
``gettext``/``ngettext`` per render (render values win over environment globals, and the
i18n extension's ``_`` looks ``gettext`` up in the render context).
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_date, format_timedelta
from babel.numbers import format_decimal

from admin.i18n import DOMAIN, error_text, label
from engine.i18n import LANGUAGES, format_ccus, parsed_locale, time_format

TEMPLATE_PACKAGE = "admin:templates/"
FLASH_INFO = "admin.info"
FLASH_ERROR = "admin.error"


def template(name: str) -> str:
    """The renderer name of console template ``name``."""
    return f"{TEMPLATE_PACKAGE}{name}.jinja2"


def flash(request: Any, message: str, *, error: bool = False) -> None:
    request.session.flash(message, queue=FLASH_ERROR if error else FLASH_INFO)


class Formatter:
    """Dates, numbers and CCU amounts in one locale (times are shown in UTC). One per
    locale (``formatter``): the locale and its date-time patterns are parsed once, not for
    every cell of a list."""

    def __init__(self, locale_name: str) -> None:
        self.locale_name = locale_name
        self.locale = parsed_locale(locale_name)
        self.time = time_format(locale_name)

    def age(self, value: dt.datetime | None, now: dt.datetime) -> str:
        """How long ago ``value`` was, in words of the locale (``3 minutes``)."""
        if value is None:
            return "—"
        return format_timedelta(now - value, threshold=1, locale=self.locale)

    def seconds(self, value: int | None) -> str:
        """A duration given in seconds, in words of the locale (``2 days``)."""
        if value is None:
            return "—"
        return format_timedelta(dt.timedelta(seconds=value), threshold=1, locale=self.locale)

    def date(self, value: dt.date | None) -> str:
        return "—" if value is None else format_date(value, format="medium", locale=self.locale)

    def number(self, value: int | Decimal | None) -> str:
        return "—" if value is None else format_decimal(value, locale=self.locale)

    def ccus(self, value: Decimal | None) -> str:
        return format_ccus(value, self.locale_name)

    def signed_ccus(self, value: Decimal) -> str:
        return ("+" if value > 0 else "") + format_ccus(value, self.locale_name)

    def decimal_input(self, value: Decimal) -> str:
        """A decimal for an input field: every digit kept, no grouping."""
        return format_decimal(value.normalize(), locale=self.locale, group_separator=False,
                              decimal_quantization=False)

    def megabytes(self, value: int | None) -> str:
        return "—" if value is None else f"{format_decimal(value, locale=self.locale)} MB"

    def limit(self, value: int) -> str:
        """A per-user limit, where 0 means unlimited."""
        return "∞" if not value else format_decimal(value, locale=self.locale)


@functools.lru_cache(maxsize=8)
def formatter(locale_name: str) -> Formatter:
    """The (shared, stateless) formatter of a locale."""
    return Formatter(locale_name)


def language_names() -> list[tuple[str, str]]:
    """The console's languages, each named in its own language."""
    return [(code, Locale.parse(code).display_name.capitalize()) for code in LANGUAGES]


def add_template_globals(event: Any) -> None:
    """``BeforeRender`` subscriber: fills in the console's template globals."""
    if not str(event.get("renderer_name", "")).startswith(TEMPLATE_PACKAGE):
        return
    request = event["request"]
    if request is None:
        return
    localizer = request.localizer
    event.update(
        gettext=lambda message: localizer.translate(message, domain=DOMAIN),
        ngettext=lambda singular, plural, n: localizer.pluralize(singular, plural, n,
                                                                 domain=DOMAIN),
        fmt=formatter(request.locale_name),
        label=lambda member: label(request, member),
        error_text=lambda error: error_text(request, error),
        language=request.locale_name,
        languages=language_names(),
        actor=request.identity,
        csrf_token=request.session.get_csrf_token(),
        flashes={"info": request.session.pop_flash(FLASH_INFO),
                 "error": request.session.pop_flash(FLASH_ERROR)},
    )
