"""Registration and the account page: balance, movements, limits, details, password."""

from __future__ import annotations

from engine.cloud.services import CloudUserService
from tests.conftest import commit
from tests.functional.test_portal_support import (
    ADMIN,
    cloud_user,
    field_error,
    log_in,
    set_config,
    text_of,
)

NEW_USER = {"name": "newcomer", "password": "newcomer-pass", "password2": "newcomer-pass",
            "email": "newcomer@example.org", "forename": "Nora", "lastname": "Neu",
            "street": "Hauptstraße 1", "city": "Köln", "country": "Germany",
            "phone": "+49 221 000000"}


def fill(form, values):
    for name, value in values.items():
        form[name] = value
    return form


def test_registration_creates_the_account_and_logs_the_user_in(testapp, demo_cloud,
                                                                pyramid_request):
    """A visitor registers, lands on the account page, and can log in later."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    form = testapp.get("/register").forms["register-form"]
    account = fill(form, NEW_USER).submit(status=303).follow()

    assert "Konto von newcomer" in account.text
    user = cloud_user(pyramid_request, "newcomer")
    assert (user.city, user.phone, user.language) == ("Köln", "+49 221 000000", "de")
    testapp.get("/").forms["logout-form"].submit()
    assert log_in(testapp, "newcomer", "newcomer-pass").status_int == 303


def test_registration_checks_the_retyped_password_and_shows_service_errors(
        testapp, demo_cloud, pyramid_request):
    """Errors appear at their field; no account is created."""
    form = testapp.get("/register").forms["register-form"]
    response = fill(form, dict(NEW_USER, password2="something-else")).submit()
    assert field_error(response, "password2") == "The two passwords differ."
    assert response.forms["register-form"]["email"].value == NEW_USER["email"]

    response = fill(response.forms["register-form"],
                    dict(NEW_USER, name="demo")).submit()
    assert "is taken" in field_error(response, "name")
    response = fill(response.forms["register-form"],
                    dict(NEW_USER, email="not-an-address")).submit()
    assert "not a valid e-mail address" in field_error(response, "email")
    response = fill(response.forms["register-form"],
                    dict(NEW_USER, password="short", password2="short")).submit()
    assert "at least 8 characters" in field_error(response, "password")
    assert cloud_user(pyramid_request, "newcomer") is None


def test_registration_closed_points_to_the_administrator(testapp, demo_cloud,
                                                         pyramid_request):
    """With registration off there is no form, and a posted one creates nothing."""
    open_form = testapp.get("/register").forms["register-form"]
    set_config(pyramid_request, public_register_enabled=False)

    closed = testapp.get("/register")
    assert "contact the cloud's administrator" in text_of(closed, "registration-closed")
    assert "register-form" not in closed.forms
    assert "Create an account" not in testapp.get("/").text
    response = fill(open_form, NEW_USER).submit()
    assert text_of(response, "registration-closed")
    assert cloud_user(pyramid_request, "newcomer") is None


def test_account_shows_balance_movements_limits_and_usage(testapp, demo_cloud,
                                                          pyramid_request):
    """The account page lists what the services say about the user."""
    pyramid_request.find_service(CloudUserService).set_limits(
        "demo", memory_limit_mb=4096, actor=ADMIN)
    commit(pyramid_request)
    log_in(testapp)

    account = testapp.get("/account")
    assert text_of(account, "balance") == "1,000 CCUs"
    assert "Demo credit" in text_of(account, "transactions-table")
    limits = text_of(account, "limits-table")
    assert "Memory (MB) 0 4,096" in limits
    assert "Systems 0 no limit" in limits


def test_profile_saves_details_and_shows_errors_at_their_field(testapp, demo_cloud,
                                                               pyramid_request):
    """Details are saved through the service; a bad e-mail address is shown at its field."""
    log_in(testapp)
    form = testapp.get("/account").forms["profile-form"]
    fill(form, {"city": "Hamburg", "phone": "040 123"}).submit(status=303)
    user = cloud_user(pyramid_request)
    assert (user.city, user.phone) == ("Hamburg", "040 123")

    form = testapp.get("/account").forms["profile-form"]
    response = fill(form, {"email": "broken", "city": "Bremen"}).submit()
    assert "not a valid e-mail address" in field_error(response, "email")
    assert response.forms["profile-form"]["city"].value == "Bremen"
    assert cloud_user(pyramid_request).city == "Hamburg"


def test_password_change_checks_the_old_password_and_the_retyped_one(testapp, demo_cloud):
    """The old password is checked again and the new one typed twice."""
    log_in(testapp)
    form = testapp.get("/account").forms["password-form"]
    response = fill(form, {"old_password": "wrong-password", "new_password": "changed-pw-1",
                           "new_password2": "changed-pw-2"}).submit()
    assert field_error(response, "old_password") == "This is not your current password."
    assert field_error(response, "new_password2") == "The two passwords differ."

    form = response.forms["password-form"]
    response = fill(form, {"old_password": demo_cloud["password"], "new_password": "short",
                           "new_password2": "short"}).submit()
    assert "at least 8 characters" in field_error(response, "new_password")

    form = response.forms["password-form"]
    fill(form, {"old_password": demo_cloud["password"], "new_password": "changed-pw-1",
                "new_password2": "changed-pw-1"}).submit(status=303)
    testapp.get("/").forms["logout-form"].submit()
    assert log_in(testapp, "demo", demo_cloud["password"]).status_int == 200
    assert log_in(testapp, "demo", "changed-pw-1").status_int == 303
