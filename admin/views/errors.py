"""The console's own forbidden, not-found and missing-object pages.

Scoped with ``admin_face=True`` (an ``admin.*`` route or a path under the console's prefix),
so the portal's views for the same exceptions stay in charge everywhere else."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPFound, HTTPSeeOther
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config

from admin.rendering import template
from engine.errors import NotFound
from engine.i18n import translate_error


@forbidden_view_config(admin_face=True, renderer=template("forbidden"))
def forbidden(request: Any) -> Any:
    """Visitors who are not logged in go to the log-in page; anyone else is refused."""
    if request.identity is None:
        query = {"next": request.path_qs} if request.method == "GET" else {}
        return HTTPSeeOther(location=request.route_path("admin.login", _query=query))
    request.response.status = 403
    return {}


@notfound_view_config(admin_face=True, renderer=template("not_found"), append_slash=HTTPFound)
def not_found(request: Any) -> dict[str, Any]:
    request.response.status = 404
    return {"detail": None}


@exception_view_config(NotFound, admin_face=True, renderer=template("not_found"))
def missing_object(exc: NotFound, request: Any) -> dict[str, Any]:
    """A service did not find what the address names (a removed user, a request id…)."""
    request.response.status = 404
    return {"detail": translate_error(request, exc)}
