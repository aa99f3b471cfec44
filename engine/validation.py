"""Input checks shared by every service: each error names the field it concerns."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pyramid.i18n import TranslationString

from engine.errors import ValidationError
from engine.i18n import _

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: syntax only; a host name without a dot (root@localhost) is a valid address on a LAN
EMAIL_RE = re.compile(r"^[^@\s]+@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def invalid(message: TranslationString, field: str, **mapping: Any) -> ValidationError:
    """A ValidationError about ``field``; its message's ``${field}`` is the field's name."""
    return ValidationError(TranslationString(message, mapping={"field": field, **mapping}),
                           field=field)


def check_name(value: Any, *, field: str, min_length: int = 1, max_length: int = 50) -> str:
    """A login or object name: letters, digits, ``.``, ``_``, ``-``; starts alphanumeric."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(_("${field} is required"), field)
    value = value.strip()
    if not min_length <= len(value) <= max_length:
        raise invalid(_("${field} must be ${min_length} to ${max_length} characters long"),
                      field, min_length=min_length, max_length=max_length)
    if not NAME_RE.match(value):
        raise invalid(_("${field} may contain only letters, digits, '.', '_' and '-', "
                        "starting with a letter or digit"), field)
    return value


def check_password(value: Any, *, field: str = "password") -> str:
    if not isinstance(value, str) or len(value) < 8:
        raise invalid(_("${field} must be at least 8 characters long"), field)
    if len(value) > 200:
        raise invalid(_("${field} is too long (200 characters at most)"), field)
    return value


def check_email(value: Any, *, field: str = "email", required: bool = True) -> str:
    """Syntax only: no network look-ups (they are slow and abusable)."""
    value = (value or "").strip() if isinstance(value, str | None) else value
    if not value:
        if required:
            raise invalid(_("${field} is required"), field)
        return ""
    if not isinstance(value, str) or len(value) > 255 or not EMAIL_RE.match(value):
        raise invalid(_("${field} is not a valid e-mail address"), field)
    return value


def check_int(value: Any, *, field: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise invalid(_("${field} must be a whole number"), field)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid(_("${field} must be a whole number"), field) from None
    if number < minimum:
        raise invalid(_("${field} must be at least ${minimum}"), field, minimum=minimum)
    if maximum is not None and number > maximum:
        raise invalid(_("${field} must be at most ${maximum}"), field, maximum=maximum)
    return number


def check_text(value: Any, *, field: str, max_length: int = 100, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid(_("${field} must be text"), field)
    value = value.strip()
    if required and not value:
        raise invalid(_("${field} is required"), field)
    if len(value) > max_length:
        raise invalid(_("${field} is too long (${max_length} characters at most)"), field,
                      max_length=max_length)
    if any(ord(ch) < 32 for ch in value):
        raise invalid(_("${field} contains control characters"), field)
    return value


def check_time(value: Any, *, field: str) -> dt.datetime:
    """An aware datetime (naive values are refused: there is no server-local time here)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise invalid(_("${field} is not an ISO 8601 time"), field) from None
    if not isinstance(value, dt.datetime):
        raise invalid(_("${field} must be a date and time"), field)
    if value.tzinfo is None:
        raise invalid(_("${field} must carry a time zone (UTC)"), field)
    return value.astimezone(dt.UTC)
