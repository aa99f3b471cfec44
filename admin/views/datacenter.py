"""The datacenter's inventory: appliances (resources have a module of their own)."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config

from admin.rendering import template
from admin.views.paging import ListAddress, choice, fetch, list_values, page_size
from engine.datacenter.models import ApplianceState
from engine.datacenter.services import AppliancesService
from engine.permissions import Permissions


@view_config(route_name="admin.appliances", request_method="GET",
             renderer=template("appliances"), permission=Permissions.ADMIN_VIEW)
def appliance_list(request: Any) -> dict[str, Any]:
    """By name, a page at a time, filtered by state (each with its count)."""
    service = request.find_service(AppliancesService)
    state, size = choice(request, "state", ApplianceState), page_size(request)
    page = fetch(request, lambda **keys: service.page(state=state, **keys), size)
    address = ListAddress(request, "admin.appliances", {"state": state, "size": size})
    return {**list_values(request, page, address, size), "state": state,
            "states": list(ApplianceState), "counts": service.state_counts()}
