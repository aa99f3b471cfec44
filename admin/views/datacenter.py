"""The datacenter's inventory: resources and appliances."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config

from admin.rendering import template
from engine.datacenter.services import AppliancesService, DatacenterService
from engine.permissions import Permissions


@view_config(route_name="admin.resources", request_method="GET", renderer=template("resources"),
             permission=Permissions.ADMIN_VIEW)
def resource_list(request: Any) -> dict[str, Any]:
    return {"resources": request.find_service(DatacenterService).resources()}


@view_config(route_name="admin.appliances", request_method="GET",
             renderer=template("appliances"), permission=Permissions.ADMIN_VIEW)
def appliance_list(request: Any) -> dict[str, Any]:
    return {"appliances": request.find_service(AppliancesService).list()}
