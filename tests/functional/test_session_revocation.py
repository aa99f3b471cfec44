"""Sessions end on the server: a session cookie kept from before a log-out, a password change
or a status change of the account is refused afterwards, although it is still validly signed
and within its eight hours (portal and console)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.accounts.models import AdminUser
from engine.accounts.services import AccountService
from engine.cloud.models import CloudUser, CloudUserStatus
from engine.cloud.services import CloudUserService
from engine.security import Actor
from tests.conftest import DEMO_PASSWORD, commit
from tests.functional.test_admin_support import admin_login
from tests.functional.test_portal_support import read

COOKIE = "qrm_session"
ADMIN = Actor.admin("admin")


def _token(page: Any) -> str:
    return page.html.find("input", attrs={"name": "csrf_token"})["value"]


def _portal_login(testapp: Any) -> tuple[str, str]:
    """Log ``demo`` in; the session cookie and the CSRF token of the account page."""
    form = testapp.get("/login").forms["login-form"]
    form["name"], form["password"] = "demo", DEMO_PASSWORD
    form.submit(status=303)
    page = testapp.get("/account", status=200)
    return testapp.cookies[COOKIE], _token(page)


def _use(testapp: Any, cookie: str) -> None:
    testapp.reset()
    testapp.set_cookie(COOKIE, cookie)


def _profile(lastname: str, token: str) -> dict[str, str]:
    return {"csrf_token": token, "email": "demo@example.org", "lastname": lastname}


def _lastname(pyramid_request: Any) -> str:
    return read(pyramid_request, lambda request: request.dbsession.scalar(
        select(CloudUser.lastname).where(CloudUser.name == "demo")))


def _assert_portal_refuses(testapp: Any, cookie: str, token: str,
                           pyramid_request: Any) -> None:
    _use(testapp, cookie)
    assert testapp.get("/account").status_int == 303  # to the log-in form
    before = _lastname(pyramid_request)
    response = testapp.post("/account/profile", _profile("Changed", token),
                            expect_errors=True)
    assert response.status_int in (303, 400, 403)
    assert _lastname(pyramid_request) == before != "Changed"


def test_portal_cookie_from_before_log_out_is_refused(testapp: Any, demo_cloud: dict[str, Any],
                                                      pyramid_request: Any) -> None:
    cookie, token = _portal_login(testapp)
    # while logged in the same cookie and token do post a profile change
    testapp.post("/account/profile", _profile("Before", token), status=303)
    assert _lastname(pyramid_request) == "Before"
    testapp.post("/logout", {"csrf_token": token}, status=303)
    _assert_portal_refuses(testapp, cookie, token, pyramid_request)
    # logging in again works, with a new session
    _portal_login(testapp)


def test_portal_password_change_ends_the_other_sessions(testapp: Any,
                                                        demo_cloud: dict[str, Any],
                                                        pyramid_request: Any) -> None:
    other_cookie, other_token = _portal_login(testapp)
    testapp.reset()
    cookie, token = _portal_login(testapp)
    testapp.post("/account/password", {"csrf_token": token, "old_password": DEMO_PASSWORD,
                                       "new_password": "a-new-password-1",
                                       "new_password2": "a-new-password-1"}, status=303)
    # the browser that changed it goes on, in a new session
    assert testapp.cookies[COOKIE] != cookie
    assert testapp.get("/account").status_int == 200
    _assert_portal_refuses(testapp, cookie, token, pyramid_request)
    _assert_portal_refuses(testapp, other_cookie, other_token, pyramid_request)


def test_portal_status_change_ends_the_sessions(testapp: Any, demo_cloud: dict[str, Any],
                                                pyramid_request: Any) -> None:
    cookie, token = _portal_login(testapp)
    users = pyramid_request.find_service(CloudUserService)
    users.set_status("demo", CloudUserStatus.DISABLED, actor=ADMIN)
    users.set_status("demo", CloudUserStatus.ACTIVE, actor=ADMIN)
    commit(pyramid_request)
    _assert_portal_refuses(testapp, cookie, token, pyramid_request)


def _admin_cookie(testapp: Any) -> str:
    assert admin_login(testapp).request.path == "/admin/"
    return testapp.cookies[COOKIE]


def test_console_cookie_from_before_log_out_is_refused(testapp: Any,
                                                       demo_cloud: dict[str, Any]) -> None:
    cookie = _admin_cookie(testapp)
    token = _token(testapp.get("/admin/"))
    testapp.post("/admin/logout", {"csrf_token": token}, status=303)
    _use(testapp, cookie)
    assert testapp.get("/admin/").status_int == 303
    assert testapp.post("/admin/logout", {"csrf_token": token},
                        expect_errors=True).status_int in (303, 403)
    assert testapp.get("/admin/").status_int == 303


def test_console_password_change_and_disabling_end_the_sessions(
        testapp: Any, demo_cloud: dict[str, Any], pyramid_request: Any) -> None:
    accounts = pyramid_request.find_service(AccountService)
    cookie = _admin_cookie(testapp)
    accounts.set_admin_password("admin", "a-new-password-1", actor=ADMIN)
    commit(pyramid_request)
    _use(testapp, cookie)
    assert testapp.get("/admin/").status_int == 303
    testapp.reset()
    cookie = _admin_cookie_with(testapp, "a-new-password-1")
    accounts.set_admin_active("admin", False, actor=ADMIN)
    accounts.set_admin_active("admin", True, actor=ADMIN)
    commit(pyramid_request)
    _use(testapp, cookie)
    assert testapp.get("/admin/").status_int == 303
    assert pyramid_request.dbsession.scalar(
        select(AdminUser.active).where(AdminUser.name == "admin"))


def _admin_cookie_with(testapp: Any, password: str) -> str:
    assert admin_login(testapp, password=password).request.path == "/admin/"
    return testapp.cookies[COOKIE]
