"""What the console's lists share: the page size, the page keys and the filters read from
the address (anything else is a bad address: 400 naming the field), and the addresses of
the list with some of them changed."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any

from pyramid.httpexceptions import HTTPBadRequest
from sqlalchemy import select

from admin.i18n import _, translate
from billing.models import LedgerEntry
from engine.errors import ValidationError
from engine.i18n import translate_error
from engine.paging import KeysetPager, Page

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
LEDGER_PAGER = KeysetPager(LedgerEntry.id, descending=True)


def bad_address(request: Any, field: str, text: str) -> HTTPBadRequest:
    """400, naming the parameter of the address that is wrong."""
    return HTTPBadRequest(detail=f"{field}: {text}")


def page_size(request: Any) -> int:
    raw = request.GET.get("size") or str(DEFAULT_PAGE_SIZE)
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise bad_address(request, "size", translate(
            request, _("the rows per page are one of ${sizes}"),
            sizes=", ".join(map(str, PAGE_SIZES))))
    return int(raw)


def choice(request: Any, field: str, choices: Iterable[Any] | dict[str, Any]) -> Any:
    """The filter ``field`` of the address: None if absent, else one of ``choices`` (enum
    members by value, or a dict by key); anything else is a bad address."""
    value = request.GET.get(field)
    if not value:
        return None
    table = choices if isinstance(choices, dict) else {
        (member.value if isinstance(member, enum.Enum) else member): member
        for member in choices}
    if value not in table:
        raise bad_address(request, field, translate(request, _("no such choice: ${value}"),
                                                    value=value))
    return table[value]


def fetch(request: Any, pages: Callable[..., Page], size: int) -> Page:
    """``pages(after=, before=, size=)`` with the keys of the address; a key that is not
    one of the list's is a bad address."""
    try:
        return pages(after=request.GET.get("after"), before=request.GET.get("before"),
                     size=size)
    except ValidationError as error:
        raise bad_address(request, error.field or "after",
                          translate_error(request, error)) from None


class ListAddress:
    """The addresses of one list (``route``) with the filters ``kept`` (the page size
    included; None and the default size left out), some changed, on its first page."""

    def __init__(self, request: Any, route: str, kept: dict[str, Any], **route_kw: Any
                 ) -> None:
        self.request, self.route, self.route_kw = request, route, route_kw
        self.filters = {key: (value.value if isinstance(value, enum.Enum) else value)
                        for key, value in kept.items()
                        if value and not (key == "size" and value == DEFAULT_PAGE_SIZE)}

    def __call__(self, **changes: Any) -> str:
        query = {key: value for key, value in {**self.filters, **changes}.items() if value}
        return self.request.route_path(self.route, _query=query, **self.route_kw)


def list_values(request: Any, page: Page, address: ListAddress, size: int) -> dict[str, Any]:
    """What the ``pager`` macro needs."""
    return {"page": page, "list_url": address, "filters": address.filters, "size": size,
            "page_sizes": PAGE_SIZES, "paged": bool(request.GET.get("after")
                                                    or request.GET.get("before")),
            "list_path": request.route_path(address.route, **address.route_kw)}



def ledger_page(request: Any, *, user_id: int | None = None, request_id: int | None = None,
                size: int = DEFAULT_PAGE_SIZE) -> Page:
    """A page of ledger movements, newest first (a user's, a request's), at the keys of the
    address."""
    query = select(LedgerEntry)
    if user_id is not None:
        query = query.where(LedgerEntry.user_id == user_id)
    if request_id is not None:
        query = query.where(LedgerEntry.request_id == request_id)
    return fetch(request, lambda **keys: LEDGER_PAGER.page(request.dbsession, query, **keys),
                 size)


def ledger_table(request: Any, route: str, object_id: int, **owner: Any) -> dict[str, Any]:
    """A detail page's ledger table, a page at a time (the page's own ``after``/``before``)."""
    size = page_size(request)
    page = ledger_page(request, size=size, **owner)
    address = ListAddress(request, route, {"size": size}, id=object_id)
    values = list_values(request, page, address, size)
    return {"ledger": page.rows, "ledger_pager": values}
