"""Cloud users in the console: create, status, CCUs on the ledger, limits, removal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from billing.services import LedgerService
from engine.cloud.models import CloudUser, CloudUserStatus
from tests.functional.test_admin_support import (
    admin_login,
    form_to,
    submit_demo_request,
    text_of,
)


def user(pyramid_request, name: str) -> CloudUser | None:
    pyramid_request.dbsession.expire_all()
    return pyramid_request.dbsession.scalar(select(CloudUser).where(CloudUser.name == name))


@pytest.fixture
def demo_page(testapp, demo_cloud, pyramid_request):
    """The admin is logged in; returns a function giving the demo user's page."""
    admin_login(testapp)
    demo_id = user(pyramid_request, "demo").id
    return lambda **kw: testapp.get(f"/admin/cloud/users/{demo_id}", **kw)


def ledger_rows(page) -> list[tuple[str, str, str]]:
    """(amount, balance after, comment) of the ledger table, newest first."""
    rows = page.html.find(id="ledger").find("tbody").find_all("tr")
    return [tuple(row.find_all("td")[i].get_text() for i in (1, 2, 4)) for row in rows]


def test_users_are_listed_with_balance_and_status(testapp, demo_cloud):
    """The user list shows each user's status and CCU balance."""
    admin_login(testapp)

    row = testapp.get("/admin/cloud/users").html.find("tr", attrs={"data-user": "demo"})

    cells = [cell.get_text(" ", strip=True) for cell in row.find_all("td")]
    assert cells[3] == "active"
    assert cells[4] == "1,000"


def test_credit_and_debit_show_on_the_ledger(demo_page, pyramid_request):
    """A credit and a (negative) debit are booked with their comments and change the balance."""
    form = demo_page().forms["credit-form"]
    form["amount"], form["comment"] = "250", "goodwill"
    page = form.submit().follow()
    assert "Booked on the ledger of demo." in page

    form = page.forms["credit-form"]
    form["amount"], form["reason"], form["comment"] = "-20.5", "Correction", "too much"
    page = form.submit().follow()

    assert ledger_rows(page)[:2] == [("-20.5", "1,229.5", "too much"),
                                     ("+250", "1,250", "goodwill")]
    assert text_of(page, "balance") == "Balance 1,229.5 CCUs"
    demo = user(pyramid_request, "demo")
    ledger = pyramid_request.find_service(LedgerService)
    assert ledger.balance(demo) == ledger.ledger_sum(demo) == Decimal("1229.5")


def test_invalid_credit_is_refused_next_to_the_amount(demo_page, pyramid_request):
    """A zero or non-numeric amount is refused next to the amount field; nothing is booked."""
    for amount in ("0", "lots"):
        form = demo_page().forms["credit-form"]
        form["amount"] = amount

        page = form.submit(status=400)

        assert "amount" in text_of(page, "error-credit-amount")
        assert page.forms["credit-form"]["amount"].value == amount
    assert user(pyramid_request, "demo").ccus == Decimal(1000)


def test_set_balance_books_the_difference(demo_page, pyramid_request):
    """Setting the balance books one row for the difference."""
    form = demo_page().forms["balance-form"]
    form["ccus"], form["comment"] = "400", "new contract"

    page = form.submit().follow()

    assert ledger_rows(page)[0] == ("-600", "400", "new contract")
    assert user(pyramid_request, "demo").ccus == Decimal(400)


def test_admin_creates_a_cloud_user(testapp, demo_cloud, pyramid_request):
    """A valid form creates the user and leads to the user's page."""
    admin_login(testapp)
    form = testapp.get("/admin/cloud/users").forms["create-user"]
    form["cloud_user"], form["password"], form["email"] = "alice", "secret-pass-1", "a@x.example"
    form["forename"], form["language"] = "Alice", "de"

    page = form.submit().follow()

    assert "Cloud user alice created." in page
    alice = user(pyramid_request, "alice")
    assert (alice.forename, alice.language, alice.status) == ("Alice", "de",
                                                              CloudUserStatus.ACTIVE)


@pytest.mark.parametrize("case", [
    ("cloud_user", "al", "cloud_user"),
    ("cloud_user", "demo", "demo"),
    ("password", "short", "password"),
    ("email", "not-an-address", "email"),
])
def test_user_create_errors_are_shown_next_to_the_field(testapp, demo_cloud, pyramid_request,
                                                        case):
    """A refused field is named next to its input, the other values are kept, nothing is
    created."""
    field, value, named = case
    admin_login(testapp)
    form = testapp.get("/admin/cloud/users").forms["create-user"]
    values = {"cloud_user": "bob", "password": "secret-pass-1", "email": "b@x.example",
              "city": "Köln"}
    values[field] = value
    for name, text in values.items():
        form[name] = text

    page = form.submit(status=400)

    error = text_of(page, f"error-create-{field}")
    assert error.startswith("Invalid input:")
    assert named in error
    assert page.html.find(id=f"create-{field}")["aria-invalid"] == "true"
    assert page.forms["create-user"]["city"].value == "Köln"
    assert page.forms["create-user"]["password"].value == ""
    assert user(pyramid_request, "bob") is None


def test_disable_and_enable_a_user(demo_page, pyramid_request):
    """The status buttons disable and enable the account."""
    page = form_to(demo_page(), "/status").submit().follow()
    assert user(pyramid_request, "demo").status is CloudUserStatus.DISABLED

    enable = form_to(page, "/status")
    assert enable["status"].value == "active"
    enable.submit().follow()
    assert user(pyramid_request, "demo").status is CloudUserStatus.ACTIVE


def test_limits_are_saved_and_an_invalid_one_is_named(demo_page, pyramid_request):
    """Limits are stored; a negative one is refused next to its field and nothing changes."""
    form = demo_page().forms["limits-form"]
    form["cpu_limit"], form["memory_limit_mb"] = "4", "8192"
    form.submit().follow()
    assert (user(pyramid_request, "demo").limits.cpu_limit,
            user(pyramid_request, "demo").limits.memory_limit_mb) == (4, 8192)

    form = demo_page().forms["limits-form"]
    form["cpu_limit"], form["disk_limit_mb"] = "8", "-1"
    page = form.submit(status=400)

    assert "disk_limit_mb" in text_of(page, "error-limits-disk_limit_mb")
    assert user(pyramid_request, "demo").limits.cpu_limit == 4


def test_remove_is_refused_while_requests_are_open(demo_page, pyramid_request):
    """A user with an open request stays, and the admin is told why."""
    submit_demo_request(pyramid_request)
    page = form_to(demo_page(), "/remove").submit().follow()

    error = page.html.find("p", class_="error").get_text()
    assert error.startswith("Cloud user demo was not removed. Not possible in the current state:")
    assert user(pyramid_request, "demo") is not None


def test_user_without_history_is_removed(testapp, demo_cloud, pyramid_request):
    """A new user with nothing booked is removed and leaves the list."""
    admin_login(testapp)
    form = testapp.get("/admin/cloud/users").forms["create-user"]
    form["cloud_user"], form["password"], form["email"] = "carol", "secret-pass-1", "c@x.example"
    page = form.submit().follow()

    listing = form_to(page, "/remove").submit().follow()

    assert "Cloud user carol removed." in listing
    assert listing.html.find("tr", attrs={"data-user": "carol"}) is None
    assert user(pyramid_request, "carol") is None


def test_text_typed_by_people_is_shown_as_text(demo_page):
    """Markup in a comment is escaped on the ledger, never interpreted."""
    form = demo_page().forms["credit-form"]
    form["amount"], form["comment"] = "1", "<script>alert(1)</script>"

    page = form.submit().follow()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)</script>" not in page.text
