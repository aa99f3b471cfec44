"""The cloud portal: a request's whole life, as its user walks it in the browser."""

from __future__ import annotations

from decimal import Decimal

from engine.cloud.models import RequestStatus
from engine.cloud.services import CloudRequestService
from tests.conftest import commit, run_jobs
from tests.functional.test_portal_support import (
    ADMIN,
    all_requests,
    log_in,
    page,
    request_form,
    text_of,
)


def test_request_goes_from_form_to_done_through_the_portal(testapp, demo_cloud,
                                                           pyramid_request, registry):
    """A cloud user requests a system, sees it run and charged, and removes it."""
    log_in(testapp)

    form_page = testapp.get("/requests/new")
    form = form_page.forms["request-form"]
    assert [value for value, _selected, _text in form["cpus"].options] == ["1", "2", "4"]
    assert "sim-vm" in [value for value, _s, _t in form["virtualization"].options]
    assert [value for value, _s, _t in form["kernel"].options] == ["default", "linux-6.1"]

    choices = {"virtualization": "sim-vm", "kernel": "default", "image": "debian-12",
               "cpus": "2", "memory_mb": "1024", "disk_mb": "5000", "network_cards": "1",
               "quantity": "1"}
    quote = testapp.get("/requests/quote", params=choices).json
    # sim-vm 2 + kernel 0 + 2 CPUs 2 + 1 GB 4 + 5 GB 5 + 1 NIC 1
    assert (quote["per_appliance"], quote["total"]) == ("14", "14")
    assert Decimal(quote["money"]["day"]) == Decimal(quote["money"]["hour"]) * 24

    form = request_form(testapp, **choices)
    priced = form.submit("action", value="quote")
    assert text_of(priced, "price").startswith("Per system and hour 14 CCUs")
    assert all_requests(pyramid_request) == []

    listing = priced.forms["request-form"].submit("action", value="submit").follow()
    (cloud_request,) = all_requests(pyramid_request)
    row = page(listing).get_element_by_id(f"request-{cloud_request.id}")
    assert row.get("data-status") == "new"
    assert "New" in row.text_content()

    pyramid_request.find_service(CloudRequestService).approve(cloud_request.id, actor=ADMIN)
    commit(pyramid_request)
    run_jobs(registry)

    detail = testapp.get(f"/requests/{cloud_request.id}")
    assert text_of(detail, "request-status") == "Active"
    appliance_text = text_of(detail, "appliances-table")
    assert "Running" in appliance_text
    assert "192.0.2." in appliance_text
    assert "14" in text_of(detail, "charges-table")

    account = testapp.get("/account")
    assert f"Request {cloud_request.id}" in text_of(account, "transactions-table")
    assert text_of(account, "balance") == "986 CCUs"

    listing = testapp.get("/requests").forms[f"deprovision-{cloud_request.id}"].submit().follow()
    assert f"Request {cloud_request.id} is being removed." in listing.text
    assert page(listing).get_element_by_id(f"request-{cloud_request.id}").get(
        "data-status") == RequestStatus.DEPROVISION.value

    run_jobs(registry)
    listing = testapp.get("/requests")
    assert page(listing).get_element_by_id(f"request-{cloud_request.id}").get(
        "data-status") == "done"
    assert "Done" in text_of(listing, f"request-{cloud_request.id}")


def test_user_pauses_resumes_and_restarts_a_system(testapp, demo_cloud, pyramid_request,
                                                   registry):
    """The request page offers pause, resume and restart, each only when it is possible."""
    log_in(testapp)
    request_form(testapp, virtualization="sim-vm").submit("action", value="submit")
    (cloud_request,) = all_requests(pyramid_request)
    pyramid_request.find_service(CloudRequestService).approve(cloud_request.id, actor=ADMIN)
    commit(pyramid_request)
    run_jobs(registry)

    def buttons(detail):
        return [form["command"].value for form in detail.forms.values()
                if "command" in form.fields]

    detail = testapp.get(f"/requests/{cloud_request.id}")
    assert buttons(detail) == ["stop", "restart"]
    paused = next(form for form in detail.forms.values() if "command" in form.fields
              and form["command"].value == "stop").submit().follow()
    assert "Paused." in paused.text
    run_jobs(registry)
    detail = testapp.get(f"/requests/{cloud_request.id}")
    assert buttons(detail) == ["start"]
    assert page(detail).get_element_by_id(
        f"appliance-{cloud_request.appliances[0].id}").get("data-state") == "paused"
    detail.forms[next(key for key, form in detail.forms.items()
                  if "command" in form.fields)].submit().follow()
    run_jobs(registry)
    detail = testapp.get(f"/requests/{cloud_request.id}")
    assert buttons(detail) == ["stop", "restart"]
    # a forged command (no CSRF token) changes nothing
    appliance_id = cloud_request.appliances[0].id
    testapp.post(f"/appliances/{appliance_id}/command", {"command": "stop"}, status=400)
