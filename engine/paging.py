"""Keyset paging for lists that can grow: a page is "the next ``size`` rows after this key",
never "rows ``offset`` to ``offset + size``", so the first page and the thousandth cost the
same and a row added meanwhile neither repeats nor skips a row of the pages around it.

The order is a list of columns whose last one is unique (the primary key): it breaks the ties
of the columns before it. The key of a row is the values of those columns, carried between
requests as an opaque text (``Page.next`` / ``Page.previous``)::

    pager = KeysetPager(Resource.id)
    page = pager.page(db, select(Resource).where(...), after=request.GET.get("after"),
                      before=request.GET.get("before"), size=50)
    page.rows, page.next, page.previous
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from engine.errors import ValidationError
from engine.i18n import _

#: the page size used when none is asked for, and the largest one given
DEFAULT_SIZE = 50
MAX_SIZE = 500


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of rows in the pager's order, and the keys of the pages beside it."""

    #: each row is what the query selects: the one entity or column, or a tuple of them
    rows: list[Any]
    size: int
    #: the key to ask for the following page with (``after=``); None on the last page
    next: str | None
    #: the key to ask for the page before with (``before=``); None on the first page
    previous: str | None


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class KeysetPager:
    """Pages of a query in the order of ``columns`` (all ascending, or all descending), the
    last column unique. The columns must not be NULL (keys compare with ``<`` and ``>``)."""

    def __init__(self, *columns: Any, descending: bool = False) -> None:
        if not columns:
            raise ValueError("a keyset pager needs at least one column (the last unique)")
        self.columns, self.descending = tuple(columns), descending

    # -- keys -----------------------------------------------------------------------------
    def encode(self, values: Sequence[Any]) -> str:
        """A row's key as the text that travels in an address."""
        return json.dumps([_encode(value) for value in values], separators=(",", ":"))

    def decode(self, text: str, *, field: str) -> tuple[Any, ...]:
        """The key values of ``text``, each converted to its column's type; refused as
        ``field`` when it is not a key of this pager (a hand-edited address)."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, list) or len(raw) != len(self.columns):
                raise ValueError(text)
            return tuple(self._convert(column, value)
                         for column, value in zip(self.columns, raw, strict=True))
        except (ValueError, TypeError, ArithmeticError):
            raise ValidationError(_("${field} is not a page key", mapping={"field": field}),
                                  field=field) from None

    @staticmethod
    def _convert(column: Any, value: Any) -> Any:
        python_type = column.type.python_type
        if value is None:
            raise ValueError("a page key has no empty parts")
        if python_type is dt.datetime:
            parsed = dt.datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        if python_type is bool or isinstance(value, bool):
            raise ValueError("no booleans in page keys")
        if python_type is int and not isinstance(value, int):
            raise ValueError(value)
        return python_type(value)

    # -- queries --------------------------------------------------------------------------
    def _beyond(self, values: tuple[Any, ...], *, forward: bool) -> Any:
        """Rows strictly past ``values`` in the reading direction: for (a, b) ascending,
        ``a > x OR (a = x AND b > y)`` (spelt out: portable, and it uses the index)."""
        greater = forward != self.descending
        clauses = []
        for index, column in enumerate(self.columns):
            equal = [self.columns[i] == values[i] for i in range(index)]
            step = column > values[index] if greater else column < values[index]
            clauses.append(and_(*equal, step))
        return or_(*clauses)

    def _ordered(self, query: Select, *, forward: bool) -> Select:
        ascending = forward != self.descending
        return query.order_by(None).order_by(
            *(column.asc() if ascending else column.desc() for column in self.columns))

    def _fetch(self, db: Session, query: Select, limit: int) -> list[tuple[Any, tuple]]:
        """``(row, key)`` pairs: the key columns ride along at the end of each row."""
        width = len(self.columns)
        result = []
        for row in db.execute(query.add_columns(*self.columns).limit(limit)):
            values, key = tuple(row[:-width]), tuple(row[-width:])
            result.append((values[0] if len(values) == 1 else values, key))
        return result

    def page(self, db: Session, query: Select, *, after: str | None = None,
             before: str | None = None, size: int = DEFAULT_SIZE) -> Page:
        """The page after the key ``after``, or the one before ``before``, or (neither) the
        first. One query, plus one to tell whether a page before exists when paging on."""
        size = max(1, min(int(size), MAX_SIZE))
        forward = not before
        if after and before:
            raise ValidationError(_("ask for the page after a key or before one, not both"),
                                  field="before")
        key = (self.decode(after, field="after") if after else
               self.decode(before, field="before") if before else None)
        paged = query if key is None else query.where(self._beyond(key, forward=forward))
        found = self._fetch(db, self._ordered(paged, forward=forward), size + 1)
        more = len(found) > size
        found = found[:size]
        if not forward:
            found.reverse()
        rows = [row for row, _key in found]
        if not found:
            return Page(rows, size, None, None)
        first, last = self.encode(found[0][1]), self.encode(found[-1][1])
        if forward:
            behind = key is not None and self._exists(db, query, found[0][1], forward=False)
            return Page(rows, size, last if more else None, first if behind else None)
        return Page(rows, size, last, first if more else None)

    def _exists(self, db: Session, query: Select, key: tuple, *, forward: bool) -> bool:
        """Whether a row lies past ``key``: the key columns only (no entity, no eager
        loads), the query's joins and conditions kept."""
        probe = query.with_only_columns(*self.columns).where(self._beyond(key, forward=forward))
        return db.execute(probe.limit(1)).first() is not None
