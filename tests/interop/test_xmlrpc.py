"""The XML-RPC API through Python's ``xmlrpc.client`` with HTTP Basic credentials: the
request path, every fault code, ownership, and that a fault changes nothing."""

from __future__ import annotations

import datetime as dt
import logging
import xmlrpc.client
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from engine.cloud.models import CloudRequest, CloudUser, CloudUserStatus, RequestStatus
from engine.cloud.services import CloudRequestService
from tests.interop.conftest import PASSWORD, create_user, read, submit_request
from tests.interop.scenario import in_hours, provision_arguments, walk_request_path

Proxy = Callable[..., xmlrpc.client.ServerProxy]


@pytest.fixture
def rpc(api_server: Any) -> Iterator[Proxy]:
    """``rpc(endpoint, name, password)``: a ServerProxy of ``/xmlrpc/<endpoint>`` with HTTP
    Basic credentials (none if ``name`` is None); closed after the test."""
    proxies = []

    def proxy(endpoint: str, name: str | None, password: str = PASSWORD
              ) -> xmlrpc.client.ServerProxy:
        credentials = f"{quote(name, safe='')}:{quote(password, safe='')}@" if name else ""
        url = api_server.url.replace("http://", f"http://{credentials}")
        server = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/{endpoint}", allow_none=True)
        proxies.append(server)
        return server

    yield proxy
    for server in proxies:
        server("close")()


def wire(value: Any) -> Any:
    """Arguments as XML-RPC sends them: times as UTC dateTime.iso8601, decimals as text."""
    if isinstance(value, dt.datetime):
        return xmlrpc.client.DateTime(value.astimezone(dt.UTC))
    if isinstance(value, Decimal):
        return str(value)
    return value


def caller(server: xmlrpc.client.ServerProxy) -> Callable[..., Any]:
    return lambda operation, *args: getattr(server, operation)(*(wire(a) for a in args))


def fault_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(xmlrpc.client.Fault) as info:
        call()
    return info.value.faultCode, info.value.faultString


@pytest.fixture(scope="module")
def alice(api_server: Any) -> dict[str, Any]:
    """A cloud user with credit and one active request (with its appliance)."""
    name = create_user(api_server, "xalice", credit=500)
    request_id = submit_request(api_server, name, approve=True)
    appliance_id = read(api_server, lambda request: request.dbsession.get(
        CloudRequest, request_id).appliances[0].id)
    return {"name": name, "request_id": request_id, "appliance_id": appliance_id}


@pytest.fixture(scope="module")
def bob(api_server: Any) -> dict[str, Any]:
    name = create_user(api_server, "xbob", credit=500)
    return {"name": name, "request_id": submit_request(api_server, name)}


def test_request_path_over_xmlrpc(rpc: Proxy, api_server: Any) -> None:
    """xmlrpc.client walks the request path; structs carry the contract's members."""
    admin = rpc("cloudadmin", "admin", api_server.password)
    result = walk_request_path(caller(admin), lambda name, password: caller(
        rpc("clouduser", name, password)), api_server.run_jobs, prefix="xmlrpc")
    details = result["user"]("CloudRequestGetDetails", result["request_id"])
    created = dt.datetime.strptime(details["created"].value + "+0000", "%Y%m%dT%H:%M:%S%z")
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)  # UTC
    transactions = result["user"]("CloudUserGetTransactions", "", 5)
    assert all(isinstance(entry["amount"], str) for entry in transactions)
    assert isinstance(result["user"]("CloudUserGetCCUs", ""), str)


def test_times_are_utc_and_nil_stands_for_empty(rpc: Proxy, alice: dict[str, Any]) -> None:
    """A dateTime sent without a zone is UTC, and comes back as the same UTC time; an
    empty value travels as nil."""
    user = rpc("clouduser", alice["name"])
    stop = in_hours(7)
    details = user.CloudRequestExtend(alice["request_id"], wire(stop))
    assert details["stop"] == xmlrpc.client.DateTime(stop)
    assert user.CloudRequestExtend(alice["request_id"], stop.isoformat())["stop"] == \
        xmlrpc.client.DateTime(stop)
    appliance = user.CloudApplianceGetDetails(alice["appliance_id"])
    assert appliance["state"] == "active"
    assert set(appliance) == {"id", "request_id", "name", "state", "resource_id",
                              "resource_type", "internal_ip", "ip_addresses", "kernel",
                              "image", "disk_mb", "memory_mb", "cpus", "load", "uptime_s",
                              "comment"}


def test_every_fault_code(rpc: Proxy, api_server: Any, alice: dict[str, Any],
                          bob: dict[str, Any]) -> None:
    """Each fault of the contract arrives with its number and a sentence naming the
    parameter where one is concerned."""
    user = rpc("clouduser", alice["name"])
    admin = rpc("cloudadmin", "admin", api_server.password)
    assert fault_of(lambda: rpc("clouduser", None).KernelGetList())[0] == 1
    assert fault_of(lambda: rpc("clouduser", alice["name"], "wrong-pw").KernelGetList())[0] == 1
    assert fault_of(lambda: rpc("cloudadmin", alice["name"]).CloudUserGetList())[0] == 2
    code, text = fault_of(lambda: user.CloudUserGetDetails(bob["name"]))
    assert (code, "cloud_user" in text) == (2, True)
    code, text = fault_of(lambda: user.CloudRequestGetDetails(bob["request_id"]))
    assert (code, text) == (3, f"request_id: no request {bob['request_id']}")
    code, text = fault_of(lambda: user.CloudUserGetTransactions("", "many"))
    assert (code, text) == (4, "max must be a whole number from -2147483648 to 2147483647 "
                               "(32 bits)")
    arguments = [wire(value) for value in provision_arguments(in_hours(3))]
    arguments[5] = 0
    code, text = fault_of(lambda: user.CloudProvision(*arguments))
    assert (code, "memory_mb" in text) == (4, True)
    limited = create_user(api_server, "xlimited", credit=500)
    admin.CloudUserSetLimits(limited, 1, None, None, None, None)
    arguments = [wire(value) for value in provision_arguments(in_hours(3), quantity=2)]
    code, text = fault_of(lambda: rpc("clouduser", limited).CloudProvision(*arguments))
    assert (code, "quantity" in text) == (5, True)
    broke = create_user(api_server, "xbroke")
    arguments = [wire(value) for value in provision_arguments(in_hours(3))]
    assert fault_of(lambda: rpc("clouduser", broke).CloudProvision(*arguments))[0] == 6
    code, text = fault_of(lambda: user.CloudApplianceCommand(alice["appliance_id"], "start"))
    assert code == 7
    assert "cannot start now" in text


def test_unexpected_error_is_fault_100_with_a_logged_reference(
        rpc: Proxy, alice: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """An internal error is fault 100 quoting a reference the log holds, nothing more."""
    def broken(*_args: Any, **_kw: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(CloudRequestService, "images", broken)
    with caplog.at_level(logging.ERROR, logger="qrm.api"):
        code, text = fault_of(lambda: rpc("clouduser", alice["name"]).ImageGetList())
    assert code == 100
    assert "secret internals" not in text
    reference = text.split("reference ", 1)[1].split(":", 1)[0]
    assert any(reference in record.getMessage() for record in caplog.records)


def test_faulted_calls_change_nothing(rpc: Proxy, api_server: Any, bob: dict[str, Any],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused calls leave no trace: someone else's request stays, a call failing after a
    write is rolled back."""
    import soap.operations

    name = create_user(api_server, "xrollback", credit=50)
    user = rpc("clouduser", name)
    assert fault_of(lambda: user.CloudDeProvision(bob["request_id"]))[0] == 3
    assert read(api_server, lambda request: request.dbsession.get(
        CloudRequest, bob["request_id"]).status) is RequestStatus.NEW
    monkeypatch.setattr(soap.operations, "user_struct", lambda *_a: 1 / 0)
    code, _ = fault_of(lambda: user.CloudUserSetDetails("", "Changed", None, None, None,
                                                        None, None, None))
    assert code == 100
    assert read(api_server, lambda request: request.dbsession.query(CloudUser)
                .filter_by(name=name).one().lastname) == ""


def test_disabled_account_and_wrong_arity(rpc: Proxy, api_server: Any,
                                          alice: dict[str, Any]) -> None:
    """A disabled account fails authentication; a wrong number of parameters is a
    ValidationError listing them; an admin-only method is unknown at the user endpoint."""
    disabled = create_user(api_server, "xdisabled", status=CloudUserStatus.DISABLED)
    assert fault_of(lambda: rpc("clouduser", disabled).KernelGetList())[0] == 1
    user = rpc("clouduser", alice["name"])
    code, text = fault_of(user.CloudRequestGetDetails)
    assert (code, text) == (4, "CloudRequestGetDetails takes 1 parameter(s) (request_id), "
                               "0 given")
    assert fault_of(user.CloudUserGetList)[0] == 2  # admin-only: PermissionDenied


def test_admin_operations_over_xmlrpc(rpc: Proxy, api_server: Any) -> None:
    """Admin-only methods answer structs; decimals go both ways as strings."""
    admin = rpc("cloudadmin", "admin", api_server.password)
    name = "xcreated-" + dt.datetime.now(dt.UTC).strftime("%H%M%S%f")
    user_id = admin.CloudUserCreate(name, PASSWORD, f"{name}@example.com")
    assert admin.CloudUserGetDetails(name)["id"] == user_id
    assert admin.CloudUserSetCCUs(name, "10.5", "start") == "10.5000"
    entry = admin.CloudPushTransaction(name, None, "-0.5", "Correction", "")
    assert (entry["amount"], entry["balance"], entry["request_id"]) == ("-0.5000", "10.0000",
                                                                        None)
    limits = admin.CloudUserSetLimits(name, 2, 4096, None, None, None)
    assert limits == {"resource_limit": 2, "memory_limit_mb": 4096, "disk_limit_mb": 0,
                      "cpu_limit": 0, "network_limit": 0}
    assert admin.CloudUserGetLimits(name) == limits
    product = admin.ProductGetDetails(admin.ProductGetList("kernel")[0])
    assert product["type"] == "kernel"
    assert isinstance(product["price"], str)
    assert admin.CloudUserRemove(name) is True


def test_pause_resume_and_restart_over_xmlrpc(rpc: Proxy, api_server: Any) -> None:
    """CloudApplianceCommand pauses an appliance (not billed), resumes and restarts it."""
    name = create_user(api_server, "xpause", credit=500)
    request_id = submit_request(api_server, name, approve=True)
    user = rpc("clouduser", name)
    (appliance_id,) = user.CloudRequestGetDetails(request_id)["appliance_ids"]
    assert user.CloudApplianceCommand(appliance_id, "stop") == "paused"
    api_server.run_jobs()
    paused = user.CloudApplianceGetDetails(appliance_id)
    assert (paused["state"], paused["resource_id"]) == ("paused", None)
    assert user.CloudApplianceCommand(appliance_id, "start") == "provisioning"
    api_server.run_jobs()
    assert user.CloudApplianceGetDetails(appliance_id)["state"] == "active"
    assert user.CloudApplianceCommand(appliance_id, "restart") == "active"
    api_server.run_jobs()
    assert user.CloudApplianceGetDetails(appliance_id)["state"] == "active"


def test_admin_operation_at_the_user_endpoint_is_permission_denied(rpc: Proxy,
                                                                   alice: dict[str, Any]
                                                                   ) -> None:
    """An admin-only method called by a cloud user answers code 2; bad ints answer 4."""
    user = rpc("clouduser", alice["name"])
    code, text = fault_of(user.CloudUserGetList)
    assert code == 2
    assert "cloudadmin" in text
    assert fault_of(lambda: user.CloudRequestGetDetails("1_0"))[0] == 4
    assert fault_of(lambda: user.CloudRequestGetDetails(str(2**40)))[0] == 4
