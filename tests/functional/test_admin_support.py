"""Shared steps of the admin console's functional tests (no tests of its own)."""

from __future__ import annotations

import datetime as dt
import http.cookies
import re
from typing import Any

from pyramid.interfaces import IRoutesMapper
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import remember

from engine.cloud.services import CloudRequestService, CloudUserService
from engine.db import utcnow
from engine.security import Actor
from tests.conftest import DEMO_PASSWORD, commit

SESSION_COOKIE = "qrm_session"


def admin_login(testapp: Any, name: str = "admin", password: str = DEMO_PASSWORD) -> Any:
    """Log in through the console's form; returns the page it leads to."""
    form = testapp.get("/admin/login").forms["login-form"]
    form["name"], form["password"] = name, password
    return form.submit().maybe_follow()


def csrf_token(testapp: Any) -> str:
    """The CSRF token of the browser's session (read from a console form)."""
    page = testapp.get("/admin/cloud/users")
    return page.html.find("input", attrs={"name": "csrf_token"})["value"]


def cloud_user_login(testapp: Any, registry: Any, name: str = "demo",
                     password: str = DEMO_PASSWORD) -> None:
    """Log a cloud user in: through the portal's log-in form (``/login`` with ``name``,
    ``password``, ``csrf_token``) when the portal has one, else by building the session
    cookie the way a log-in would (``remember`` with the cloud user's actor)."""
    page = testapp.get("/login", expect_errors=True)
    form = _portal_login_form(page)
    if form is not None:
        form["name"], form["password"] = name, password
        form.submit(expect_errors=True)
        return
    user = _cloud_user(registry, name)
    testapp.set_cookie(SESSION_COOKIE, _session_cookie(registry, Actor.cloud_user(
        user["name"], user["id"])))


def _portal_login_form(page: Any) -> Any:
    if page.status_int != 200 or "html" not in page.content_type:
        return None
    for form in page.forms.values():
        if {"name", "password", "csrf_token"} <= set(form.fields):
            return form
    return None


def _cloud_user(registry: Any, name: str) -> dict[str, Any]:
    from tests.conftest import new_request

    with new_request(registry) as request:
        user = request.find_service(CloudUserService).resolve(name, actor=Actor.system())
        return {"name": user.name, "id": user.id}


def _session_cookie(registry: Any, actor: Actor) -> str:
    request = _blank_request(registry)
    remember(request, actor)
    return _cookie_set_by(request)


def _blank_request(registry: Any, cookie: str | None = None) -> Request:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}
    request = Request.blank("/", base_url="http://localhost", headers=headers)
    request.registry = registry
    return request


def _cookie_set_by(request: Request) -> str | None:
    response = Response()
    request._process_response_callbacks(response)
    if "Set-Cookie" not in response.headers:
        return None
    cookie = http.cookies.SimpleCookie()
    cookie.load(response.headers["Set-Cookie"])
    return cookie[SESSION_COOKIE].value


def session_csrf_token(testapp: Any, registry: Any) -> str:
    """The CSRF token of the browser's session, whoever is logged in (read from the signed
    session cookie; a new token is stored back into the browser's cookie)."""
    request = _blank_request(registry, testapp.cookies.get(SESSION_COOKIE))
    token = request.session.get_csrf_token()
    cookie = _cookie_set_by(request)
    if cookie is not None:
        testapp.set_cookie(SESSION_COOKIE, cookie)
    return token


def submit_demo_request(pyramid_request: Any, **overrides: Any) -> int:
    """The demo user submits a request through the service (committed); returns its id."""
    users = pyramid_request.find_service(CloudUserService)
    demo = users.resolve("demo", actor=Actor.system())
    values = {"cloud_user": "demo", "start": None, "stop": utcnow() + dt.timedelta(days=1),
              "kernel": "default", "image": "debian-12", "memory_mb": 512, "cpus": 1,
              "disk_mb": 5000, "network_cards": 1, "quantity": 1, "virtualization": "sim-vm",
              **overrides}
    cloud_request = pyramid_request.find_service(CloudRequestService).submit(
        actor=Actor.cloud_user("demo", demo.id), **values)
    commit(pyramid_request)
    return cloud_request.id


def admin_routes(registry: Any) -> list[dict[str, Any]]:
    """Every ``admin.*`` route with the request methods its views answer."""
    mapper = registry.getUtility(IRoutesMapper)
    methods: dict[str, set[str]] = {}
    for item in registry.introspector.get_category("views") or []:
        view = item["introspectable"]
        name = view["route_name"]
        if name and name.startswith("admin."):
            declared = view["request_methods"] or ("GET",)
            declared = (declared,) if isinstance(declared, str) else declared
            methods.setdefault(name, set()).update(set(declared) & {"GET", "POST"})
    return [{"name": route.name, "pattern": route.pattern,
             "methods": sorted(methods.get(route.name, {"GET"}))}
            for route in mapper.get_routes() if route.name.startswith("admin.")]


def route_url(pattern: str, **ids: int) -> str:
    """The path of a route pattern with its ``{name}`` / ``{name:regex}`` parts filled in."""
    path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda match: str(ids[match.group(1)]), pattern)
    return "/" + path.lstrip("/")


def form_to(page: Any, action_end: str) -> Any:
    """The one form of ``page`` whose action ends with ``action_end``."""
    (form,) = [form for form in page.forms.values() if form.action.endswith(action_end)]
    return form


def text_of(page: Any, selector_id: str) -> str:
    element = page.html.find(id=selector_id)
    assert element is not None, f"no element #{selector_id} on the page"
    return " ".join(element.get_text(" ").split())
