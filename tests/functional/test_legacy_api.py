"""The openQRM legacy API: openQRM's WSDLs and service URLs, every operation with its field
count, date formats and result shapes, and every refusal answered as openQRM answered it
and written to the event log."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import webtest
from lxml import etree
from sqlalchemy import select

from billing.services import LedgerService
from engine.app import make_config
from engine.cloud.models import CloudRequest, CloudUser, CloudUserStatus, RequestStatus
from engine.cloud.services import CloudUserService
from engine.events.models import Event
from engine.security import Actor
from legacy.wire import EnvelopeError, parse_call
from tests.conftest import DEMO_PASSWORD, commit, run_jobs

ADMIN_URL = "/openqrm/base/plugins/cloud/soap/cloudadmin-soap.php"
USER_URL = "/cloud-portal/user/soap/clouduser-soap.php"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
PASSWORD = "legacy-password-1"
ADMIN = f"admin,admin,{DEMO_PASSWORD}"


@pytest.fixture(scope="module")
def app_config(app_settings: dict[str, Any], db_engine: Any) -> Any:
    """The app with the legacy API switched on."""
    config = make_config(dict(app_settings, **{"qrm.legacy_api": "true"}))
    config.commit()
    return config


@pytest.fixture(scope="module")
def wsgi_app(app_config: Any) -> Any:
    return app_config.make_wsgi_app()


# -- a small rpc/encoded client ---------------------------------------------------------------
def envelope(operation: str, symbol: str, *, version: str = "1.2", part: str = "symbol",
             namespace: str = "urn:localhost-cloud") -> bytes:
    env = SOAP12 if version == "1.2" else SOAP11
    root = etree.Element(f"{{{env}}}Envelope", nsmap={
        "env": env, "ns1": namespace, "xsd": "http://www.w3.org/2001/XMLSchema", "xsi": XSI})
    body = etree.SubElement(root, f"{{{env}}}Body")
    element = etree.SubElement(body, f"{{{namespace}}}{operation}")
    argument = etree.SubElement(element, part)
    argument.set(f"{{{XSI}}}type", "xsd:string")
    argument.text = symbol
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def decode(element: Any) -> Any:
    """A value as PHP's SoapClient reads it: by its xsi:type."""
    if element.get(f"{{{XSI}}}nil") == "true":
        return None
    kind = (element.get(f"{{{XSI}}}type") or "").split(":")[-1]
    if kind == "Map":
        return {decode(item.find("key")): decode(item.find("value")) for item in element}
    if kind == "Array":
        return [decode(item) for item in element]
    text = element.text or ""
    return int(text) if kind in ("int", "long") else Decimal(text) if kind == "decimal" \
        else text


def post(testapp: Any, url: str, body: bytes, *, version: str = "1.2",
         **kwargs: Any) -> Any:
    content_type = ("application/soap+xml; charset=utf-8" if version == "1.2"
                    else "text/xml; charset=utf-8")
    return testapp.post(url, body, content_type=content_type, expect_errors=True, **kwargs)


def call(testapp: Any, operation: str, symbol: str, *, url: str = ADMIN_URL,
         version: str = "1.2") -> Any:
    """The Result of one call (a fault fails the test)."""
    response = post(testapp, url, envelope(operation, symbol, version=version),
                    version=version)
    assert response.status_int == 200, response.body
    document = etree.fromstring(response.body)
    env = SOAP12 if version == "1.2" else SOAP11
    assert document.tag == f"{{{env}}}Envelope"
    answer = document.find(f"{{{env}}}Body/{{urn:localhost-cloud}}{operation}Response")
    assert answer is not None, response.body
    return decode(answer.find("Result"))


def fault(testapp: Any, operation: str, symbol: str, *, url: str = ADMIN_URL,
          version: str = "1.2") -> tuple[int, str, str]:
    """(HTTP status, code, text) of a call answered with a fault."""
    response = post(testapp, url, envelope(operation, symbol, version=version),
                    version=version)
    return fault_of(response, version)


def fault_of(response: Any, version: str = "1.2") -> tuple[int, str, str]:
    document = etree.fromstring(response.body)
    if version == "1.2":
        node = document.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
        return (response.status_int,
                node.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value").split(":")[-1],
                node.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text"))
    node = document.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    return (response.status_int, node.findtext("faultcode").split(":")[-1],
            node.findtext("faultstring"))


def refusals(request: Any) -> list[tuple[str, str]]:
    """The legacy API's refusals in the event log, oldest first: (actor, message)."""
    rows = request.dbsession.execute(select(Event.actor, Event.message).where(
        Event.name == "legacy.refused").order_by(Event.id)).all()
    return [tuple(row) for row in rows]


def last_refusal(request: Any) -> tuple[str, str]:
    return refusals(request)[-1]


@pytest.fixture
def cloud(demo_cloud: dict[str, Any], testapp: Any) -> dict[str, Any]:
    """The demo cloud, plus two cloud users made through the API: alice (500 CCUs) and bob,
    and a disabled carol."""
    request = demo_cloud["request"]
    ids = {}
    for name in ("alice", "bob", "carol"):
        ids[name] = call(testapp, "CloudUserCreate", f"{ADMIN},{name},{PASSWORD},"
                                                     f"{name}@example.com")
    assert call(testapp, "CloudUserSetCCUs", f"{ADMIN},alice,500") == 0
    assert call(testapp, "CloudUserSetCCUs", f"{ADMIN},bob,100") == 0
    request.find_service(CloudUserService).set_status(
        "carol", CloudUserStatus.DISABLED, actor=Actor.system("tests"))
    commit(request)
    return {"request": request, "ids": ids}


def assert_format(text: str, pattern: str) -> None:
    """``text`` is a time written as ``pattern`` (strptime's)."""
    assert dt.datetime.strptime(text, pattern).replace(tzinfo=dt.UTC)


def user(name: str, password: str = PASSWORD) -> str:
    return f"user,{name},{password}"


def when(hours: int) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
    return moment.strftime("%d-%m-%Y %H:%M")


def provision_string(credentials: str, owner: str, *, start: str | None = None,
                     stop: str | None = None) -> str:
    return (f"{credentials},{owner},{start or when(0)},{stop or when(5)},default,debian-12,"
            "512,1,5000,1,1,sim-vm,0,")


# -- the WSDLs and the setting ----------------------------------------------------------------
@pytest.mark.parametrize(("path", "service", "count"), [
    ("/openqrm/boot-service/cloudadmin.wdsl", ADMIN_URL, 31),
    ("/openqrm/boot-service/clouduser.wdsl", USER_URL, 23),
    (f"{ADMIN_URL}?wsdl", ADMIN_URL, 31),
    (f"{USER_URL}?wsdl", USER_URL, 23),
])
def test_wsdls_at_openqrms_paths(testapp: Any, path: str, service: str, count: int) -> None:
    """openQRM's WSDL: Cloud/CloudService/CloudPort/CloudBinding, rpc/encoded, one string
    part in and out, soapAction urn:localhost-cloud#Op, the service URL as address."""
    response = testapp.get(path)
    assert response.content_type == "text/xml"
    wsdl = etree.fromstring(response.body)
    assert (wsdl.get("name"), wsdl.get("targetNamespace")) == ("Cloud", "urn:localhost-cloud")
    operations = wsdl.findall(f"{{{WSDL_NS}}}portType/{{{WSDL_NS}}}operation")
    assert wsdl.find(f"{{{WSDL_NS}}}portType").get("name") == "CloudPortType"
    assert len(operations) == count
    binding = wsdl.find(f"{{{WSDL_NS}}}binding")
    assert binding.get("name") == "CloudBinding"
    assert binding.find(f"{{{WSDL_SOAP}}}binding").get("style") == "rpc"
    for operation in binding.findall(f"{{{WSDL_NS}}}operation"):
        name = operation.get("name")
        assert operation.find(f"{{{WSDL_SOAP}}}operation").get("soapAction") == \
            f"urn:localhost-cloud#{name}"
        body = operation.find(f"{{{WSDL_NS}}}input/{{{WSDL_SOAP}}}body")
        assert (body.get("use"), body.get("namespace")) == ("encoded", "urn:localhost-cloud")
    parts = {message.get("name"): [(part.get("name"), part.get("type")) for part in message]
             for message in wsdl.findall(f"{{{WSDL_NS}}}message")}
    assert parts["CloudRequestGetDetailsRequest"] == [("symbol", "xsd:string")]
    assert parts["KernelGetListRequest"] == [("Result", "xsd:string")]
    assert parts["CloudProvisionResponse"] == [("Result", "xsd:string")]
    port = wsdl.find(f"{{{WSDL_NS}}}service/{{{WSDL_NS}}}port")
    assert wsdl.find(f"{{{WSDL_NS}}}service").get("name") == "CloudService"
    assert port.get("name") == "CloudPort"
    assert port.find(f"{{{WSDL_SOAP}}}address").get("location") == f"http://localhost{service}"
    if count == 23:
        assert "CloudUserCreate" not in {operation.get("name") for operation in operations}


def test_a_forged_host_never_becomes_the_wsdl_address(testapp: Any) -> None:
    response = testapp.get("/openqrm/boot-service/clouduser.wdsl",
                           extra_environ={"HTTP_HOST": "evil.example"})
    assert b"evil.example" not in response.body


def test_the_legacy_api_is_off_unless_switched_on(app_settings: dict[str, Any],
                                                  connection: Any) -> None:
    """production.ini leaves it off; without the setting the paths do not exist."""
    config = make_config(dict(app_settings))
    config.commit()
    app = webtest.TestApp(config.make_wsgi_app(), extra_environ={"HTTP_HOST": "localhost"})
    assert app.get("/openqrm/boot-service/cloudadmin.wdsl", expect_errors=True
                   ).status_int == 404
    assert post(app, ADMIN_URL, envelope("KernelGetList", ADMIN)).status_int == 404


# -- every operation --------------------------------------------------------------------------
def test_user_operations(testapp: Any, cloud: dict[str, Any]) -> None:
    """The user-level operations in user mode: details, limits, transactions, lists."""
    alice = user("alice")
    details = call(testapp, "CloudUserGetDetails", f"{alice},alice", url=USER_URL)
    assert details == {"id": str(cloud["ids"]["alice"]), "name": "alice", "lastname": "alice",
                       "forename": "Cloud-User", "email": "alice@example.com",
                       "street": "na", "city": "na", "country": "na", "phone": "0",
                       "status": "1", "ccunits": "500"}
    assert call(testapp, "CloudUserGetCCUs", f"{alice},alice", url=USER_URL) == 500
    assert call(testapp, "CloudUserSetDetails",
                f"{alice},alice,Liddell,Alice,alice@example.org,Main Street 1,Oxford,UK,123",
                url=USER_URL) == 0
    details = call(testapp, "CloudUserGetDetails", f"{alice},alice", url=USER_URL)
    assert (details["lastname"], details["city"], details["email"]) == (
        "Liddell", "Oxford", "alice@example.org")
    assert call(testapp, "CloudUserGetLimits", f"{alice},alice", url=USER_URL) == {
        "resource_limit": "0", "memory_limit": "0", "disk_limit": "0", "cpu_limit": "0",
        "network_limit": "0"}
    transactions = call(testapp, "CloudUserGetTransactions", f"{alice},alice,10", url=USER_URL)
    assert len(transactions) == 1
    (row,) = transactions
    assert set(row) == {"id", "time", "charge", "balance", "reason", "comment"}
    assert (row["charge"], row["balance"]) == ("-500", "500")
    assert_format(row["time"], "%y/%m/%d %H:%M:%S")  # openQRM's transaction time
    assert "default" in call(testapp, "KernelGetList", alice, url=USER_URL)
    assert "debian-12" in call(testapp, "ImageGetList", alice, url=USER_URL)
    assert "sim-vm" in call(testapp, "VirtualizationGetList", alice, url=USER_URL)
    assert call(testapp, "PuppetGetList", alice, url=USER_URL) == []
    products = call(testapp, "ProductGetList", f"{alice},kernel", url=USER_URL)
    assert products
    assert all(isinstance(product, int) for product in products)
    product = call(testapp, "ProductGetDetails", f"{alice},{products[0]}", url=USER_URL)
    assert set(product) == {"id", "type", "sort_id", "quantity", "price", "name",
                            "description", "state"}
    assert (product["type"], product["state"]) == ("kernel", "1")
    assert call(testapp, "CloudUserSetPassword", f"{alice},alice,new-legacy-pw-1",
                url=USER_URL) == 0
    assert call(testapp, "CloudUserGetCCUs", "user,alice,new-legacy-pw-1,alice",
                url=USER_URL) == 500
    # the same operations over SOAP 1.1
    assert call(testapp, "CloudUserGetCCUs", "user,alice,new-legacy-pw-1,alice",
                url=USER_URL, version="1.1") == 500


def test_request_path(testapp: Any, cloud: dict[str, Any]) -> None:
    """Provision, list, details (openQRM's dates and names), approve, appliances, commands,
    extend, deprovision."""
    request = cloud["request"]
    alice = user("alice")
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    stop = start + dt.timedelta(hours=5)
    request_id = call(testapp, "CloudProvision", provision_string(
        alice, "alice", start=f"{start:%d-%m-%Y %H:%M}", stop=f"{stop:%d-%m-%Y %H:%M}"),
        url=USER_URL)
    assert isinstance(request_id, int)
    assert call(testapp, "CloudRequestGetList", f"{alice},alice", url=USER_URL) == [request_id]
    assert request_id in call(testapp, "CloudRequestGetList", f"{ADMIN},")
    details = call(testapp, "CloudRequestGetDetails", f"{alice},{request_id}", url=USER_URL)
    assert details["status"] == "new"
    assert details["start"] == f"{start:%d-%m-%Y %H-%M}"
    assert details["stop"] == f"{stop:%d-%m-%Y %H-%M}"
    assert_format(details["request_time"], "%d-%m-%Y %H-%M")
    assert (details["kernel_name"], details["image_name"], details["resource_type_req"]) == (
        "default", "debian-12", "sim-vm")
    assert (details["ram_req"], details["cpu_req"], details["disk_req"],
            details["network_req"], details["resource_quantity"], details["ha_req"]) == (
        "512", "1", "5000", "1", "1", "0")
    assert (details["appliance_id"], details["cloudappliance_id"], details["lastbill"]) == (
        "0", "", "")
    assert call(testapp, "CloudRequestSetState", f"{ADMIN},{request_id},approve") == 0
    commit(request)
    run_jobs(request.registry)
    details = call(testapp, "CloudRequestGetDetails", f"{ADMIN},{request_id}")
    assert details["status"] == "active"
    assert details["appliance_id"] != "0"
    assert_format(details["lastbill"], "%d-%m-%Y %H-%M")
    (appliance_id,) = call(testapp, "CloudApplianceGetList", f"{alice},alice", url=USER_URL)
    assert details["cloudappliance_id"] == str(appliance_id)
    appliance = call(testapp, "CloudApplianceGetDetails", f"{alice},{appliance_id}",
                     url=USER_URL)
    assert (appliance["cloud_appliance_state"], appliance["cloud_appliance_cr_id"]) == (
        "1", str(request_id))
    assert appliance["cloud_appliance_ip"].startswith("192.0.2.")
    # the appliance's image: its clone of the request's image
    assert appliance["image_name"].endswith("debian-12")
    assert appliance["kernel_name"] == "default"
    assert call(testapp, "CloudApplianceComment", f"{alice},{appliance_id},my web server",
                url=USER_URL) == 0
    assert call(testapp, "CloudApplianceGetDetails", f"{alice},{appliance_id}",
                url=USER_URL)["appliance_comment"] == "my web server"
    assert call(testapp, "CloudApplianceCommand", f"{alice},{appliance_id},noop",
                url=USER_URL) == 0
    assert call(testapp, "CloudApplianceCommand", f"{alice},{appliance_id},stop",
                url=USER_URL) == 0
    # not offered by the engine: answered 1 (openQRM's failure) and logged
    assert call(testapp, "CloudApplianceResize", f"{alice},{appliance_id},8000",
                url=USER_URL) == 1
    assert "not available" in last_refusal(request)[1]
    assert call(testapp, "CloudAppliancePrivate", f"{alice},{appliance_id}",
                url=USER_URL) == 1
    # bob cannot see or touch alice's appliance: null or 1, as openQRM answered, and logged
    bob = user("bob")
    assert call(testapp, "CloudApplianceGetDetails", f"{bob},{appliance_id}",
                url=USER_URL) is None
    assert call(testapp, "CloudApplianceCommand", f"{bob},{appliance_id},start",
                url=USER_URL) == 1
    assert call(testapp, "CloudApplianceComment", f"{bob},{appliance_id},mine now",
                url=USER_URL) == 1
    assert last_refusal(request) == (
        "clouduser:bob", f"legacy API CloudApplianceComment refused: appliance_id: no "
        f"appliance {appliance_id}")
    assert call(testapp, "CloudApplianceGetList", f"{bob},bob", url=USER_URL) == []
    new_stop = int((stop + dt.timedelta(hours=3)).timestamp())
    assert call(testapp, "CloudRequestExtend", f"{alice},{request_id},{new_stop}",
                url=USER_URL) == 0
    details = call(testapp, "CloudRequestGetDetails", f"{alice},{request_id}", url=USER_URL)
    assert details["stop"] == dt.datetime.fromtimestamp(new_stop, dt.UTC).strftime(
        "%d-%m-%Y %H-%M")
    assert call(testapp, "CloudDeProvision", f"{alice},{request_id}", url=USER_URL) == 0
    cloud_request = request.dbsession.get(CloudRequest, request_id,
                                          populate_existing=True)
    assert cloud_request.status is RequestStatus.DEPROVISION


def test_admin_operations(testapp: Any, cloud: dict[str, Any]) -> None:
    """The admin-only operations: user list, limits, CCUs (booked on the ledger), pushed
    transactions, state changes, removal of requests and users."""
    request = cloud["request"]
    assert {"alice", "bob", "carol", "demo"} <= set(call(testapp, "CloudUserGetList", ADMIN))
    assert call(testapp, "CloudUserSetLimits", f"{ADMIN},bob,2,2048,20000,4,2") == 0
    assert call(testapp, "CloudUserGetLimits", f"{ADMIN},bob") == {
        "resource_limit": "2", "memory_limit": "2048", "disk_limit": "20000",
        "cpu_limit": "4", "network_limit": "2"}
    assert call(testapp, "CloudUserSetCCUs", f"{ADMIN},bob,250.5") == 0
    assert call(testapp, "CloudUserGetCCUs", f"{ADMIN},bob") == Decimal("250.5")
    request_id = call(testapp, "CloudProvision", provision_string(ADMIN, "bob"))
    assert call(testapp, "CloudPushTransaction",
                f"{ADMIN},bob,{request_id},50,0,Support,phone support 1h") == 0
    bob = request.dbsession.scalar(select(CloudUser).where(CloudUser.name == "bob"))
    (entry, *_older) = request.find_service(LedgerService).transactions(bob, limit=5)
    assert (entry.amount, entry.reason, entry.request_id) == (Decimal(-50), "Support",
                                                              request_id)
    assert call(testapp, "CloudUserGetCCUs", f"{ADMIN},bob") == Decimal("200.5")
    # the engine's own states cannot be set; the admin's can
    assert call(testapp, "CloudRequestSetState", f"{ADMIN},{request_id},active") is None
    assert "cannot be set" in last_refusal(request)[1]
    assert call(testapp, "CloudRequestSetState", f"{ADMIN},{request_id},deny") == 0
    assert call(testapp, "CloudRequestGetDetails",
                f"{ADMIN},{request_id}")["status"] == "deny"
    # openQRM deprovisioned in any state (W-13); a denied request is refused: null, logged
    assert call(testapp, "CloudDeProvision", f"{ADMIN},{request_id}") is None
    assert "denied" in last_refusal(request)[1]
    # a request that was charged stays with the ledger; one that was not can go
    other = call(testapp, "CloudProvision", provision_string(ADMIN, "alice"))
    assert call(testapp, "CloudRequestRemove", f"{ADMIN},{other}") == 0
    assert call(testapp, "CloudRequestGetDetails", f"{ADMIN},{other}") is None
    # unknown users: 1, as openQRM answered
    for operation, fields in (("CloudUserRemove", ""), ("CloudUserSetCCUs", ",5"),
                              ("CloudUserSetLimits", ",1,1,1,1,1"),
                              ("CloudPushTransaction", ",,5,,Support,")):
        assert call(testapp, operation, f"{ADMIN},nobody{fields}") == 1, operation
        assert "nobody" in last_refusal(request)[1]
    assert call(testapp, "CloudUserCreate", f"{ADMIN},dave,{PASSWORD},dave@example.com") > 0
    assert call(testapp, "CloudUserRemove", f"{ADMIN},dave") == 0
    assert "dave" not in call(testapp, "CloudUserGetList", ADMIN)
    # a name that is taken: null and logged
    assert call(testapp, "CloudUserCreate", f"{ADMIN},alice,{PASSWORD},a@example.com") is None
    assert last_refusal(request) == (
        "admin:admin", "legacy API CloudUserCreate refused: cloud_user: the name 'alice' is taken")


# -- refusals ---------------------------------------------------------------------------------
def test_wrong_password_is_null_and_logged(testapp: Any, cloud: dict[str, Any]) -> None:
    request = cloud["request"]
    assert call(testapp, "CloudUserGetDetails", "user,alice,wrong-password,alice",
                url=USER_URL) is None
    assert last_refusal(request) == (
        "clouduser:alice",
        "legacy API CloudUserGetDetails refused: wrong user name or password")
    assert call(testapp, "CloudUserSetPassword", "user,alice,wrong-password,alice,xyz-pw-123",
                url=USER_URL) == 1  # the operations that answered 1 on failure still do
    assert call(testapp, "KernelGetList", "admin,admin,wrong-password") is None
    assert last_refusal(request) == (
        "admin:admin", "legacy API KernelGetList refused: wrong user name or password")


def test_disabled_user_is_refused(testapp: Any, cloud: dict[str, Any]) -> None:
    """openQRM let disabled users in (W-4); the answer is the wrong password's."""
    request = cloud["request"]
    assert call(testapp, "CloudUserGetCCUs", f"{user('carol')},carol", url=USER_URL) is None
    assert last_refusal(request) == (
        "clouduser:carol",
        "legacy API CloudUserGetCCUs refused: the account carol is disabled")
    assert call(testapp, "CloudProvision", provision_string(user("carol"), "carol"),
                url=USER_URL) is None
    assert not request.dbsession.scalars(select(CloudRequest).join(CloudUser).where(
        CloudUser.name == "carol")).all()


def test_admin_mode_needs_an_admin_account(testapp: Any, cloud: dict[str, Any]) -> None:
    """A cloud user's credentials in admin mode, admin mode at the user endpoint, and the
    admin-only operations in user mode are refused (W-3)."""
    request = cloud["request"]
    assert call(testapp, "CloudUserGetList", f"admin,alice,{PASSWORD}") is None
    assert last_refusal(request) == (
        "admin:alice", "legacy API CloudUserGetList refused: alice is a cloud user, not an "
        "admin: admin mode is for admin accounts only")
    assert call(testapp, "CloudRequestGetList", f"admin,alice,{PASSWORD},") is None
    assert call(testapp, "CloudRequestGetList", f"{ADMIN},", url=USER_URL) is None
    assert last_refusal(request) == (
        "admin:admin", "legacy API CloudRequestGetList refused: admin mode is not accepted "
        "at the cloud-user endpoint; use the cloud-admin endpoint")
    assert call(testapp, "CloudUserSetCCUs", f"{user('alice')},alice,100000") is None
    assert last_refusal(request) == (
        "clouduser:alice", "legacy API CloudUserSetCCUs refused: CloudUserSetCCUs is for "
        "admin mode only")
    assert call(testapp, "CloudUserGetCCUs", f"{ADMIN},alice") == 500
    # and the admin-only operations do not exist at the user endpoint
    status, code, text = fault(testapp, "CloudUserSetCCUs", f"{ADMIN},alice,1", url=USER_URL)
    assert (status, code, text) == (400, "Sender",
                                    "no operation CloudUserSetCCUs at this endpoint")


def test_someone_elses_request_and_account(testapp: Any, cloud: dict[str, Any]) -> None:
    """Ownership: bob sees, changes and tears down nothing of alice's."""
    request = cloud["request"]
    request_id = call(testapp, "CloudProvision", provision_string(user("alice"), "alice"),
                      url=USER_URL)
    bob = user("bob")
    tomorrow = int(dt.datetime.now(dt.UTC).timestamp()) + 86400
    for operation, fields in (("CloudRequestGetDetails", ""), ("CloudDeProvision", ""),
                              ("CloudRequestExtend", f",{tomorrow}")):
        assert call(testapp, operation, f"{bob},{request_id}{fields}", url=USER_URL) is None
        assert last_refusal(request) == (
            "clouduser:bob", f"legacy API {operation} refused: request_id: no request {request_id}")
    assert call(testapp, "CloudUserGetDetails", f"{bob},alice", url=USER_URL) is None
    assert last_refusal(request) == (
        "clouduser:bob", "legacy API CloudUserGetDetails refused: cloud_user: a cloud user "
        "may only act on its own account")
    assert call(testapp, "CloudRequestGetList", f"{bob},alice", url=USER_URL) is None
    assert call(testapp, "CloudProvision", provision_string(bob, "alice"),
                url=USER_URL) is None
    assert call(testapp, "CloudUserSetDetails", f"{bob},alice,X,,,,,,", url=USER_URL) == 1
    assert call(testapp, "CloudRequestGetDetails", f"{ADMIN},{request_id}")["status"] == "new"


@pytest.mark.parametrize(("operation", "symbol", "message"), [
    ("CloudUserGetCCUs", f"user,alice,{PASSWORD}",
     "CloudUserGetCCUs takes 4 comma-separated fields (mode,user,password,cloud_user), not 3"),
    ("CloudUserGetCCUs", f"user,alice,{PASSWORD},alice,x",
     "CloudUserGetCCUs takes 4 comma-separated fields (mode,user,password,cloud_user), not 5"),
    ("KernelGetList", f"root,alice,{PASSWORD}", "field 1 (mode) must be admin or user, not "
                                                "'root'"),
    ("KernelGetList", f"user,,{PASSWORD}", "field 2 (user) must not be empty"),
    ("CloudRequestGetDetails", f"user,alice,{PASSWORD},seven",
     "field 4 (cr_id) must be a whole number from 0 to 2147483647, not 'seven'"),
    ("CloudRequestGetDetails", f"user,alice,{PASSWORD},99999999999",
     "field 4 (cr_id) must be a whole number from 0 to 2147483647, not '99999999999'"),
    ("CloudProvision", f"user,alice,{PASSWORD},alice,2010-03-20 10:00,21-03-2010 10:00,"
                       "default,debian-12,512,1,5000,1,1,sim-vm,0,",
     "field 5 (start) must be a date dd-mm-yyyy HH:MM (UTC), not '2010-03-20 10:00'"),
    ("CloudProvision", f"user,alice,{PASSWORD},alice,20-03-2010 10:00,31-02-2010 10:00,"
                       "default,debian-12,512,1,5000,1,1,sim-vm,0,",
     "field 6 (stop) must be a date dd-mm-yyyy HH:MM (UTC), not '31-02-2010 10:00'"),
    ("CloudProvision", f"user,alice,{PASSWORD},alice,20-03-2010 10:00,21-03-2010 10:00,"
                       "default,debian-12,512,1,5000,1,1,sim-vm,yes,",
     "field 15 (ha) must be 0 or 1, not 'yes'"),
    ("CloudProvision", f"user,alice,{PASSWORD},alice,20-03-2010 10:00,21-03-2010 10:00,"
                       "default,debian-12,512,1,5000,1,1,sim-vm,0",
     "CloudProvision takes 16 comma-separated fields (mode,user,password,cloud_user,start,"
     "stop,kernel_name,image_name,ram_MB,cpus,disk_MB,nics,quantity,virtualization_name,ha,"
     "puppet_group), not 15"),
    ("CloudRequestExtend", f"user,alice,{PASSWORD},3,21-03-2010 10:00",
     "field 5 (new_stop_epoch) must be a Unix time (seconds since 1970), not "
     "'21-03-2010 10:00'"),
    ("CloudUserSetCCUs", f"{ADMIN},alice,lots",
     "field 5 (ccunits) must be a number (at most 15 digits, 4 decimals), not 'lots'"),
    ("CloudUserGetTransactions", f"user,alice,{PASSWORD},alice,",
     "field 5 (max) must not be empty"),
])
def test_malformed_strings_get_a_fault_naming_the_field(
        testapp: Any, cloud: dict[str, Any], operation: str, symbol: str, message: str) -> None:
    for version, expected in (("1.2", (400, "Sender")), ("1.1", (500, "Client"))):
        assert fault(testapp, operation, symbol, version=version) == (*expected, message)
    assert last_refusal(cloud["request"])[1] == f"legacy API {operation} refused: {message}"


def test_envelope_faults(testapp: Any, cloud: dict[str, Any]) -> None:
    """Not an envelope, a DTD, two parts, a part that is not a string, a wrong namespace."""
    assert fault_of(post(testapp, ADMIN_URL, b"<x/>"))[:2] == (500, "VersionMismatch")
    response = post(testapp, ADMIN_URL, b"<x/>", version="1.1")
    assert fault_of(response, "1.1")[:2] == (500, "VersionMismatch")
    laughs = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><env:Envelope '
              b'xmlns:env="' + SOAP12.encode() + b'"><env:Body/></env:Envelope>')
    assert "DTD" in fault_of(post(testapp, ADMIN_URL, laughs))[2]
    two = envelope("KernelGetList", ADMIN).replace(
        b"</ns1:KernelGetList>", b"<extra>1</extra></ns1:KernelGetList>")
    assert fault_of(post(testapp, ADMIN_URL, two))[2] == (
        "KernelGetList takes exactly one string part (the comma-separated fields)")
    typed = envelope("KernelGetList", ADMIN).replace(b'xsi:type="xsd:string"',
                                                     b'xsi:type="xsd:int"')
    assert fault_of(post(testapp, ADMIN_URL, typed))[2] == (
        "the part of KernelGetList must be an xsd:string, not xsd:int")
    other = envelope("KernelGetList", ADMIN, namespace="urn:elsewhere")
    assert fault_of(post(testapp, ADMIN_URL, other))[2] == (
        "KernelGetList belongs to the namespace urn:localhost-cloud, not urn:elsewhere")
    assert testapp.put(ADMIN_URL, b"", expect_errors=True).status_int == 405
    # (through the parser: WebOb spools a body this large to a temporary file)
    with pytest.raises(EnvelopeError, match=r"^the request is larger than 65536 bytes$"):
        parse_call(envelope("KernelGetList", ADMIN + "x" * 70000))


def test_http_login_must_match_or_authenticate(testapp: Any, cloud: dict[str, Any]) -> None:
    """openQRM's clients send their login as HTTP Basic too: the string's own credentials
    pass; other credentials must be valid at that endpoint, else 401 (and logged)."""
    body = envelope("CloudUserGetCCUs", f"{user('alice')},alice")
    testapp.authorization = ("Basic", ("alice", PASSWORD))
    assert post(testapp, USER_URL, body).status_int == 200
    testapp.authorization = ("Basic", ("bob", "not-bobs-password"))
    response = post(testapp, USER_URL, body)
    assert response.status_int == 401
    assert last_refusal(cloud["request"])[1] == (
        "legacy API CloudUserGetCCUs refused: HTTP login 'bob': wrong user name or password")
    testapp.authorization = None


def test_refused_calls_change_nothing(testapp: Any, cloud: dict[str, Any]) -> None:
    """A refusal rolls its call back: the bad e-mail after a valid one is not half-done."""
    assert call(testapp, "CloudUserSetDetails",
                f"{user('alice')},alice,NewName,,not-an-email,,,,", url=USER_URL) == 1
    details = call(testapp, "CloudUserGetDetails", f"{user('alice')},alice", url=USER_URL)
    assert details["lastname"] == "alice"
    assert "email" in last_refusal(cloud["request"])[1]


def test_ini_files_switch_it_off_in_production_and_on_in_development() -> None:
    import configparser
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    for name, expected in (("production.ini", "false"), ("development.ini", "true")):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(root / name)
        assert parser["app:main"]["qrm.legacy_api"] == expected, name
