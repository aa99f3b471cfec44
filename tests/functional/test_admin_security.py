"""Who may use the console: log-in, log-out, CSRF, anonymous visitors and cloud users."""

from __future__ import annotations

import pytest

from engine.cloud.models import CloudRequest, RequestStatus
from engine.events.services import EventService
from engine.security import Actor
from tests.conftest import commit
from tests.functional.test_admin_support import (
    admin_login,
    admin_routes,
    cloud_user_login,
    csrf_token,
    form_to,
    route_url,
    session_csrf_token,
    submit_demo_request,
)

#: reachable without an account: the log-in form and the language switch
PUBLIC_ROUTES = {"admin.login", "admin.language"}


@pytest.fixture
def ids(demo_cloud, pyramid_request) -> dict[str, int]:
    """Real ids to put into the console's addresses."""
    request_id = submit_demo_request(pyramid_request)
    cloud_request = pyramid_request.dbsession.get(CloudRequest, request_id)
    event = pyramid_request.find_service(EventService).log(
        source="test", name="test.event", message="an event", actor=Actor.system())
    pyramid_request.dbsession.flush()
    event_id = event.id
    commit(pyramid_request)
    return {"id": request_id, "user_id": cloud_request.user_id, "event_id": event_id}


def id_for(route: dict, ids: dict[str, int]) -> dict[str, int]:
    if ".users." in route["name"]:
        return {"id": ids["user_id"]}
    if ".events." in route["name"]:
        return {"id": ids["event_id"]}
    return {"id": ids["id"]}


def test_every_admin_route_is_walked(registry):
    """The walk below covers the console's routes (and finds the ones it must)."""
    names = {route["name"] for route in admin_routes(registry)}

    assert {"admin.dashboard", "admin.cloud.requests.approve", "admin.cloud.users.credit",
            "admin.cloud.config", "admin.events.acknowledge"} <= names


def test_cloud_user_gets_403_on_every_admin_route(testapp, registry, ids, pyramid_request):
    """A cloud user logged in through the portal is refused on every console page and form."""
    cloud_user_login(testapp, registry)
    # a valid token: what is refused is the person, not a forged form
    form = {"csrf_token": session_csrf_token(testapp, registry)}
    answers = {}
    for route in admin_routes(registry):
        url = route_url(route["pattern"], **id_for(route, ids))
        for method in route["methods"]:
            response = (testapp.post(url, params=form, expect_errors=True) if method == "POST"
                        else testapp.get(url, expect_errors=True))
            answers[(route["name"], method)] = response.status_int

    assert len(answers) > 20
    assert {key: status for key, status in answers.items() if status != 403} == {}
    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(CloudRequest, ids["id"]).status is RequestStatus.NEW


def test_anonymous_visitor_is_sent_to_the_login_page(testapp, registry, ids):
    """Without an account every console page leads to the log-in form."""
    for route in admin_routes(registry):
        if route["name"] in PUBLIC_ROUTES:
            continue
        url = route_url(route["pattern"], **id_for(route, ids))
        for method in route["methods"]:
            call = testapp.post if method == "POST" else testapp.get
            response = call(url, expect_errors=True)
            assert response.status_int in (302, 303), (route["name"], method)
            assert response.location.split("?")[0].endswith("/admin/login")


def test_login_leads_back_to_the_page_asked_for(testapp, demo_cloud):
    """After logging in, the admin lands on the page that sent them to the log-in form."""
    login_page = testapp.get("/admin/cloud/users").follow()
    form = login_page.forms["login-form"]
    form["name"], form["password"] = "admin", demo_cloud["password"]

    page = form.submit().follow()

    assert page.request.path == "/admin/cloud/users"


def test_login_never_redirects_out_of_the_console(testapp, demo_cloud):
    """A ``next`` pointing elsewhere is ignored: the admin lands on the dashboard."""
    form = testapp.get("/admin/login", params={"next": "//evil.example/x"}).forms["login-form"]
    form["name"], form["password"] = "admin", demo_cloud["password"]

    response = form.submit()

    assert response.location.endswith("/admin/")


@pytest.mark.parametrize(("name", "password"), [("admin", "wrong-password"),
                                                ("nobody", "wrong-password")])
def test_wrong_credentials_get_one_generic_error(testapp, demo_cloud, name, password):
    """A wrong password and an unknown name get the same message, and no session."""
    form = testapp.get("/admin/login").forms["login-form"]
    form["name"], form["password"] = name, password

    page = form.submit(status=400)

    assert page.html.find(id="login-error").get_text() == "Wrong name or password."
    assert testapp.get("/admin/", expect_errors=True).status_int == 303


def test_logout_ends_the_admin_session(testapp, demo_cloud):
    """After logging out, console pages ask for the log-in again."""
    dashboard = admin_login(testapp)
    form_to(dashboard, "/admin/logout").submit().follow()

    assert testapp.get("/admin/").status_int == 303


def test_forged_form_without_csrf_token_is_rejected_and_changes_nothing(
        testapp, demo_cloud, pyramid_request):
    """A POST without the session's CSRF token is refused with 400 and has no effect."""
    request_id = submit_demo_request(pyramid_request)
    admin_login(testapp)

    testapp.post(f"/admin/cloud/requests/{request_id}/approve", status=400)
    testapp.post(f"/admin/cloud/requests/{request_id}/approve",
                 params={"csrf_token": "forged"}, status=400)

    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(CloudRequest, request_id).status is RequestStatus.NEW


def test_form_with_the_session_token_is_accepted(testapp, demo_cloud, pyramid_request):
    """The same POST with the session's token goes through (the check is the token)."""
    request_id = submit_demo_request(pyramid_request)
    admin_login(testapp)

    testapp.post(f"/admin/cloud/requests/{request_id}/deny",
                 params={"csrf_token": csrf_token(testapp)}, status=303)

    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(CloudRequest, request_id).status is \
        RequestStatus.DENIED


def test_console_error_pages_stay_inside_the_console(testapp, demo_cloud):
    """The console's 404 page serves addresses under /admin only, not the rest of the site."""
    admin_login(testapp)

    inside = testapp.get("/admin/no-such-page", status=404)
    outside = testapp.get("/no-such-page-anywhere", status=404)

    assert "Admin console" in inside
    assert "Admin console" not in outside


def test_logged_in_pages_are_not_stored(testapp, registry, demo_cloud):
    """Console and portal pages of a logged-in session carry ``Cache-Control: no-store``;
    the log-in form before logging in and the static files may be cached."""
    assert "no-store" not in testapp.get("/admin/login").headers.get("Cache-Control", "")
    dashboard = admin_login(testapp)
    assert dashboard.request.path == "/admin/"
    assert dashboard.headers["Cache-Control"] == "no-store"
    assert testapp.get("/admin/events").headers["Cache-Control"] == "no-store"
    static = testapp.get("/admin/static/admin.css")
    assert "no-store" not in static.headers.get("Cache-Control", "")
    testapp.reset()
    cloud_user_login(testapp, registry)
    for path in ("/requests", "/account"):
        page = testapp.get(path)
        assert (page.status_int, page.headers["Cache-Control"]) == (200, "no-store")
