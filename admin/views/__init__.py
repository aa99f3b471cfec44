"""The console's views, one module per area; shared helpers live here."""

from __future__ import annotations

from typing import Any

from babel.numbers import NumberFormatError, parse_decimal
from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther

from admin.i18n import error_text
from admin.rendering import flash
from engine.errors import QrmError
from engine.security import Actor


def acting_admin(request: Any) -> Actor:
    """The logged-in admin (the view's permission has made sure there is one)."""
    return request.identity


def matched_id(request: Any) -> int:
    # the route pattern admits digits only
    return int(request.matchdict["id"])


def refuse_cloud_user(request: Any) -> None:
    """The console's public pages (log-in, language) are not for a logged-in cloud user:
    answer them with 403 like every other console page."""
    actor = request.identity
    if actor is not None and not actor.is_admin:
        raise HTTPForbidden()


def safe_next(request: Any, value: str | None) -> str | None:
    """``value`` if it is a path inside the console (never another site) that a ``Location``
    header can carry (printable ASCII: no CR/LF, no space), else None."""
    prefix = request.registry.get("admin.prefix", "/admin")
    if not value or not value.startswith(prefix + "/") or value.startswith(("//", "/\\")):
        return None
    if not all("!" <= character <= "~" for character in value):
        return None
    return value


def redirect(request: Any, route_name: str, **kw: Any) -> HTTPSeeOther:
    """Back to the page the form came from (its ``next`` field), else to ``route_name``."""
    target = safe_next(request, request.POST.get("next")) or request.route_path(route_name, **kw)
    return HTTPSeeOther(location=target)


def refuse(request: Any, error: QrmError) -> dict[str | None, str]:
    """A service refused: make sure nothing of this request is committed and say why.

    Returns ``{field: text}`` for showing the text next to the field concerned."""
    request.tm.doom()
    return {error.field: error_text(request, error)}


def refuse_with_flash(request: Any, error: QrmError) -> None:
    for text in refuse(request, error).values():
        flash(request, text, error=True)


def form_errors(request: Any, error: QrmError, fields: tuple[str, ...]) -> dict[str, str]:
    """``refuse`` for a form: an error about a field the form lacks is shown at its top."""
    ((field, text),) = refuse(request, error).items()
    request.response.status = 400
    return {field if field in fields else "_form": text}


def parse_number(request: Any, raw: str) -> str:
    """A number typed the admin's way (``-12,5`` in German) in the form services read
    (``-12.5``). Anything else is handed on unchanged, for the service to refuse."""
    try:
        return str(parse_decimal(raw.strip(), locale=request.locale_name, strict=True))
    except (NumberFormatError, ValueError):
        return raw
