"""Engine-level pages: the health check that load balancers and ``make run`` use."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config
from sqlalchemy import text

from engine.permissions import Permissions


@view_config(route_name="engine.health", renderer="json", permission=Permissions.PUBLIC,
             require_csrf=False)
def health(request: Any) -> dict[str, Any]:
    request.dbsession.execute(text("SELECT 1"))
    return {"status": "ok", "service": "qrm-cloud"}


def includeme(config: Any) -> None:
    config.add_route("engine.health", "/health")
    config.scan("engine.views")
