"""Who may see what in the portal: log-in, log-out, anonymous visitors, admins, owners."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from engine.cloud.billing_port import BillingPort
from engine.cloud.models import CloudUserStatus, RequestStatus
from engine.cloud.services import CloudRequestService, CloudUserService
from engine.db import utcnow
from tests.conftest import commit
from tests.functional.test_portal_support import (
    ADMIN,
    admin_session,
    all_requests,
    csrf_token,
    log_in,
    text_of,
)


def test_anonymous_visitor_is_sent_to_log_in_and_back(testapp, demo_cloud):
    """A portal page asks an anonymous visitor to log in, then shows the page asked for."""
    response = testapp.get("/account", status=303)
    assert response.location.endswith("/login?came_from=%2Faccount")

    form = response.follow().forms["login-form"]
    form["name"], form["password"] = "demo", demo_cloud["password"]
    assert form.submit(status=303).location.endswith("/account")


def test_every_portal_page_but_the_public_ones_requires_log_in(testapp, demo_cloud):
    """Home, log-in and registration are public; the rest redirect anonymous visitors."""
    for path in ("/", "/login", "/register"):
        testapp.get(path, status=200)
    for path in ("/requests", "/requests/new", "/requests/1", "/account",
                 "/requests/quote?cpus=1"):
        assert "/login?came_from=" in testapp.get(path, status=303).location


def test_wrong_password_unknown_user_and_disabled_account_get_one_generic_error(
        testapp, demo_cloud, pyramid_request):
    """Log-in failures all read the same and log no one in."""
    users = pyramid_request.find_service(CloudUserService)
    users.create("sleeper", "sleeper-password", "sleeper@example.org", actor=ADMIN)
    users.set_status("sleeper", CloudUserStatus.DISABLED, actor=ADMIN)
    commit(pyramid_request)

    for name, password in (("demo", "not-the-password"), ("nobody", "whatever-1"),
                           ("sleeper", "sleeper-password")):
        response = log_in(testapp, name, password)
        assert response.status_int == 200
        assert text_of(response, "error-form") == "Wrong user name or password."
        testapp.get("/account", status=303)


def test_log_in_starts_a_new_session(testapp, demo_cloud):
    """Logging in replaces the anonymous session (no session fixation)."""
    before = testapp.get("/login").forms["login-form"]["csrf_token"].value
    log_in(testapp)
    after = testapp.get("/requests/new").forms["request-form"]["csrf_token"].value
    assert before != after


def test_log_out_is_a_post_with_csrf_and_ends_the_session(testapp, demo_cloud):
    """Log-out needs the form's token; afterwards portal pages ask for a log-in again."""
    log_in(testapp)
    testapp.get("/logout", status=404)
    testapp.post("/logout", status=400)
    testapp.get("/account", status=200)

    testapp.get("/").forms["logout-form"].submit(status=303)
    testapp.get("/account", status=303)


def test_admin_session_is_refused_by_portal_pages(testapp, demo_cloud, pyramid_request):
    """An admin is not a cloud user: portal pages answer 403 instead of a log-in redirect."""
    admin_session(testapp, pyramid_request)
    for path in ("/requests", "/requests/new", "/account"):
        response = testapp.get(path, status=403)
        assert "cannot use the portal" in text_of(response, "forbidden-note")
    testapp.get("/", status=200)


def test_someone_elses_request_is_not_found(testapp, demo_cloud, pyramid_request):
    """Another user's request id answers 404 and cannot be deprovisioned or extended."""
    users = pyramid_request.find_service(CloudUserService)
    other = users.create("other", "other-password", "other@example.org", actor=ADMIN)
    pyramid_request.find_service(BillingPort).credit(other, Decimal(100), reason="test",
                                                     comment="", actor=ADMIN)
    foreign = pyramid_request.find_service(CloudRequestService).submit(
        actor=ADMIN, cloud_user="other", start=None, stop=utcnow() + dt.timedelta(days=1),
        kernel="default", image="debian-12",
        memory_mb=256, cpus=1, disk_mb=2000, network_cards=1, quantity=1,
        virtualization="sim-vm")
    commit(pyramid_request)

    log_in(testapp)
    response = testapp.get(f"/requests/{foreign.id}", status=404)
    assert text_of(response, "not-found-note")
    csrf = csrf_token(testapp)
    testapp.post(f"/requests/{foreign.id}/deprovision", {"csrf_token": csrf}, status=404)
    testapp.post(f"/requests/{foreign.id}/extend",
                 {"csrf_token": csrf, "stop": "2099-01-01T00:00"}, status=404)
    (unchanged,) = all_requests(pyramid_request)
    assert unchanged.status is RequestStatus.NEW
    assert unchanged.stop.year != 2099
