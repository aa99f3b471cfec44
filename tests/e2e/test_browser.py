"""The request path in a real browser: the portal and the admin console."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from engine.cloud.models import CloudRequest, RequestStatus
from engine.scheduler.runner import run_in_transaction
from tests.conftest import run_jobs


def portal_login(page: Any, server: Any) -> None:
    page.goto(f"{server.url}/login")
    page.fill("#name", "demo")
    page.fill("#password", server.password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def submit_request(page: Any, server: Any) -> int:
    page.goto(f"{server.url}/requests/new")
    page.select_option("#virtualization", "sim-vm")
    page.select_option("#memory_mb", "512")
    # the price per hour is shown before submitting (updated by the form's script)
    price = page.locator("#price")
    price.get_by_text(re.compile(r"\d")).first.wait_for()
    page.click("button[name=action][value=submit]")
    page.wait_for_url(re.compile(r".*/requests(/\d+)?$"))
    return run_in_transaction(server.registry, lambda r: r.dbsession.scalar(
        select(CloudRequest.id).order_by(CloudRequest.id.desc())))


def test_portal_user_submits_a_request_and_sees_it_in_my_requests(page, live_server):
    """A cloud user logs in, requests a system (seeing its price) and finds it listed."""
    portal_login(page, live_server)
    request_id = submit_request(page, live_server)
    page.goto(f"{live_server.url}/requests")
    row = page.locator("tr", has_text=f"{request_id}")
    row.first.wait_for()
    assert "new" in row.first.inner_text().lower()


def test_admin_approves_the_request_in_the_console(browser, page, live_server):
    """The admin logs in to the console and approves the request; it becomes active."""
    portal_login(page, live_server)
    request_id = submit_request(page, live_server)

    admin = browser.new_context(locale="en-US").new_page()
    admin.set_default_timeout(15000)
    admin.goto(f"{live_server.url}/admin/login")
    admin.fill("input[name=name]", "admin")
    admin.fill("input[name=password]", live_server.password)
    admin.click("#login-form button[type=submit]")
    admin.wait_for_url(re.compile(r".*/admin/?$"))
    admin.goto(f"{live_server.url}/admin/cloud/requests/{request_id}")
    admin.click("form[action$='/approve'] button[type=submit]")
    admin.wait_for_load_state()

    def status(request: Any) -> RequestStatus:
        return request.dbsession.get(CloudRequest, request_id).status

    assert run_in_transaction(live_server.registry, status) in (RequestStatus.APPROVED,
                                                                RequestStatus.ACTIVE)
    run_jobs(live_server.registry)
    assert run_in_transaction(live_server.registry, status) is RequestStatus.ACTIVE
    admin.reload()
    assert "active" in admin.content().lower()
    admin.context.close()
