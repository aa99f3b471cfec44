"""Cloud users: the list, creating a user, and one user's page (status, CCUs, limits,
removal)."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPBadRequest, HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, error_text, label, translate
from admin.rendering import flash, template
from admin.views import acting_admin, form_errors, matched_id, parse_number, redirect
from admin.views.paging import ListAddress, choice, fetch, ledger_table, list_values, page_size
from billing.services import BillingService
from engine.cloud.models import CloudUser, CloudUserStatus
from engine.cloud.services import LIMIT_FIELDS, CloudRequestService, CloudUserService
from engine.errors import QrmError
from engine.permissions import Permissions

CREATE_FIELDS = ("cloud_user", "password", "email", "forename", "lastname", "street", "city",
                 "country", "phone", "language")
CREDIT_FIELDS = ("amount", "reason", "comment")
BALANCE_FIELDS = ("ccus", "comment")
#: the newest requests a user's page shows (the request list, filtered, shows them all)
USER_REQUESTS_SHOWN = 25


def _user_list(request: Any, *, values: dict[str, str] | None = None,
               errors: dict[str, str] | None = None) -> dict[str, Any]:
    """By name, a page at a time, filtered by status (each with its count)."""
    service = request.find_service(CloudUserService)
    status, size = choice(request, "status", CloudUserStatus), page_size(request)
    page = fetch(request, lambda **keys: service.page(status=status, **keys), size)
    address = ListAddress(request, "admin.cloud.users", {"status": status, "size": size})
    return {**list_values(request, page, address, size), "status": status,
            "statuses": list(CloudUserStatus), "counts": service.status_counts(),
            "values": values or {"language": request.locale_name}, "errors": errors or {}}


def _user(request: Any) -> CloudUser:
    return request.find_service(CloudUserService).by_id(matched_id(request))


def _user_page(request: Any, user: CloudUser, **forms: Any) -> dict[str, Any]:
    """The user's page; ``forms`` holds the values and errors of a form sent back."""
    users = request.find_service(CloudUserService)
    return {
        "user": user, "usage": users.usage(user), "limit_fields": LIMIT_FIELDS,
        "limit_values": {field: getattr(user.limits, field) for field in LIMIT_FIELDS},
        **ledger_table(request, "admin.cloud.users.detail", user.id, user_id=user.id),
        "cloud_requests": request.find_service(CloudRequestService).page(
            actor=acting_admin(request), cloud_user=user.name, size=USER_REQUESTS_SHOWN),
        "forms": forms,
    }


@view_config(route_name="admin.cloud.users", request_method="GET", renderer=template("users"),
             permission=Permissions.ADMIN_VIEW)
def user_list(request: Any) -> dict[str, Any]:
    return _user_list(request)


@view_config(route_name="admin.cloud.users.create", request_method="POST",
             renderer=template("users"), permission=Permissions.ADMIN_MANAGE)
def create_user(request: Any) -> Any:
    values = {field: request.POST.get(field, "") for field in CREATE_FIELDS}
    details = {k: v for k, v in values.items() if k not in ("cloud_user", "password", "email")}
    try:
        user = request.find_service(CloudUserService).create(
            values["cloud_user"], values["password"], values["email"],
            actor=acting_admin(request), **details)
    except QrmError as error:
        values.pop("password")
        return _user_list(request, values=values,
                          errors=form_errors(request, error, CREATE_FIELDS))
    flash(request, translate(request, _("Cloud user ${name} created."), name=user.name))
    return HTTPSeeOther(location=request.route_path("admin.cloud.users.detail", id=user.id))


@view_config(route_name="admin.cloud.users.detail", request_method="GET",
             renderer=template("user_detail"), permission=Permissions.ADMIN_VIEW)
def user_detail(request: Any) -> dict[str, Any]:
    return _user_page(request, _user(request))


@view_config(route_name="admin.cloud.users.status", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def set_status(request: Any) -> HTTPSeeOther:
    user = _user(request)
    try:
        status = CloudUserStatus(request.POST.get("status"))
    except ValueError:
        raise HTTPBadRequest() from None
    request.find_service(CloudUserService).set_status(user.name, status,
                                                      actor=acting_admin(request))
    flash(request, translate(request, _("${name} is now ${status}."), name=user.name,
                             status=label(request, status)))
    return redirect(request, "admin.cloud.users.detail", id=user.id)


def _user_form(request: Any, form: str, fields: tuple[str, ...], action: Any,
               done: Any) -> Any:
    """Run ``action(user, values)`` for one form of the user page; on a refusal show the
    page again with the errors next to their fields (nothing is written)."""
    user = _user(request)
    values = {field: request.POST.get(field, "") for field in fields}
    try:
        action(user, values)
    except QrmError as error:
        errors = form_errors(request, error, fields)
        return _user_page(request, user, **{form: {"values": values, "errors": errors}})
    flash(request, translate(request, done, name=user.name))
    return HTTPSeeOther(location=request.route_path("admin.cloud.users.detail", id=user.id))


@view_config(route_name="admin.cloud.users.credit", request_method="POST",
             renderer=template("user_detail"), permission=Permissions.ADMIN_MANAGE)
def credit(request: Any) -> Any:
    return _user_form(request, "credit", CREDIT_FIELDS, lambda user, values: request.find_service(
        BillingService).credit(user, parse_number(request, values["amount"]),
                               actor=acting_admin(request), reason=values["reason"],
                               comment=values["comment"]),
        _("Booked on the ledger of ${name}."))


@view_config(route_name="admin.cloud.users.balance", request_method="POST",
             renderer=template("user_detail"), permission=Permissions.ADMIN_MANAGE)
def set_balance(request: Any) -> Any:
    return _user_form(request, "balance", BALANCE_FIELDS, lambda user, values: request.find_service(
        BillingService).set_balance(user, parse_number(request, values["ccus"]),
                                    comment=values["comment"], actor=acting_admin(request)),
        _("Balance of ${name} set."))


@view_config(route_name="admin.cloud.users.limits", request_method="POST",
             renderer=template("user_detail"), permission=Permissions.ADMIN_MANAGE)
def set_limits(request: Any) -> Any:
    return _user_form(request, "limits", LIMIT_FIELDS, lambda user, values: request.find_service(
        CloudUserService).set_limits(user.name, actor=acting_admin(request), **values),
        _("Limits of ${name} saved."))


@view_config(route_name="admin.cloud.users.remove", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def remove(request: Any) -> HTTPSeeOther:
    user = _user(request)
    name = user.name
    try:
        request.find_service(CloudUserService).remove(name, actor=acting_admin(request))
    except QrmError as error:
        request.tm.doom()
        flash(request, translate(request, _("Cloud user ${name} was not removed. ${reason}"),
                                 name=name, reason=error_text(request, error)), error=True)
        return HTTPSeeOther(location=request.route_path("admin.cloud.users.detail", id=user.id))
    flash(request, translate(request, _("Cloud user ${name} removed."), name=name))
    return HTTPSeeOther(location=request.route_path("admin.cloud.users"))
