"""The portal's lists that can grow: the user's requests (filtered by status, with counts),
the account's movements and a request's charges, a page at a time; only the user's own rows,
bad addresses refused naming the field, and a page's SQL statements that do not grow with
its rows."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from billing.models import LedgerEntry
from engine.cloud.models import CloudRequest, CloudUser, RequestStatus
from engine.db import utcnow
from tests.conftest import commit
from tests.functional.test_admin_lists import add_requests
from tests.functional.test_admin_resources import StatementCounter
from tests.functional.test_portal_support import log_in


def demo_id(request: Any) -> int:
    return request.dbsession.scalar(select(CloudUser.id).where(CloudUser.name == "demo"))


def add_other_users_requests(request: Any, count: int) -> None:
    """Requests of another user, which the demo user's lists never show."""
    other = CloudUser(name="someone-else", password_hash="x", email="else@example.org")
    request.dbsession.add(other)
    request.dbsession.flush()
    model = request.dbsession.scalar(select(CloudRequest).limit(1))
    columns = {column.key: getattr(model, column.key) for column in CloudRequest.__table__.c
               if column.key not in ("id", "user_id")}
    request.dbsession.execute(insert(CloudRequest), [
        {**columns, "user_id": other.id, "next_step_at": None} for _n in range(count)])
    commit(request)


def add_movements(request: Any, count: int, *, request_id: int | None = None) -> None:
    user, now = demo_id(request), utcnow()
    request.dbsession.execute(insert(LedgerEntry), [
        {"user_id": user, "request_id": request_id, "amount": Decimal("-1.5"),
         "balance_after": Decimal(-n), "reason": "charge", "comment": f"hour {n}",
         "actor": "system", "time": now - dt.timedelta(hours=n),
         "idempotency_key": f"portal-test-{request_id}-{n}"} for n in range(count)])
    commit(request)


def request_ids(page: Any) -> list[int]:
    return [int(row["id"].removeprefix("request-"))
            for row in page.html.select("#requests-table tbody tr")]


def walk(testapp: Any, page: Any, listed: Any, next_id: str = "page-next") -> list:
    found = []
    while True:
        found += listed(page)
        link = page.html.find(id=next_id)
        if link is None:
            return found
        page = testapp.get(link["href"])


def test_my_requests_are_paged_newest_first_and_only_mine(testapp, demo_cloud,
                                                          pyramid_request):
    add_requests(pyramid_request, 60)
    add_other_users_requests(pyramid_request, 30)
    mine = list(pyramid_request.dbsession.scalars(
        select(CloudRequest.id).where(CloudRequest.user_id == demo_id(pyramid_request))
        .order_by(CloudRequest.id.desc())))
    log_in(testapp)

    first = testapp.get("/requests", params={"size": "10"})
    assert len(request_ids(first)) == 10
    assert walk(testapp, first, request_ids) == mine
    second = testapp.get(first.html.find(id="page-next")["href"])
    back = testapp.get(second.html.find(id="page-previous")["href"])
    assert request_ids(back) == request_ids(first)
    assert back.html.find(id="page-previous") is None


def test_my_requests_filter_by_status_with_counts(testapp, demo_cloud, pyramid_request):
    add_requests(pyramid_request, 35, statuses=(RequestStatus.ACTIVE, RequestStatus.DONE,
                                                RequestStatus.DENIED))
    add_other_users_requests(pyramid_request, 10)
    active = pyramid_request.dbsession.scalar(select(func.count()).where(
        CloudRequest.user_id == demo_id(pyramid_request),
        CloudRequest.status == RequestStatus.ACTIVE))
    log_in(testapp)

    page = testapp.get("/requests")
    links = {link["href"]: int(link.find(class_="count").get_text())
             for link in page.html.select("#status-filters a")}
    assert links["/requests?status=active"] == active
    assert links["/requests"] == 1 + 35  # the demo request and the 35 added, no one else's

    filtered = testapp.get("/requests", params={"status": "active", "size": "10"})
    rows = walk(testapp, filtered, lambda page: [
        row["data-status"] for row in page.html.select("#requests-table tbody tr")])
    assert rows == ["active"] * active


@pytest.mark.parametrize(("query", "field"), [
    ({"size": "7"}, "size"), ({"size": "x"}, "size"), ({"after": "nope"}, "after"),
    ({"before": "[\"a\"]"}, "before"), ({"after": "[1]", "before": "[2]"}, "before"),
    ({"status": "lost"}, "status")])
def test_a_bad_list_address_is_refused_naming_the_field(testapp, demo_cloud, query, field):
    log_in(testapp)

    for path in ("/requests", "/account"):
        if path == "/account" and field == "status":
            continue
        page = testapp.get(path, params=query, status=400)
        assert f"{field}:" in page.text


def test_my_requests_page_takes_the_same_statements_for_few_and_many_rows(
        testapp, demo_cloud, pyramid_request, db_engine):
    add_requests(pyramid_request, 120)
    log_in(testapp)
    testapp.get("/requests")

    def statements(params: dict) -> int:
        with StatementCounter(db_engine) as counter:
            testapp.get("/requests", params=params)
        return len(counter.statements)

    assert statements({"size": "10"}) == statements({"size": "100"})


def test_account_movements_are_paged(testapp, demo_cloud, pyramid_request):
    add_movements(pyramid_request, 70)
    expected = list(pyramid_request.dbsession.scalars(
        select(LedgerEntry.comment).where(LedgerEntry.user_id == demo_id(pyramid_request))
        .order_by(LedgerEntry.id.desc())))
    log_in(testapp)

    page = testapp.get("/account")
    comments = walk(testapp, page, lambda page: [
        row.find_all("td")[4].get_text().strip()
        for row in page.html.select("#transactions-table tbody tr")], "movements-page-next")

    assert len(page.html.select("#transactions-table tbody tr")) == 25
    assert comments == expected


def test_a_requests_charges_are_paged(testapp, demo_cloud, pyramid_request):
    add_requests(pyramid_request, 1)
    request_id = pyramid_request.dbsession.scalar(select(func.max(CloudRequest.id)))
    add_movements(pyramid_request, 40, request_id=request_id)
    add_movements(pyramid_request, 5)  # not of this request
    log_in(testapp)

    page = testapp.get(f"/requests/{request_id}")
    comments = walk(testapp, page, lambda page: [
        row.find_all("td")[3].get_text().strip()
        for row in page.html.select("#charges-table tbody tr")], "charges-page-next")

    assert comments == [f"hour {n}" for n in reversed(range(40))]  # newest row first


def test_status_counts_come_from_one_grouped_query(testapp, demo_cloud, pyramid_request,
                                                   db_engine):
    add_requests(pyramid_request, 20, statuses=tuple(itertools.islice(
        itertools.cycle(RequestStatus), 3)))
    log_in(testapp)
    testapp.get("/requests")

    with StatementCounter(db_engine) as counter:
        testapp.get("/requests")

    grouped = [statement for statement in counter.statements if "GROUP BY" in statement]
    assert len(grouped) == 1
