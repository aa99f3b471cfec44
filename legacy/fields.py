"""The comma-separated string every legacy operation takes: ``mode,user,password,fields…``.

openQRM split it on every comma and checked the field count; its other checks were a
character filter (a guard against its SQL and shell injections, W-9/W-10) and dates read
by character position in the server's local time (W-26). Here each field is checked for
its type instead (whole numbers, ``0``/``1``, ``dd-mm-yyyy HH:MM`` dates read as UTC,
Unix times), and everything else is left to the services, which check every value
themselves. A malformed string is answered with a fault that names the field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.i18n import _

#: the largest whole number a field takes (the database's integer columns)
MAX_INT = 2**31 - 1
_INT_RE = re.compile(r"^[0-9]+$")
_NUMBER_RE = re.compile(r"^-?[0-9]{1,15}(\.[0-9]{1,4})?$")
_DATE_RE = re.compile(r"^([0-9]{2})-([0-9]{2})-([0-9]{4}) ([0-9]{2}):([0-9]{2})$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: the field kinds: name, text (any string), int (whole number), number (CCUs, decimal,
#: may be negative), bool (0 or 1), date (dd-mm-yyyy HH:MM, UTC), epoch (Unix time)
KINDS = ("name", "text", "int", "number", "bool", "date", "epoch")


class FieldError(Exception):
    """A string that does not fit the operation (answered with a fault)."""

    def __init__(self, message: Any, *, field: str | None = None) -> None:
        self.translation = message
        self.message = str(message.interpolate())
        super().__init__(self.message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: str = "text"
    #: whether an empty value is allowed (read as None for numbers and dates, "" for text)
    optional: bool = False


@dataclasses.dataclass(frozen=True)
class Credentials:
    mode: str
    user: str
    password: str


def split(symbol: str) -> list[str]:
    """The fields, as openQRM split them: on every comma (so no field holds one)."""
    return symbol.split(",")


def credentials(fields: list[str]) -> Credentials | None:
    """The leading ``mode,user,password``, as given (None if fewer than three fields)."""
    if len(fields) < 3:
        return None
    return Credentials(fields[0].strip(), fields[1].strip(), fields[2])


def _problem(index: int, field: Field, message: Any, **mapping: Any) -> FieldError:
    # the message is marked with _() where it is written (for extraction), the field's
    # place and name are added here
    return FieldError(_(message, mapping={"index": index, "name": field.name, **mapping}),
                      field=field.name)


def convert(index: int, field: Field, raw: str) -> Any:
    """The value of field ``index`` (1-based, counting mode, user and password)."""
    if _CONTROL_RE.search(raw):
        raise _problem(index, field, _(
            "field ${index} (${name}) holds a control character"))
    value = raw if field.kind in ("text",) else raw.strip()
    if value == "":
        if not field.optional:
            raise _problem(index, field, _("field ${index} (${name}) must not be empty"))
        return "" if field.kind in ("name", "text") else None
    return _CONVERTERS.get(field.kind, _text)(index, field, value)


def _text(_index: int, _field: Field, value: str) -> Any:
    return value


def _whole(index: int, field: Field, value: str) -> Any:
    if field.kind in ("int", "epoch"):
        if not _INT_RE.match(value) or int(value) > (MAX_INT if field.kind == "int"
                                                     else 253402300799):
            if field.kind == "epoch":
                raise _problem(index, field, _(
                    "field ${index} (${name}) must be a Unix time (seconds since 1970), "
                    "not ${value}"), value=repr(value))
            raise _problem(index, field, _(
                "field ${index} (${name}) must be a whole number from 0 to ${maximum}, "
                "not ${value}"), maximum=MAX_INT, value=repr(value))
        number = int(value)
        if field.kind == "epoch":
            return dt.datetime.fromtimestamp(number, dt.UTC)
        return number
    return None


def _number(index: int, field: Field, value: str) -> Any:
    if field.kind == "number":
        try:
            if not _NUMBER_RE.match(value):
                raise InvalidOperation
            return Decimal(value)
        except InvalidOperation:
            raise _problem(index, field, _(
                "field ${index} (${name}) must be a number (at most 15 digits, 4 "
                "decimals), not ${value}"), value=repr(value)) from None
    return None


def _bool(index: int, field: Field, value: str) -> Any:
    if field.kind == "bool":
        if value not in ("0", "1"):
            raise _problem(index, field, _(
                "field ${index} (${name}) must be 0 or 1, not ${value}"), value=repr(value))
        return value == "1"
    return None


def _date(index: int, field: Field, value: str) -> Any:
    if field.kind == "date":
        match = _DATE_RE.match(value)
        try:
            if match is None:
                raise ValueError
            day, month, year, hour, minute = (int(part) for part in match.groups())
            return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)
        except ValueError:
            raise _problem(index, field, _(
                "field ${index} (${name}) must be a date dd-mm-yyyy HH:MM (UTC), not "
                "${value}"), value=repr(value)) from None
    return None


_CONVERTERS = {"int": _whole, "epoch": _whole, "number": _number, "bool": _bool,
               "date": _date}


def parse(operation: str, fields: list[str], spec: tuple[Field, ...]) -> list[Any]:
    """The values of the operation's own fields (after mode, user, password), or
    FieldError: the count first, then each field in order."""
    expected = 3 + len(spec)
    if len(fields) != expected:
        raise FieldError(_("${operation} takes ${expected} comma-separated fields "
                           "(mode,user,password${more}), not ${given}",
                           mapping={"operation": operation, "expected": expected,
                                    "more": "".join(f",{field.name}" for field in spec),
                                    "given": len(fields)}))
    mode = fields[0].strip()
    if mode not in ("admin", "user"):
        raise FieldError(_("field 1 (mode) must be admin or user, not ${value}",
                           mapping={"value": repr(mode)}), field="mode")
    if not fields[1].strip():
        raise FieldError(_("field 2 (user) must not be empty"), field="user")
    return [convert(index, field, raw)
            for index, (field, raw) in enumerate(zip(spec, fields[3:], strict=True), start=4)]


# -- what the answers carry -------------------------------------------------------------------
def wire_date(moment: dt.datetime | None) -> str:
    """A date in openQRM's answers: ``dd-mm-yyyy HH-MM`` (UTC); empty for none."""
    return moment.astimezone(dt.UTC).strftime("%d-%m-%Y %H-%M") if moment else ""


def wire_transaction_time(moment: dt.datetime) -> str:
    """A ledger row's time as openQRM's transaction lists gave it: ``yy/mm/dd HH:MM:SS``."""
    return moment.astimezone(dt.UTC).strftime("%y/%m/%d %H:%M:%S")


def wire_number(value: Any) -> str:
    """A CCU figure as text: whole numbers without decimals."""
    number = Decimal(value or 0)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")
