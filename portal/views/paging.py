"""The portal's paged lists: the page size and keys read from the address (anything else
is a bad address: 400 naming the field), the addresses of a list with filters changed, and
the user's ledger a page at a time."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any

from pyramid.httpexceptions import HTTPBadRequest
from sqlalchemy import select

from billing.models import LedgerEntry
from engine.errors import ValidationError
from engine.i18n import translate_error
from engine.paging import KeysetPager, Page
from portal.i18n import _, translate

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
LEDGER_PAGER = KeysetPager(LedgerEntry.id, descending=True)


def bad_address(field: str, text: str) -> HTTPBadRequest:
    """400, naming the parameter of the address that is wrong."""
    return HTTPBadRequest(detail=f"{field}: {text}")


def page_size(request: Any, default: int = DEFAULT_PAGE_SIZE) -> int:
    raw = request.GET.get("size") or str(default)
    if not raw.isdigit() or int(raw) not in (*PAGE_SIZES, default):
        raise bad_address("size", translate(request, _("the rows per page are one of ${sizes}"),
                                            sizes=", ".join(map(str, PAGE_SIZES))))
    return int(raw)


def choice(request: Any, field: str, choices: Iterable[enum.Enum]) -> Any:
    """The filter ``field`` of the address: None if absent, else one of the enum
    ``choices`` by value; anything else is a bad address."""
    value = request.GET.get(field)
    if not value:
        return None
    table = {member.value: member for member in choices}
    if value not in table:
        raise bad_address(field, translate(request, _("no such choice: ${value}"),
                                           value=value))
    return table[value]


def fetch(request: Any, pages: Callable[..., Page], size: int) -> Page:
    """``pages(after=, before=, size=)`` at the keys of the address."""
    try:
        return pages(after=request.GET.get("after"), before=request.GET.get("before"),
                     size=size)
    except ValidationError as error:
        raise bad_address(error.field or "after", translate_error(request, error)) from None


class ListAddress:
    """The addresses of one list with the filters ``kept`` (None and the default size left
    out), some changed, on its first page."""

    def __init__(self, request: Any, route: str, kept: dict[str, Any], *, default_size: int,
                 **route_kw: Any) -> None:
        self.request, self.route, self.route_kw = request, route, route_kw
        self.filters = {key: (value.value if isinstance(value, enum.Enum) else value)
                        for key, value in kept.items()
                        if value and not (key == "size" and value == default_size)}

    def __call__(self, **changes: Any) -> str:
        query = {key: value for key, value in {**self.filters, **changes}.items() if value}
        return self.request.route_path(self.route, _query=query, **self.route_kw)


def paged_list(request: Any, route: str, pages: Callable[..., Page], *,
               kept: dict[str, Any] | None = None, default_size: int = DEFAULT_PAGE_SIZE,
               **route_kw: Any) -> dict[str, Any]:
    """One page of ``pages`` at the address's keys and size, and what the ``pager`` macro
    needs to link the pages around it."""
    size = page_size(request, default_size)
    page = fetch(request, pages, size)
    address = ListAddress(request, route, {**(kept or {}), "size": size},
                          default_size=default_size, **route_kw)
    return {"page": page, "list_url": address, "filters": address.filters, "size": size,
            "page_sizes": sorted({*PAGE_SIZES, default_size}),
            "paged": bool(request.GET.get("after") or request.GET.get("before")),
            "list_path": request.route_path(route, **route_kw)}


def ledger_pages(request: Any, user_id: int, request_id: int | None = None
                 ) -> Callable[..., Page]:
    """The user's ledger movements (of one request, if given), newest first, by pages."""
    query = select(LedgerEntry).where(LedgerEntry.user_id == user_id)
    if request_id is not None:
        query = query.where(LedgerEntry.request_id == request_id)
    return lambda **keys: LEDGER_PAGER.page(request.dbsession, query, **keys)
