"""The dashboard: the state of the datacenter and the cloud at a glance."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config

from admin.rendering import template
from billing.services import LedgerService
from engine.cloud.models import RequestStatus
from engine.cloud.services import CloudRequestService
from engine.datacenter.models import ResourceState
from engine.datacenter.services import DatacenterService
from engine.db import utcnow
from engine.events.services import EventService
from engine.permissions import Permissions


@view_config(route_name="admin.dashboard", request_method="GET", renderer=template("dashboard"),
             permission=Permissions.ADMIN_VIEW)
def dashboard(request: Any) -> dict[str, Any]:
    events = request.find_service(EventService)
    start_of_day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    resource_counts = request.find_service(DatacenterService).resource_counts()
    request_counts = request.find_service(CloudRequestService).count_by_status()
    return {
        "resource_counts": [(state, resource_counts.get(state, 0)) for state in ResourceState],
        "request_counts": [(status, request_counts.get(status, 0)) for status in RequestStatus],
        "charged_today": request.find_service(LedgerService).charged_since(start_of_day),
        "open_errors": events.count_open_errors(),
        "events": events.recent(limit=10),
    }
