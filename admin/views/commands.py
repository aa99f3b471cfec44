"""The command queue: queued, running, failed and done commands with their output; a
failed one can be queued again."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, matched_id, redirect, refuse_with_flash
from admin.views.paging import ListAddress, choice, fetch, list_values, page_size
from engine.commands.models import CommandState
from engine.commands.services import CommandService
from engine.errors import QrmError
from engine.events.services import EventService
from engine.permissions import Permissions


@view_config(route_name="admin.commands", request_method="GET", renderer=template("commands"),
             permission=Permissions.ADMIN_VIEW)
def command_list(request: Any) -> dict[str, Any]:
    """Newest first, a page at a time, filtered by state (each with its count)."""
    service = request.find_service(CommandService)
    state, size = choice(request, "state", CommandState), page_size(request)
    page = fetch(request, lambda **keys: service.page(state=state, **keys), size)
    address = ListAddress(request, "admin.commands", {"state": state, "size": size})
    return {**list_values(request, page, address, size), "state": state,
            "states": list(CommandState), "counts": service.counts()}


@view_config(route_name="admin.commands.detail", request_method="GET",
             renderer=template("command_detail"), permission=Permissions.ADMIN_VIEW)
def command_detail(request: Any) -> dict[str, Any]:
    command = request.find_service(CommandService).get(matched_id(request))
    return {"command": command, "events": request.find_service(EventService).recent(
        limit=50, object_type="command", object_id=command.id)}


@view_config(route_name="admin.commands.rerun", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def rerun(request: Any) -> HTTPSeeOther:
    command_id = matched_id(request)
    try:
        request.find_service(CommandService).rerun(command_id, actor=acting_admin(request))
    except QrmError as error:
        refuse_with_flash(request, error)
    else:
        flash(request, translate(request, _("Command ${id} is queued again."), id=command_id))
    return redirect(request, "admin.commands.detail", id=command_id)
