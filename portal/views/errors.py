"""Forbidden and not-found pages of the portal's routes."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther

from portal.routes import ROUTE_NAMES


def forbidden(exc: Any, request: Any) -> Any:
    """Anonymous visitors log in first; a logged-in actor who may not use the portal (an
    admin's session) sees a 403 page."""
    if request.identity is None:
        return HTTPSeeOther(request.route_url("portal.login",
                                              _query={"came_from": request.path_qs}))
    request.response.status_int = 403
    return {}


def not_found(exc: Any, request: Any) -> dict[str, Any]:
    request.response.status_int = 404
    return {}


def add_error_views(config: Any) -> None:
    # Bound to the portal's own routes: the admin console and the APIs answer for theirs.
    for route_name in ROUTE_NAMES:
        config.add_forbidden_view(forbidden, route_name=route_name,
                                  renderer="portal:templates/forbidden.jinja2")
        config.add_notfound_view(not_found, route_name=route_name,
                                 renderer="portal:templates/not_found.jinja2")
