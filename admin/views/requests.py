"""Cloud requests: the list, one request in detail, approve / deny / deprovision."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, matched_id, redirect, refuse_with_flash
from admin.views.paging import (
    ListAddress,
    bad_address,
    choice,
    fetch,
    ledger_table,
    list_values,
    page_size,
)
from billing.services import LedgerService
from engine.cloud.models import RequestStatus
from engine.cloud.provisioning import ProvisioningService
from engine.cloud.services import CloudRequestService
from engine.errors import NotFound, QrmError
from engine.events.services import EventService
from engine.i18n import translate_error
from engine.permissions import Permissions

DONE_MESSAGES = {
    "approve": _("Request ${id} approved."),
    "deny": _("Request ${id} denied."),
    "deprovision": _("Request ${id} is being deprovisioned."),
    "retry": _("Request ${id} is tried again."),
}


def _allowed_actions(request: Any) -> Any:
    """For the templates: the buttons to offer are the actions the service allows."""
    service, actor = request.find_service(CloudRequestService), acting_admin(request)
    return lambda cloud_request: service.allowed_actions(cloud_request, actor=actor)


@view_config(route_name="admin.cloud.requests", request_method="GET",
             renderer=template("requests"), permission=Permissions.ADMIN_VIEW)
def request_list(request: Any) -> dict[str, Any]:
    """Newest first, a page at a time, filtered by status (each with its count) and by one
    user's name."""
    service, actor = request.find_service(CloudRequestService), acting_admin(request)
    status = choice(request, "status", RequestStatus)
    user, size = request.GET.get("user") or None, page_size(request)
    try:
        counts = service.status_counts(actor=actor, cloud_user=user)
    except NotFound as error:
        raise bad_address(request, "user", translate_error(request, error)) from None
    page = fetch(request, lambda **keys: service.page(actor=actor, cloud_user=user,
                                                      status=status, **keys), size)
    address = ListAddress(request, "admin.cloud.requests",
                          {"user": user, "status": status, "size": size})
    return {**list_values(request, page, address, size), "status": status, "user": user,
            "statuses": list(RequestStatus), "counts": counts,
            "allowed_actions": _allowed_actions(request)}


@view_config(route_name="admin.cloud.requests.detail", request_method="GET",
             renderer=template("request_detail"), permission=Permissions.ADMIN_VIEW)
def request_detail(request: Any) -> dict[str, Any]:
    cloud_request = request.find_service(CloudRequestService).get(
        matched_id(request), actor=acting_admin(request))
    return {
        "cloud_request": cloud_request,
        "hour_charges": request.find_service(LedgerService).hour_charges(cloud_request.id),
        **ledger_table(request, "admin.cloud.requests.detail", cloud_request.id,
                  request_id=cloud_request.id),
        "events": request.find_service(EventService).recent(
            limit=25, object_type="cloud_request", object_id=cloud_request.id),
        "allowed_actions": _allowed_actions(request),
    }


def _act(request: Any, action: str) -> HTTPSeeOther:
    request_id = matched_id(request)
    service = request.find_service(ProvisioningService if action == "retry"
                                   else CloudRequestService)
    arguments = {} if action in ("approve", "retry") else {
        "reason": request.POST.get("reason", "")}
    try:
        getattr(service, action)(request_id, actor=acting_admin(request), **arguments)
    except QrmError as error:
        refuse_with_flash(request, error)
    else:
        flash(request, translate(request, DONE_MESSAGES[action], id=request_id))
    return redirect(request, "admin.cloud.requests.detail", id=request_id)


@view_config(route_name="admin.cloud.requests.approve", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def approve(request: Any) -> HTTPSeeOther:
    return _act(request, "approve")


@view_config(route_name="admin.cloud.requests.deny", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def deny(request: Any) -> HTTPSeeOther:
    return _act(request, "deny")


@view_config(route_name="admin.cloud.requests.deprovision", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def deprovision(request: Any) -> HTTPSeeOther:
    return _act(request, "deprovision")


@view_config(route_name="admin.cloud.requests.retry", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def retry(request: Any) -> HTTPSeeOther:
    return _act(request, "retry")
