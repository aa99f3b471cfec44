"""The admin side of the request path: list, approve, watch it run, deprovision."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from billing.models import LedgerEntry
from engine.cloud.models import CloudAppliance, CloudRequest, RequestStatus
from engine.cloud.provisioning import ProvisioningService
from engine.cloud.services import CloudRequestService
from engine.security import Actor
from tests.conftest import commit, run_jobs
from tests.functional.test_admin_support import (
    admin_login,
    form_to,
    submit_demo_request,
    text_of,
)


def status_of(pyramid_request, request_id: int) -> RequestStatus:
    pyramid_request.dbsession.expire_all()
    return pyramid_request.dbsession.get(CloudRequest, request_id).status


def request_row(page, request_id: int):
    return page.html.find("tr", attrs={"data-request": str(request_id)})


def test_request_is_approved_in_the_console_runs_and_is_deprovisioned(
        testapp, demo_cloud, pyramid_request, registry):
    """A new request is listed, approved, shown active with its appliance and charge, and
    deprovisioned through the console."""
    request_id = submit_demo_request(pyramid_request)
    admin_login(testapp)

    listing = testapp.get("/admin/cloud/requests", params={"status": "new"})
    assert request_row(listing, request_id)["data-status"] == "new"

    detail = testapp.get(f"/admin/cloud/requests/{request_id}")
    page = _submit(detail, f"/admin/cloud/requests/{request_id}/approve")
    assert f"Request {request_id} approved." in page
    run_jobs(registry)

    detail = testapp.get(f"/admin/cloud/requests/{request_id}")
    assert text_of(detail, "request-status").startswith("active")
    (appliance,) = detail.html.find(id="request-appliances").find("tbody").find_all("tr")
    assert appliance["data-state"] == "active"
    price = pyramid_request.dbsession.get(CloudRequest, request_id).price_per_hour
    ledger = detail.html.find(id="ledger").find("tbody").find_all("tr")
    assert [row.find_all("td")[1].get_text() for row in ledger] == [f"-{price.normalize()}"]

    dashboard = testapp.get("/admin/")
    active = dashboard.html.find(id="request-counts").find("li", attrs={"data-status": "active"})
    assert active.find("strong").get_text() == "1"
    assert Decimal(text_of(dashboard, "charged-today-value")) == price

    page = _submit(detail, f"/admin/cloud/requests/{request_id}/deprovision")
    assert f"Request {request_id} is being deprovisioned." in page
    run_jobs(registry)
    assert text_of(testapp.get(f"/admin/cloud/requests/{request_id}"),
                   "request-status").startswith("done")
    assert status_of(pyramid_request, request_id) is RequestStatus.DONE


def _submit(page, action: str):
    """Submit the form of ``page`` that posts to ``action``; returns the page after it."""
    return form_to(page, action).submit().follow()


def test_refused_transition_is_shown_as_a_message_and_changes_nothing(
        testapp, demo_cloud, pyramid_request):
    """Approving a denied request is refused with the reason shown as a message."""
    request_id = submit_demo_request(pyramid_request)
    admin_login(testapp)
    detail = testapp.get(f"/admin/cloud/requests/{request_id}")
    _submit(detail, f"/admin/cloud/requests/{request_id}/deny")

    page = _submit(detail, f"/admin/cloud/requests/{request_id}/approve")

    error = page.html.find("p", class_="error").get_text()
    assert "Not possible in the current state" in error
    assert f"request {request_id}" in error
    assert status_of(pyramid_request, request_id) is RequestStatus.DENIED


def test_request_list_filters_by_status(testapp, demo_cloud, pyramid_request):
    """The status filter shows only requests with that status."""
    first = submit_demo_request(pyramid_request)
    second = submit_demo_request(pyramid_request)
    admin_login(testapp)
    _submit(testapp.get(f"/admin/cloud/requests/{second}"),
            f"/admin/cloud/requests/{second}/deny")

    new = testapp.get("/admin/cloud/requests", params={"status": "new"})
    denied = testapp.get("/admin/cloud/requests", params={"status": "denied"})
    everything = testapp.get("/admin/cloud/requests")

    assert (bool(request_row(new, first)), bool(request_row(new, second))) == (True, False)
    assert (bool(request_row(denied, first)), bool(request_row(denied, second))) == (False, True)
    assert (bool(request_row(everything, first)), bool(request_row(everything, second))) == (
        True, True)
    testapp.get("/admin/cloud/requests", params={"status": "bogus"}, status=400)


def test_unknown_request_is_answered_with_the_console_not_found_page(testapp, demo_cloud):
    """A request id that does not exist gives 404 inside the console's layout."""
    admin_login(testapp)

    page = testapp.get("/admin/cloud/requests/999999", status=404)

    assert "999999" in page.html.find("main").get_text()
    assert page.html.find("nav", class_="mainnav") is not None


def test_hours_charged_of_an_appliance_are_its_hour_charges_in_the_ledger(
        testapp, demo_cloud, pyramid_request, registry):
    """A pause and a resume after the charged hour ended: two runs, two charges, and the
    page says 2 (not the new run's 1); a pause and resume within the hour adds nothing."""
    request_id = submit_demo_request(pyramid_request)
    admin = Actor.admin("root-admin", None)
    db = pyramid_request.dbsession
    pyramid_request.find_service(CloudRequestService).approve(request_id, actor=admin)
    commit(pyramid_request)
    run_jobs(registry)
    provisioning = pyramid_request.find_service(ProvisioningService)

    def pause_and_resume(paused_for: dt.timedelta) -> None:
        db.expire_all()
        ca = db.scalars(select(CloudAppliance).where(
            CloudAppliance.request_id == request_id)).one()
        provisioning.command(ca.id, "stop", actor=admin)
        commit(pyramid_request)
        run_jobs(registry)
        db.expire_all()
        ca = db.get(CloudAppliance, ca.id)
        ca.active_since -= paused_for
        ca.active_until -= paused_for
        provisioning.command(ca.id, "start", actor=admin)
        commit(pyramid_request)
        run_jobs(registry)

    def shown_and_ledger() -> tuple[str, int]:
        detail = testapp.get(f"/admin/cloud/requests/{request_id}")
        (row,) = detail.html.find(id="request-appliances").find("tbody").find_all("tr")
        db.expire_all()
        return row.find_all("td")[6].get_text(), db.scalar(
            select(func.count(LedgerEntry.id)).where(LedgerEntry.request_id == request_id,
                                                     LedgerEntry.period_start.is_not(None)))

    admin_login(testapp)
    assert shown_and_ledger() == ("1", 1)
    pause_and_resume(dt.timedelta(minutes=10))  # within the charged hour
    assert shown_and_ledger() == ("1", 1)
    pause_and_resume(dt.timedelta(hours=1))  # after it
    assert db.scalars(select(CloudAppliance.run).where(
        CloudAppliance.request_id == request_id)).one() == 1
    assert shown_and_ledger() == ("2", 2)
