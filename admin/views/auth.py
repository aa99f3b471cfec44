"""Logging in and out, and the language switch."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPBadRequest, HTTPSeeOther
from pyramid.security import forget, remember
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import template
from admin.views import refuse_cloud_user, safe_next
from engine.accounts.services import AccountService
from engine.errors import AuthenticationFailed, LoginThrottled
from engine.i18n import LANGUAGES
from engine.permissions import Permissions
from engine.security import Actor


def _keep_language(request: Any, language: str | None) -> None:
    # logging in or out starts a new session; the language chosen before stays
    if language in LANGUAGES:
        request.session["language"] = language


@view_config(route_name="admin.login", request_method="GET", renderer=template("login"),
             permission=Permissions.PUBLIC)
def login_form(request: Any) -> Any:
    refuse_cloud_user(request)
    next_page = safe_next(request, request.GET.get("next"))
    if request.identity is not None:
        return HTTPSeeOther(location=next_page or request.route_path("admin.dashboard"))
    return {"name": "", "error": None, "next": next_page}


@view_config(route_name="admin.login", request_method="POST", renderer=template("login"),
             permission=Permissions.PUBLIC)
def login(request: Any) -> Any:
    refuse_cloud_user(request)
    name = request.POST.get("name", "").strip()
    next_page = safe_next(request, request.POST.get("next"))
    try:
        admin = request.find_service(AccountService).authenticate_admin(
            name, request.POST.get("password", ""))
    except LoginThrottled:
        request.response.status = 429
        return {"name": name, "next": next_page, "error": translate(request, _(
            "Too many failed log-ins. Please try again in a few minutes."))}
    except AuthenticationFailed:
        # one message for every failure: it must not tell which accounts exist
        request.response.status = 400
        return {"name": name, "next": next_page,
                "error": translate(request, _("Wrong name or password."))}
    language = request.session.get("language")
    request.session.invalidate()
    headers = remember(request, Actor.admin(admin.name, admin.id))
    _keep_language(request, language)
    return HTTPSeeOther(location=next_page or request.route_path("admin.dashboard"),
                        headers=headers)


@view_config(route_name="admin.logout", request_method="POST", permission=Permissions.ADMIN_VIEW)
def logout(request: Any) -> HTTPSeeOther:
    language = request.session.get("language")
    headers = forget(request)
    _keep_language(request, language)
    return HTTPSeeOther(location=request.route_path("admin.login"), headers=headers)


@view_config(route_name="admin.language", request_method="POST", permission=Permissions.PUBLIC)
def choose_language(request: Any) -> HTTPSeeOther:
    refuse_cloud_user(request)
    language = request.POST.get("language")
    if language not in LANGUAGES:
        raise HTTPBadRequest()
    request.session["language"] = language
    target = safe_next(request, request.POST.get("next"))
    return HTTPSeeOther(location=target or request.route_path("admin.dashboard"))
