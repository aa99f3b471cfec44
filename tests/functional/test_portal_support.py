"""What the portal's functional tests share: page look-ups, log-in, forms, reads (no tests here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lxml.html
from sqlalchemy import select

from engine.accounts.models import AdminUser
from engine.cloud.config import CloudConfigService
from engine.cloud.models import CloudRequest, CloudUser
from engine.cloud.services import CloudRequestService
from engine.security import Actor
from tests.conftest import DEMO_PASSWORD, commit

ADMIN = Actor.admin("admin")


def page(response: Any) -> Any:
    """The response's HTML as an lxml tree (for looking things up by id)."""
    return lxml.html.fromstring(response.text)


def text_of(response: Any, element_id: str) -> str:
    """The whitespace-normalised text of the element with ``element_id`` ('' if absent)."""
    found = page(response).get_element_by_id(element_id, None)
    return " ".join(found.text_content().split()) if found is not None else ""


def field_error(response: Any, field: str) -> str:
    """The error shown inside the form field ``field`` ('' if none)."""
    field_box = page(response).get_element_by_id(f"field-{field}", None)
    if field_box is None:
        return ""
    errors = field_box.find_class("field-error")
    return " ".join(errors[0].text_content().split()) if errors else ""


def csrf_token(testapp: Any) -> str:
    """The session's CSRF token, as the page's forms carry it."""
    return page(testapp.get("/")).xpath("//input[@name='csrf_token']/@value")[0]


def log_in(testapp: Any, name: str = "demo", password: str = DEMO_PASSWORD,
           **headers: str) -> Any:
    form = testapp.get("/login", headers=headers).forms["login-form"]
    form["name"], form["password"] = name, password
    return form.submit(headers=headers)


def request_form(testapp: Any, **choices: str) -> Any:
    """The new-request form with ``choices`` filled in (select options are forced)."""
    form = testapp.get("/requests/new").forms["request-form"]
    for name, value in choices.items():
        if hasattr(form[name], "force_value"):
            form[name].force_value(value)  # an option the page does not offer
        else:
            form[name] = value
    return form


def submit_request(testapp: Any, **choices: str) -> Any:
    return request_form(testapp, **choices).submit("action", value="submit")


def read(pyramid_request: Any, reader: Callable[[Any], Any]) -> Any:
    """``reader(pyramid_request)`` in a transaction of its own, ended at once.

    The test request's session sits on the same connection as the web requests, each in a
    savepoint; a read left open across a web request would be rolled back when it ends and
    take the web request's (nested) writes with it."""
    commit(pyramid_request)
    pyramid_request.dbsession.expire_all()
    try:
        return reader(pyramid_request)
    finally:
        commit(pyramid_request)


def all_requests(pyramid_request: Any) -> list[CloudRequest]:
    return read(pyramid_request, lambda request: request.find_service(
        CloudRequestService).list(actor=ADMIN))


def cloud_user(pyramid_request: Any, name: str = "demo") -> CloudUser:
    return read(pyramid_request, lambda request: request.dbsession.scalar(
        select(CloudUser).where(CloudUser.name == name)))


def set_config(pyramid_request: Any, **values: Any) -> None:
    pyramid_request.find_service(CloudConfigService).update(values, actor=ADMIN)
    commit(pyramid_request)


def admin_session(testapp: Any, pyramid_request: Any) -> None:
    """Give ``testapp`` the signed session cookie of a logged-in admin (the admin console's
    own log-in is not the portal's business)."""
    from pyramid.interfaces import ISessionFactory
    from pyramid.request import Request
    from pyramid.response import Response

    admin = read(pyramid_request, lambda request: request.dbsession.scalar(
        select(AdminUser).where(AdminUser.name == "admin")))
    request = Request.blank("/")
    request.registry = pyramid_request.registry
    session = request.registry.getUtility(ISessionFactory)(request)
    session["actor"] = {"role": "admin", "id": admin.id, "name": admin.name,
                        "epoch": admin.session_epoch}
    response = Response()
    request._process_response_callbacks(response)
    cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    name, value = cookie.split("=", 1)
    testapp.set_cookie(name, value)
