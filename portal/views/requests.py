"""Requesting systems: the form with its live price, the user's requests, one request's
details, and the actions on a request (deprovision, extend)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.view import view_config

from engine.cloud.config import CloudConfigService
from engine.cloud.models import CloudRequest, ProductType, RequestStatus
from engine.cloud.provisioning import ProvisioningService
from engine.cloud.services import CloudRequestService, ProductService
from engine.db import utcnow
from engine.errors import NotFound, QrmError, ValidationError
from engine.permissions import Permissions
from engine.security import Actor
from portal.forms import (
    REQUEST_ERROR_FIELDS,
    REQUEST_FIELDS,
    FormErrors,
    add_service_error,
    error_message,
    request_spec,
    request_values,
    submit_arguments,
    utc_time,
)
from portal.i18n import APPLIANCE_STATE_LABELS, _, input_time, translate
from portal.pricing import price_preview
from portal.views import current_user, doom
from portal.views.paging import choice, ledger_pages, paged_list

#: the selector's product type behind each numeric field of the form
PRODUCT_FIELDS = (("cpus", ProductType.CPU), ("memory_mb", ProductType.MEMORY),
                  ("disk_mb", ProductType.DISK), ("network_cards", ProductType.NETWORK),
                  ("quantity", ProductType.QUANTITY))
#: starting values of the numeric fields when the cloud offers free choices (no selector)
FREE_DEFAULTS = {"cpus": "1", "memory_mb": "1024", "disk_mb": "5000", "network_cards": "1",
                 "quantity": "1"}


def form_choices(request: Any, actor: Actor) -> dict[str, Any]:
    """What the user may choose: the services' lists (enabled products in selector mode)."""
    config = request.find_service(CloudConfigService)
    requests = request.find_service(CloudRequestService)
    products = request.find_service(ProductService)
    options = requests.options(actor=actor)
    choices: dict[str, Any] = {
        "selector": config["cloud_selector"],
        "virtualization": [(t.name, t.label) for t in requests.virtualization_types(actor=actor)],
        "kernel": [(k.name, f"{k.name} {k.version}".strip())
                   for k in requests.kernels(actor=actor)],
        "image": [(i.name, i.comment or i.name) for i in requests.images(actor=actor)],
        "ha": options["ha"],
        "puppet_groups": options["puppet_groups"],
        "clone_on_deploy": options["clone_on_deploy_choice"],
    }
    if choices["selector"]:
        for field, product_type in PRODUCT_FIELDS:
            choices[field] = [(p.quantity, p.name)
                              for p in products.list(product_type, enabled_only=True)]
    return choices


def default_values(choices: dict[str, Any]) -> dict[str, Any]:
    now = utcnow().replace(second=0, microsecond=0)
    values: dict[str, Any] = {"start": input_time(now),
                              "stop": input_time(now + dt.timedelta(days=1)),
                              "ha": False, "clone_on_deploy": True, "puppet_groups": []}
    for field in ("virtualization", "kernel", "image"):
        values[field] = choices[field][0][0] if choices[field] else ""
    for field, _product_type in PRODUCT_FIELDS:
        offered = choices.get(field)
        values[field] = (offered[0][0] if offered else "") if choices["selector"] \
            else FREE_DEFAULTS[field]
    return values


def form_page(request: Any, choices: dict[str, Any], values: dict[str, Any],
              errors: FormErrors) -> dict[str, Any]:
    """The form as the user left it, with the price of the current choices."""
    try:
        price = price_preview(request, request_spec(values))
    except ValidationError as error:
        price = None
        add_service_error(request, errors, error, REQUEST_ERROR_FIELDS, REQUEST_FIELDS)
    return {"choices": choices, "values": values, "errors": errors, "price": price}


@view_config(route_name="portal.requests.new", renderer="portal:templates/request_new.jinja2",
             permission=Permissions.PORTAL_USE)
def new_request(request: Any) -> Any:
    choices = form_choices(request, request.identity)
    if request.method != "POST":
        return form_page(request, choices, default_values(choices), FormErrors())
    values, errors = request_values(request.POST), FormErrors()
    if request.POST.get("action") != "quote":
        try:
            cloud_request = request.find_service(CloudRequestService).submit(
                actor=request.identity, cloud_user=None,
                **submit_arguments(values, clone_choice=choices["clone_on_deploy"]))
        except QrmError as error:
            doom(request)
            add_service_error(request, errors, error, REQUEST_ERROR_FIELDS,
                              (*REQUEST_FIELDS, "price", "puppet_groups"))
        else:
            request.session.flash(translate(request, _("Request ${id} was submitted."),
                                            id=cloud_request.id))
            return HTTPSeeOther(request.route_url("portal.requests"))
    return form_page(request, choices, values, errors)


@view_config(route_name="portal.requests.quote", request_method="GET", renderer="json",
             permission=Permissions.PORTAL_USE)
def quote(request: Any) -> dict[str, Any]:
    """The price per hour of the choices in the query (what the form's script shows)."""
    try:
        return price_preview(request, request_spec(request_values(request.GET)))
    except ValidationError as error:
        request.response.status_int = 400
        return {"error": error_message(request, error), "field": error.field}


def may_deprovision_for(request: Any) -> Any:
    """A template test: may the user deprovision (and extend) this request now?"""
    service = request.find_service(CloudRequestService)
    return lambda cloud_request: "deprovision" in service.allowed_actions(
        cloud_request, actor=request.identity)


@view_config(route_name="portal.requests", renderer="portal:templates/requests.jinja2",
             permission=Permissions.PORTAL_USE)
def my_requests(request: Any) -> dict[str, Any]:
    """The user's requests, newest first, a page at a time, filtered by status (each with
    its count)."""
    service, actor = request.find_service(CloudRequestService), request.identity
    status = choice(request, "status", RequestStatus)
    listed = paged_list(request, "portal.requests", lambda **keys: service.page(
        actor=actor, status=status, **keys), kept={"status": status})
    return {**listed, "pages": listed, "requests": listed["page"].rows, "status": status,
            "statuses": list(RequestStatus), "counts": service.status_counts(actor=actor),
            "may_deprovision": may_deprovision_for(request)}


def owned_request(request: Any) -> CloudRequest:
    """The request of the URL, if it is the user's (anyone else's is answered with 404)."""
    try:
        return request.find_service(CloudRequestService).get(request.matchdict["id"],
                                                             actor=request.identity)
    except NotFound:
        raise HTTPNotFound() from None


@view_config(route_name="portal.requests.detail",
             renderer="portal:templates/request_detail.jinja2",
             permission=Permissions.PORTAL_USE)
def request_detail(request: Any) -> dict[str, Any]:
    cloud_request = owned_request(request)
    charges = paged_list(request, "portal.requests.detail", ledger_pages(
        request, current_user(request).id, cloud_request.id), id=cloud_request.id)
    return {"cloud_request": cloud_request, "charges": charges["page"].rows,
            "charges_pages": charges,
            "may_deprovision": may_deprovision_for(request),
            "appliance_commands": ProvisioningService.allowed_commands}


def back_to(request: Any, cloud_request_id: int) -> HTTPSeeOther:
    if request.POST.get("return_to") == "detail":
        return HTTPSeeOther(request.route_url("portal.requests.detail", id=cloud_request_id))
    return HTTPSeeOther(request.route_url("portal.requests"))


@view_config(route_name="portal.requests.deprovision", request_method="POST",
             permission=Permissions.PORTAL_USE)
def deprovision(request: Any) -> HTTPSeeOther:
    return _request_action(request, lambda service, cloud_request: service.deprovision(
        cloud_request.id, actor=request.identity), _("Request ${id} is being removed."))


def _request_action(request: Any, action: Any, done: Any) -> HTTPSeeOther:
    """Run ``action(service, cloud_request)`` on the user's request of the URL; say how it
    went in a flash message (a refusal changes nothing)."""
    cloud_request = owned_request(request)
    try:
        action(request.find_service(CloudRequestService), cloud_request)
    except QrmError as error:
        doom(request)
        request.session.flash(error_message(request, error), queue="error")
    else:
        request.session.flash(translate(request, done, id=cloud_request.id))
    return back_to(request, cloud_request.id)


@view_config(route_name="portal.requests.extend", request_method="POST",
             permission=Permissions.PORTAL_USE)
def extend(request: Any) -> HTTPSeeOther:
    stop = utc_time(request.POST.get("stop", "").strip()) or ""
    return _request_action(request, lambda service, cloud_request: service.extend(
        cloud_request.id, stop, actor=request.identity),
        _("The stop time of request ${id} was changed."))


@view_config(route_name="portal.appliances.command", request_method="POST",
             permission=Permissions.PORTAL_USE)
def appliance_command(request: Any) -> HTTPSeeOther:
    """Pause (stop), resume (start) or restart one of the user's appliances."""
    service = request.find_service(ProvisioningService)
    try:
        cloud_appliance = service.command(request.matchdict["id"],
                                          request.POST.get("command", ""),
                                          actor=request.identity)
    except NotFound:
        raise HTTPNotFound() from None
    except QrmError as error:
        doom(request)
        request.session.flash(error_message(request, error), queue="error")
        return HTTPSeeOther(request.route_url("portal.requests"))
    request.session.flash(translate(request, _("${name}: ${state}."),
                                    name=cloud_appliance.name,
                                    state=translate(request,
                                                    APPLIANCE_STATE_LABELS[cloud_appliance.state])))
    return HTTPSeeOther(request.route_url("portal.requests.detail",
                                          id=cloud_appliance.request_id))
