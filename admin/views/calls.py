"""Outside work: the calls to hosts and storage (made, waiting, failed), and Retry."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, matched_id, redirect, refuse_with_flash
from admin.views.paging import ListAddress, choice, fetch, list_values, page_size
from engine.datacenter.calls import CallService
from engine.datacenter.models import CallState
from engine.errors import QrmError
from engine.permissions import Permissions


@view_config(route_name="admin.calls", request_method="GET", renderer=template("calls"),
             permission=Permissions.ADMIN_VIEW)
def call_list(request: Any) -> dict[str, Any]:
    """Newest first, a page at a time, filtered by state (each with its count)."""
    service = request.find_service(CallService)
    state, size = choice(request, "state", CallState), page_size(request)
    page = fetch(request, lambda **keys: service.page(state=state, **keys), size)
    address = ListAddress(request, "admin.calls", {"state": state, "size": size})
    return {**list_values(request, page, address, size), "state": state,
            "states": list(CallState), "counts": service.counts()}


@view_config(route_name="admin.calls.retry", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def retry(request: Any) -> HTTPSeeOther:
    call_id = matched_id(request)
    try:
        request.find_service(CallService).retry_failed(call_id, actor=acting_admin(request))
    except QrmError as error:
        refuse_with_flash(request, error)
    else:
        flash(request, translate(request, _("Call ${id} is made again."), id=call_id))
    return redirect(request, "admin.calls")
