"""The account: CCU balance and movements, limits and usage, profile, password."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from billing.services import LedgerService
from engine.cloud.models import CloudUser
from engine.cloud.services import CloudUserService
from engine.errors import AuthenticationFailed, QrmError
from engine.permissions import Permissions
from portal.forms import ACCOUNT_ERROR_FIELDS, FormErrors, add_service_error
from portal.i18n import _, translate
from portal.views import current_user, doom
from portal.views.paging import ledger_pages, paged_list
from portal.views.public import log_in

#: the details a user may change (the service refuses any other); the language is changed
#: with the switch in the page header
PROFILE_FIELDS = ("forename", "lastname", "email", "street", "city", "country", "phone")
PASSWORD_FIELDS = ("old_password", "new_password", "new_password2")
#: movements shown on a page of the account's
TRANSACTIONS_SHOWN = 25


def _movements(request: Any, user: CloudUser) -> dict[str, Any]:
    """The ledger movements of the account, newest first, a page at a time."""
    movements = paged_list(request, "portal.account", ledger_pages(request, user.id),
                           default_size=TRANSACTIONS_SHOWN)
    return {"transactions": movements["page"].rows, "transactions_pages": movements}


def account_page(request: Any, *, profile: dict[str, str] | None = None,
                 profile_errors: FormErrors | None = None,
                 password_errors: FormErrors | None = None) -> dict[str, Any]:
    users = request.find_service(CloudUserService)
    user = current_user(request)
    return {
        "user": user,
        "balance": request.find_service(LedgerService).balance(user),
        **_movements(request, user),
        "limits": users.get_limits(None, actor=request.identity),
        "usage": users.usage(user),
        "profile": profile or profile_values(user),
        "profile_errors": profile_errors or FormErrors(),
        "password_errors": password_errors or FormErrors(),
    }


def profile_values(user: CloudUser) -> dict[str, str]:
    return {field: getattr(user, field) or "" for field in PROFILE_FIELDS}


@view_config(route_name="portal.account", renderer="portal:templates/account.jinja2",
             permission=Permissions.PORTAL_USE)
def account(request: Any) -> dict[str, Any]:
    return account_page(request)


@view_config(route_name="portal.account.profile", request_method="POST",
             renderer="portal:templates/account.jinja2", permission=Permissions.PORTAL_USE)
def profile(request: Any) -> Any:
    values = {field: request.POST.get(field, "").strip() for field in PROFILE_FIELDS}
    try:
        request.find_service(CloudUserService).set_details(None, actor=request.identity,
                                                           **values)
    except QrmError as error:
        doom(request)
        errors = FormErrors()
        add_service_error(request, errors, error, ACCOUNT_ERROR_FIELDS, PROFILE_FIELDS)
        return account_page(request, profile=values, profile_errors=errors)
    request.session.flash(translate(request, _("Your details were saved.")))
    return HTTPSeeOther(request.route_url("portal.account"))


@view_config(route_name="portal.account.password", request_method="POST",
             renderer="portal:templates/account.jinja2", permission=Permissions.PORTAL_USE)
def password(request: Any) -> Any:
    users, actor = request.find_service(CloudUserService), request.identity
    posted = {field: request.POST.get(field, "") for field in PASSWORD_FIELDS}
    errors = FormErrors()
    try:
        users.authenticate(actor.name, posted["old_password"])
    except AuthenticationFailed:
        errors.add("old_password", translate(request, _("This is not your current password.")))
    if posted["new_password"] != posted["new_password2"]:
        errors.add("new_password2", translate(request, _("The two passwords differ.")))
    if not errors:
        try:
            users.set_password(None, posted["new_password"], actor=actor)
        except QrmError as error:
            doom(request)
            add_service_error(request, errors, error, ACCOUNT_ERROR_FIELDS, PASSWORD_FIELDS)
    if errors:
        return account_page(request, password_errors=errors)
    # the new password ended every session of the account (any other browser, any cookie
    # kept from before); this browser goes on in a new one
    log_in(request, actor)
    request.session.flash(translate(request, _("Your password was changed.")))
    return HTTPSeeOther(request.route_url("portal.account"))
