"""The request form: choices, the price shown before submitting, errors next to their field,
CSRF, and the actions on a request (deprovision, extend)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from engine.cloud.billing_port import BillingPort
from engine.cloud.models import RequestStatus
from engine.cloud.services import CloudUserService
from engine.db import utcnow
from tests.conftest import commit
from tests.functional.test_portal_support import (
    ADMIN,
    all_requests,
    cloud_user,
    field_error,
    log_in,
    page,
    request_form,
    set_config,
    submit_request,
    text_of,
)


def later(**delta: float) -> str:
    """A ``datetime-local`` value (UTC) ``delta`` from now."""
    return (utcnow() + dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M")


def limit_memory(pyramid_request, **_kw):
    pyramid_request.find_service(CloudUserService).set_limits(
        "demo", memory_limit_mb=512, actor=ADMIN)


def spend_credit(pyramid_request, **_kw):
    users = pyramid_request.find_service(CloudUserService)
    pyramid_request.find_service(BillingPort).credit(
        users.resolve("demo", actor=ADMIN), Decimal(-995), reason="test", comment="",
        actor=ADMIN)


SUBMIT_ERRORS = [
    # (what is wrong, setup, form choices, field the error is shown at, words of the error)
    ("stop too early", None, {"stop": later(minutes=30)}, "stop", "Please check this value"),
    ("stop unreadable", None, {"stop": "next tuesday"}, "stop", "not an ISO 8601 time"),
    ("cpus not offered", None, {"cpus": "3"}, "cpus", "not offered"),
    ("kernel unknown", None, {"kernel": "no-such-kernel"}, "kernel",
     "This choice is not available"),
    ("image unknown", None, {"image": "no-such-image"}, "image",
     "This choice is not available"),
    ("memory over limit", limit_memory, {"memory_mb": "1024"}, "memory_mb",
     "more than your limits allow"),
    ("credit too low", spend_credit, {"quantity": "2"}, "price",
     "balance does not cover the first hour"),
]


@pytest.mark.parametrize("case", [case[1:] for case in SUBMIT_ERRORS],
                         ids=[case[0] for case in SUBMIT_ERRORS])
def test_submit_error_is_shown_next_to_its_field_and_nothing_is_written(
        testapp, demo_cloud, pyramid_request, case):
    """A refused submit shows the service's error at the concerned field, keeps the input."""
    setup, choices, field, words = case
    if setup is not None:
        setup(pyramid_request)
        commit(pyramid_request)
    log_in(testapp)

    response = submit_request(testapp, **choices)

    assert response.status_int == 200
    assert words in field_error(response, field)
    form = response.forms["request-form"]
    for name, value in choices.items():
        offered = [option for option, _selected, _text in getattr(form[name], "options", [])]
        if not offered or value in offered:  # a forged option cannot be shown selected
            assert form[name].value == value
    assert all_requests(pyramid_request) == []


def test_submit_in_maintenance_is_refused_with_a_form_error(testapp, demo_cloud,
                                                            pyramid_request):
    """With the cloud closed, pages show the maintenance note and submit writes nothing."""
    log_in(testapp)
    set_config(pyramid_request, cloud_enabled=False)

    form_page = testapp.get("/requests/new")
    assert "The cloud is in maintenance" in form_page.text
    response = form_page.forms["request-form"].submit("action", value="submit")
    assert "maintenance" in text_of(response, "error-form")
    assert all_requests(pyramid_request) == []
    assert "maintenance right now" in text_of(testapp.get("/"), "maintenance-note")


def test_show_price_rerenders_the_form_with_the_price_and_submits_nothing(
        testapp, demo_cloud, pyramid_request):
    """Without a script, "Show price" prices the current choices on the server."""
    log_in(testapp)
    response = request_form(testapp, virtualization="physical", cpus="4",
                            memory_mb="2048", quantity="2").submit("action", value="quote")
    # physical 5 + kernel 0 + 4 CPUs 4 + 2 GB 8 + 2 GB disk 2 + 1 NIC 1 = 20, twice
    assert text_of(response, "price").startswith(
        "Per system and hour 20 CCUs All systems, per hour 40 CCUs")
    assert response.forms["request-form"]["cpus"].value == "4"
    assert all_requests(pyramid_request) == []


def test_quote_answers_the_price_of_the_choices_as_json(testapp, demo_cloud,
                                                        pyramid_request):
    """The price endpoint gives CCUs per appliance and in total, and the money value."""
    set_config(pyramid_request, cloud_1000_ccus=20, cloud_currency="Euro")
    log_in(testapp)
    quote = testapp.get("/requests/quote", params={
        "virtualization": "sim-vm", "kernel": "default", "cpus": "1", "memory_mb": "256",
        "disk_mb": "2000", "network_cards": "1", "quantity": "3", "ha": "on"}).json
    # sim-vm 2 + 1 CPU 1 + 256 MB 1 + 2 GB 2 + 1 NIC 1 + HA 1 = 8 per appliance
    assert (quote["per_appliance"], quote["total"], quote["currency"]) == (
        "8", "24", "Euro")
    assert Decimal(quote["money"]["hour"]) == Decimal("0.48")
    assert Decimal(quote["money"]["month"]) == Decimal("0.48") * 24 * 31
    assert quote["text"]["money_hour"] == "€0.48"


def test_quote_names_the_field_of_a_bad_number(testapp, demo_cloud):
    """A number the price cannot be computed for answers 400 with its field."""
    log_in(testapp)
    answer = testapp.get("/requests/quote", params={
        "virtualization": "sim-vm", "kernel": "default", "cpus": "many", "memory_mb": "256",
        "disk_mb": "2000", "network_cards": "1", "quantity": "1"}, status=400).json
    assert answer["field"] == "cpus"


def test_form_offers_only_what_the_configuration_allows(testapp, demo_cloud,
                                                        pyramid_request):
    """HA, clone-on-deploy and free numbers follow the cloud's configuration."""
    log_in(testapp)
    form = testapp.get("/requests/new").forms["request-form"]
    assert "ha" in form.fields
    assert "clone_on_deploy" not in form.fields

    set_config(pyramid_request, show_ha_checkbox=False, default_clone_on_deploy=False,
               cloud_selector=False)
    response = testapp.get("/requests/new")
    form = response.forms["request-form"]
    assert "ha" not in form.fields
    assert "clone_on_deploy" in form.fields
    assert page(response).get_element_by_id("cpus").get("type") == "number"


def test_forged_forms_without_the_csrf_token_are_refused(testapp, demo_cloud,
                                                         pyramid_request):
    """A POST without or with a wrong token answers 400 and changes nothing."""
    log_in(testapp)
    submit_request(testapp).follow()
    (cloud_request,) = all_requests(pyramid_request)
    form = request_form(testapp)
    fields = dict(form.submit_fields())

    for token in (None, "forged-token"):
        forged = dict(fields, action="submit")
        forged.pop("csrf_token")
        if token:
            forged["csrf_token"] = token
        testapp.post("/requests/new", forged, status=400)
        testapp.post(f"/requests/{cloud_request.id}/deprovision",
                     {"csrf_token": token} if token else {}, status=400)
        testapp.post("/language", {"language": "de", **({"csrf_token": token} if token
                                                        else {})}, status=400)

    (still,) = all_requests(pyramid_request)
    assert (still.id, still.status) == (cloud_request.id, RequestStatus.NEW)
    assert "Request systems" in testapp.get("/requests/new").text


def test_extend_changes_the_stop_time_and_reports_a_refusal(testapp, demo_cloud,
                                                            pyramid_request):
    """The stop time can be moved on; a time too early is refused with a message."""
    log_in(testapp)
    submit_request(testapp)
    (cloud_request,) = all_requests(pyramid_request)
    new_stop = later(days=3)

    form = testapp.get(f"/requests/{cloud_request.id}").forms[f"extend-{cloud_request.id}"]
    form["stop"] = new_stop
    detail = form.submit().follow()
    assert "The stop time of request" in detail.text
    (extended,) = all_requests(pyramid_request)
    assert extended.stop.strftime("%Y-%m-%dT%H:%M") == new_stop

    form = detail.forms[f"extend-{cloud_request.id}"]
    form["stop"] = later(minutes=10)
    refused = form.submit().follow()
    assert "Please check this value" in refused.text
    (unchanged,) = all_requests(pyramid_request)
    assert unchanged.stop == extended.stop


def test_deprovision_is_offered_only_while_the_service_allows_it(testapp, demo_cloud,
                                                                 pyramid_request):
    """A request being removed has no actions left in the list."""
    log_in(testapp)
    submit_request(testapp)
    (cloud_request,) = all_requests(pyramid_request)
    listing = testapp.get("/requests")
    listing = listing.forms[f"deprovision-{cloud_request.id}"].submit().follow()
    assert f"deprovision-{cloud_request.id}" not in listing.forms
    assert cloud_user(pyramid_request).ccus == Decimal(1000)
