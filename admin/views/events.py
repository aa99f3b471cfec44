"""The event log: newest first, errors only on request, acknowledging errors."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, matched_id, redirect
from engine.events.services import EventService
from engine.permissions import Permissions

PAGE_SIZE = 200


@view_config(route_name="admin.events", request_method="GET", renderer=template("events"),
             permission=Permissions.ADMIN_VIEW)
def event_list(request: Any) -> dict[str, Any]:
    errors_only = request.GET.get("errors") == "1"
    events = request.find_service(EventService)
    return {"events": events.recent(limit=PAGE_SIZE, errors_only=errors_only),
            "errors_only": errors_only, "open_errors": events.count_open_errors()}


@view_config(route_name="admin.events.acknowledge", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def acknowledge(request: Any) -> HTTPSeeOther:
    event_id = matched_id(request)
    event = request.find_service(EventService).acknowledge(event_id, actor=acting_admin(request))
    if event is None:
        flash(request, translate(request, _("There is no event ${id}."), id=event_id), error=True)
    else:
        flash(request, translate(request, _("Event ${id} acknowledged."), id=event_id))
    return redirect(request, "admin.events")
