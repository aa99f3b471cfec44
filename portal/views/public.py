"""Pages anyone may see: home, log-in, log-out, registration, the language switch."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.security import forget, remember
from pyramid.view import view_config

from engine.cloud.config import CloudConfigService
from engine.cloud.services import CloudUserService
from engine.errors import AuthenticationFailed, LoginThrottled, PermissionDenied, QrmError
from engine.i18n import LANGUAGES
from engine.permissions import Permissions
from engine.security import Actor
from portal.forms import (
    REGISTER_ERROR_FIELDS,
    FormErrors,
    add_service_error,
    safe_next,
)
from portal.i18n import _, translate
from portal.views import doom

REGISTER_FIELDS = ("name", "email", "forename", "lastname", "street", "city", "country",
                   "phone")


def log_in(request: Any, actor: Actor) -> None:
    """A new session for ``actor`` (never the pre-log-in one: no session fixation) that keeps
    the language chosen before logging in; without a choice, the browser's language stays in
    force, so logging in never switches the language under the user's eyes."""
    language = request.session.get("language")
    remember(request, actor)
    if language:
        request.session["language"] = language


@view_config(route_name="portal.home", renderer="portal:templates/home.jinja2",
             permission=Permissions.PUBLIC)
def home(request: Any) -> dict[str, Any]:
    config = request.find_service(CloudConfigService)
    return {"register_enabled": config["public_register_enabled"]}


@view_config(route_name="portal.login", renderer="portal:templates/login.jinja2",
             permission=Permissions.PUBLIC)
def login(request: Any) -> Any:
    came_from = safe_next(request.params.get("came_from"), request.route_path("portal.requests"))
    values = {"name": request.POST.get("name", ""), "came_from": came_from}
    if request.method != "POST":
        return {"values": values, "error": None}
    users = request.find_service(CloudUserService)
    try:
        user = users.authenticate(values["name"].strip(), request.POST.get("password", ""))
    except LoginThrottled:
        return {"values": values, "error": translate(request, _(
            "Too many failed log-ins. Please try again in a few minutes."))}
    except AuthenticationFailed:
        # one message whatever was wrong: no hint whether the name exists or is disabled
        return {"values": values, "error": translate(request, _("Wrong user name or password."))}
    log_in(request, Actor.cloud_user(user.name, user.id))
    return HTTPSeeOther(came_from)


@view_config(route_name="portal.logout", request_method="POST", permission=Permissions.PUBLIC)
def logout(request: Any) -> HTTPSeeOther:
    # the language choice outlives the log-in
    language = request.session.get("language")
    forget(request)
    if language:
        request.session["language"] = language
    return HTTPSeeOther(request.route_url("portal.home"))


@view_config(route_name="portal.register", renderer="portal:templates/register.jinja2",
             permission=Permissions.PUBLIC)
def register(request: Any) -> Any:
    if not request.find_service(CloudConfigService)["public_register_enabled"]:
        return {"closed": True}
    values = {name: request.POST.get(name, "").strip() for name in REGISTER_FIELDS}
    form = {"closed": False, "values": values, "errors": FormErrors()}
    if request.method != "POST":
        return form
    if request.POST.get("password", "") != request.POST.get("password2", ""):
        form["errors"].add("password2", translate(request, _("The two passwords differ.")))
        return form
    try:
        user = _register(request, values)
    except PermissionDenied:  # registration closed meanwhile
        doom(request)
        return {"closed": True}
    except QrmError as error:
        doom(request)
        add_service_error(request, form["errors"], error, REGISTER_ERROR_FIELDS,
                          (*REGISTER_FIELDS, "password"))
        return form
    log_in(request, Actor.cloud_user(user.name, user.id))
    request.session.flash(translate(request, _("Welcome! Your account is ready.")))
    return HTTPSeeOther(request.route_url("portal.account"))


def _register(request: Any, values: dict[str, str]) -> Any:
    details = {name: values[name] for name in REGISTER_FIELDS if name not in ("name", "email")}
    return request.find_service(CloudUserService).register(
        values["name"], request.POST.get("password", ""), values["email"],
        language=request.locale_name, **details)


@view_config(route_name="portal.language", request_method="POST",
             permission=Permissions.PUBLIC)
def language(request: Any) -> HTTPSeeOther:
    """Remember the chosen language in the session, and in the account of a cloud user."""
    chosen = request.POST.get("language")
    if chosen in LANGUAGES:
        request.session["language"] = chosen
        actor = request.identity
        if actor is not None and actor.is_cloud_user:
            request.find_service(CloudUserService).set_details(None, actor=actor,
                                                               language=chosen)
    return HTTPSeeOther(safe_next(request.POST.get("next"), request.route_url("portal.home")))
