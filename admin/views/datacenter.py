"""The datacenter's inventory: appliances (resources have a module of their own)."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config

from admin.rendering import template
from engine.datacenter.services import AppliancesService
from engine.permissions import Permissions


@view_config(route_name="admin.appliances", request_method="GET",
             renderer=template("appliances"), permission=Permissions.ADMIN_VIEW)
def appliance_list(request: Any) -> dict[str, Any]:
    return {"appliances": request.find_service(AppliancesService).list()}
