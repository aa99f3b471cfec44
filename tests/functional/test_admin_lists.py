"""The console's lists that can grow (requests, users, appliances, events, commands, outside
work, a detail page's ledger): keyset pages in order and complete, filters with their
counts, bad addresses refused naming the field, and a page's SQL statements that do not
grow with its rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from billing.models import LedgerEntry
from engine.cloud.models import CloudRequest, CloudUser, CloudUserStatus, RequestStatus
from engine.commands.models import Command, CommandState
from engine.datacenter.models import (
    Appliance,
    ApplianceState,
    CallState,
    DriverCall,
    Image,
    Kernel,
    VirtualizationType,
)
from engine.db import utcnow
from engine.events.models import Event, EventLevel
from tests.conftest import commit
from tests.functional.test_admin_resources import StatementCounter
from tests.functional.test_admin_support import admin_login, submit_demo_request


# -- rows made in bulk ---------------------------------------------------------------------
def add_requests(request: Any, count: int, statuses: tuple = tuple(RequestStatus)) -> None:
    """``count`` requests like one the demo user submitted, their statuses in turn."""
    model = request.dbsession.get(CloudRequest, submit_demo_request(request))
    columns = {column.key: getattr(model, column.key) for column in CloudRequest.__table__.c
               if column.key != "id"}
    request.dbsession.execute(insert(CloudRequest), [
        {**columns, "status": status, "next_step_at": None}
        for status, _n in zip(itertools.cycle(statuses), range(count), strict=False)])
    commit(request)


def add_users(request: Any, count: int) -> None:
    statuses = itertools.cycle(CloudUserStatus)
    request.dbsession.execute(insert(CloudUser), [
        {"name": f"user-{n:05d}", "password_hash": "x", "status": next(statuses),
         "email": f"user-{n}@example.org"} for n in range(count)])
    commit(request)


def _first_id(request: Any, model: Any) -> int:
    return request.dbsession.scalar(select(model.id).order_by(model.id).limit(1))


def add_appliances(request: Any, count: int) -> None:
    states = itertools.cycle(ApplianceState)
    refs = {"kernel_id": _first_id(request, Kernel), "image_id": _first_id(request, Image),
            "virtualization_type_id": _first_id(request, VirtualizationType)}
    request.dbsession.execute(insert(Appliance), [
        {**refs, "name": f"app-{n:05d}", "state": next(states)} for n in range(count)])
    commit(request)


def add_events(request: Any, count: int) -> None:
    levels, sources = itertools.cycle(EventLevel), itertools.cycle(("alpha", "beta", "gamma"))
    request.dbsession.execute(insert(Event), [
        {"level": next(levels), "source": next(sources), "name": "test.event",
         "message": f"event {n}", "actor": "system"} for n in range(count)])
    commit(request)


def add_commands(request: Any, count: int) -> None:
    states = itertools.cycle(CommandState)
    request.dbsession.execute(insert(Command), [
        {"argv": ["true", str(n)], "state": next(states), "executor": "local"}
        for n in range(count)])
    commit(request)


def add_calls(request: Any, count: int) -> None:
    states = itertools.cycle(CallState)
    request.dbsession.execute(insert(DriverCall), [
        {"key": f"test-call-{n}", "operation": "vm.create", "driver": "sim", "target": {},
         "arguments": {}, "state": next(states)} for n in range(count)])
    commit(request)


@dataclasses.dataclass
class ListCase:
    path: str
    table: str
    attribute: str
    add: Callable[[Any, int], None]
    #: the rows the list shows, in its order
    expected: Callable[[Any], list]
    #: a filter, the value chosen, its count from the database, and the rows it keeps
    filter: str
    value: str
    count: Callable[[Any], int]
    keeps: Callable[[Any, Any], bool]
    key: Callable[[str], Any] = int


def _scalars(query: Any) -> Callable[[Any], list]:
    return lambda request: list(request.dbsession.scalars(query))


def _count(query: Any) -> Callable[[Any], int]:
    return lambda request: request.dbsession.scalar(query)


CASES = {
    "requests": ListCase(
        "/admin/cloud/requests", "requests", "data-request", add_requests,
        _scalars(select(CloudRequest.id).order_by(CloudRequest.id.desc())),
        "status", "active",
        _count(select(func.count()).where(CloudRequest.status == RequestStatus.ACTIVE)),
        lambda row, value: row["data-status"] == value),
    "users": ListCase(
        "/admin/cloud/users", "users", "data-user", add_users,
        _scalars(select(CloudUser.name).where(CloudUser.password_hash != "!removed")
                 .order_by(CloudUser.name)),
        "status", "disabled",
        _count(select(func.count()).where(CloudUser.status == CloudUserStatus.DISABLED)),
        lambda row, value: value in row.get_text(), key=str),
    "appliances": ListCase(
        "/admin/appliances", "appliances", "data-appliance", add_appliances,
        _scalars(select(Appliance.name).order_by(Appliance.name)),
        "state", "active",
        _count(select(func.count()).where(Appliance.state == ApplianceState.ACTIVE)),
        lambda row, value: row["data-state"] == value, key=str),
    "events": ListCase(
        "/admin/events", "events", "data-event", add_events,
        _scalars(select(Event.id).order_by(Event.id.desc())),
        "source", "beta", _count(select(func.count()).where(Event.source == "beta")),
        lambda row, value: row.find_all("td")[2].get_text() == value),
    "commands": ListCase(
        "/admin/commands", "commands", "data-command", add_commands,
        _scalars(select(Command.id).order_by(Command.id.desc())),
        "state", "failed",
        _count(select(func.count()).where(Command.state == CommandState.FAILED)),
        lambda row, value: row["data-state"] == value),
    "calls": ListCase(
        "/admin/calls", "calls", "data-call", add_calls,
        _scalars(select(DriverCall.id).order_by(DriverCall.id.desc())),
        "state", "failed",
        _count(select(func.count()).where(DriverCall.state == CallState.FAILED)),
        lambda row, value: row["data-state"] == value),
}


def rows(page: Any, case: ListCase) -> list:
    return page.html.select(f"#{case.table} tr[{case.attribute}]")


def keys(page: Any, case: ListCase) -> list:
    return [case.key(row[case.attribute]) for row in rows(page, case)]


def filter_count(page: Any, href_part: str) -> int:
    """The count shown by the filter link whose address holds ``href_part``."""
    for link in page.html.select(".filters a"):
        if href_part in link["href"] and link.find(class_="count") is not None:
            return int(link.find(class_="count").get_text().replace(",", "").replace(".", ""))
    raise AssertionError(f"no filter link with {href_part}")


def the_url(path: str, page: Any, link_id: str) -> str:
    link = page.html.find(id=link_id)
    assert link is not None, f"no #{link_id} on {path}"
    return link["href"]


@pytest.fixture(params=list(CASES))
def case(request: Any) -> ListCase:
    return CASES[request.param]


def test_pages_list_every_row_once_in_order_forward_and_back(testapp, demo_cloud,
                                                             pyramid_request, case):
    case.add(pyramid_request, 70)
    expected = case.expected(pyramid_request)
    admin_login(testapp)

    pages, page = [], testapp.get(case.path, params={"size": "25"})
    while True:
        pages.append(keys(page, case))
        if page.html.find(id="page-next") is None:
            break
        page = testapp.get(the_url(case.path, page, "page-next"))

    assert [key for listed in pages for key in listed] == expected
    assert len(pages) >= 3
    assert [len(listed) for listed in pages[:-1]] == [25] * (len(pages) - 1)
    back = testapp.get(the_url(case.path, page, "page-previous"))
    assert keys(back, case) == pages[-2]
    first = testapp.get(the_url(case.path, back, "page-first"))
    assert keys(first, case) == pages[0]
    assert first.html.find(id="page-previous") is None


def test_a_filter_shows_its_count_and_lists_only_its_rows(testapp, demo_cloud,
                                                          pyramid_request, case):
    case.add(pyramid_request, 40)
    admin_login(testapp)
    wanted = case.count(pyramid_request)
    assert wanted > 0

    page = testapp.get(case.path)
    assert filter_count(page, f"{case.filter}={case.value}") == wanted

    filtered, listed = testapp.get(case.path, params={case.filter: case.value,
                                                      "size": "25"}), []
    while True:
        found = rows(filtered, case)
        assert all(case.keeps(row, case.value) for row in found)
        listed += found
        if filtered.html.find(id="page-next") is None:
            break
        next_url = the_url(case.path, filtered, "page-next")
        assert f"{case.filter}={case.value}" in next_url
        filtered = testapp.get(next_url)
    assert len(listed) == wanted


@pytest.mark.parametrize(("query", "field"), [
    ({"size": "7"}, "size"), ({"size": "lots"}, "size"), ({"after": "x"}, "after"),
    ({"before": "[1, 2]"}, "before"), ({"after": "[null]"}, "after"), ({"after": "[]"}, "after"),
    ({"after": "[1]", "before": "[9]"}, "before")])
def test_a_bad_page_address_is_refused_naming_the_field(testapp, demo_cloud, case, query,
                                                        field):
    admin_login(testapp)

    page = testapp.get(case.path, params=query, status=400)

    assert f"{field}:" in page.text


def test_a_bad_filter_is_refused_naming_it(testapp, demo_cloud, case):
    admin_login(testapp)

    page = testapp.get(case.path, params={case.filter: "no-such-thing"}, status=400)

    assert f"{case.filter}:" in page.text


def count_statements(testapp: Any, engine: Any, path: str, params: dict) -> int:
    """The list's own statements: the log-in's look-ups of the admin are the same on every
    page of the console and are left out."""
    with StatementCounter(engine) as counter:
        testapp.get(path, params=params)
    return len([statement for statement in counter.statements
                if "FROM admin_user" not in statement and "SAVEPOINT" not in statement])


def test_a_page_takes_the_same_statements_for_few_and_many_rows(testapp, demo_cloud,
                                                                pyramid_request, db_engine,
                                                                case):
    case.add(pyramid_request, 220)
    admin_login(testapp)
    testapp.get(case.path)  # the session and the log-in settle first
    second = testapp.get(case.path, params={"size": "25"}).html.find(id="page-next")["href"]

    few = count_statements(testapp, db_engine, case.path, {"size": "25"})
    many = count_statements(testapp, db_engine, case.path, {"size": "200"})
    paged = count_statements(testapp, db_engine, second, {})

    assert few == many, case.path
    assert paged <= many + 1  # paging on asks once whether a page lies before
    assert many <= 7


def test_a_users_page_shows_its_newest_requests_and_links_to_them_all(testapp, demo_cloud,
                                                                     pyramid_request):
    add_requests(pyramid_request, 40)
    demo = pyramid_request.dbsession.scalar(select(CloudUser).where(CloudUser.name == "demo"))
    admin_login(testapp)

    page = testapp.get(f"/admin/cloud/users/{demo.id}")
    shown = [int(row["data-request"])
             for row in page.html.select("#user-requests tr[data-request]")]
    newest = list(pyramid_request.dbsession.scalars(
        select(CloudRequest.id).where(CloudRequest.user_id == demo.id)
        .order_by(CloudRequest.id.desc()).limit(25)))
    assert shown == newest
    everything = testapp.get(page.html.find(id="all-user-requests")["href"])
    assert {row["data-request"] for row in rows(everything, CASES["requests"])} >= set(
        map(str, newest))
    assert filter_count(everything, "status=active") == pyramid_request.dbsession.scalar(
        select(func.count()).where(CloudRequest.user_id == demo.id,
                                   CloudRequest.status == RequestStatus.ACTIVE))


def test_a_request_list_of_an_unknown_user_is_refused_naming_it(testapp, demo_cloud):
    admin_login(testapp)

    page = testapp.get("/admin/cloud/requests", params={"user": "nobody-here"}, status=400)

    assert "user:" in page.text


def test_a_requests_ledger_is_paged_on_its_detail_page(testapp, demo_cloud, pyramid_request):
    request_id = submit_demo_request(pyramid_request)
    user_id = pyramid_request.dbsession.get(CloudRequest, request_id).user_id
    now = utcnow()
    pyramid_request.dbsession.execute(insert(LedgerEntry), [
        {"user_id": user_id, "request_id": request_id, "amount": Decimal("-1"),
         "balance_after": Decimal(-n), "reason": "charge", "comment": f"hour {n}",
         "actor": "system", "time": now - dt.timedelta(hours=n),
         "idempotency_key": f"test-{request_id}-{n}"} for n in range(60)])
    commit(pyramid_request)
    expected = list(pyramid_request.dbsession.scalars(
        select(LedgerEntry.id).where(LedgerEntry.request_id == request_id)
        .order_by(LedgerEntry.id.desc())))
    admin_login(testapp)

    page, listed = testapp.get(f"/admin/cloud/requests/{request_id}"), []
    while True:
        listed += [int(row["data-entry"]) for row in page.html.select("#ledger tr[data-entry]")]
        if page.html.find(id="ledger-page-next") is None:
            break
        page = testapp.get(page.html.find(id="ledger-page-next")["href"])

    assert listed == expected
    testapp.get(f"/admin/cloud/requests/{request_id}", params={"after": "nope"}, status=400)


def test_first_request_page_is_fast_at_a_hundred_thousand_requests(testapp, demo_cloud,
                                                                   pyramid_request):
    """100,000 requests: the first page shows 50 of them, with the status counts."""
    add_requests(pyramid_request, 100_000)
    admin_login(testapp)
    testapp.get("/admin/cloud/requests")

    timings = []
    for _attempt in range(3):
        started = time.perf_counter()
        page = testapp.get("/admin/cloud/requests")
        timings.append(time.perf_counter() - started)

    assert len(rows(page, CASES["requests"])) == 50
    assert filter_count(page, "status=new") >= 100_000 // len(RequestStatus)
    print(f"first request page at 100,000 requests: best {min(timings) * 1000:.0f} ms")
    # the goal is 200 ms on a quiet machine; the bound leaves room for a busy one
    assert min(timings) < 1.0, f"first page took {min(timings):.3f} s"
