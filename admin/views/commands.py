"""The command queue: queued, running, failed and done commands with their output; a
failed one can be queued again."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPBadRequest, HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, matched_id, redirect, refuse_with_flash
from engine.commands.models import CommandState
from engine.commands.services import CommandService
from engine.errors import QrmError
from engine.events.services import EventService
from engine.permissions import Permissions

PAGE_SIZE = 200


def _state_filter(value: str | None) -> CommandState | None:
    if not value:
        return None
    try:
        return CommandState(value)
    except ValueError:
        raise HTTPBadRequest() from None


@view_config(route_name="admin.commands", request_method="GET", renderer=template("commands"),
             permission=Permissions.ADMIN_VIEW)
def command_list(request: Any) -> dict[str, Any]:
    state = _state_filter(request.GET.get("state"))
    service = request.find_service(CommandService)
    return {"commands": service.list(state=state, limit=PAGE_SIZE), "state": state,
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
