"""The SOAP API through zeep, loaded from the WSDL: the request path with each kind of
credentials, every fault of the contract, ownership, and that a fault changes nothing."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
import zeep
import zeep.helpers
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from engine.cloud.models import CloudRequest, CloudUser, CloudUserStatus, RequestStatus
from engine.cloud.services import CloudRequestService
from tests.interop.conftest import PASSWORD, create_user, read, submit_request
from tests.interop.scenario import in_hours, provision_arguments, walk_request_path

Client = Callable[..., zeep.Client]


def plain(value: Any) -> Any:
    """zeep's objects as plain values; the array wrappers (``{"int": [...]}``) as lists."""
    value = zeep.helpers.serialize_object(value, dict)
    if isinstance(value, dict):
        if set(value) in ({"int"}, {"string"}):
            return list(next(iter(value.values())) or [])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def caller(client: zeep.Client) -> Callable[..., Any]:
    return lambda operation, *args: plain(client.service[operation](*args))


def fault_of(call: Callable[[], Any]) -> tuple[str, str]:
    """The faultcode (without the envelope prefix) and faultstring of a call that fails."""
    with pytest.raises(zeep.exceptions.Fault) as info:
        call()
    return info.value.code.split(":", 1)[-1], info.value.message


@pytest.fixture
def soap(api_server: Any) -> Iterator[Client]:
    """``soap(endpoint, wsse=..., basic=(name, password))``: a zeep client of
    ``/soap/<endpoint>``; its connections are closed after the test."""
    sessions = []

    def client(endpoint: str, *, wsse: Any = None, basic: tuple[str, str] | None = None
               ) -> zeep.Client:
        session = requests.Session()
        session.auth = basic
        sessions.append(session)
        return zeep.Client(f"{api_server.url}/soap/{endpoint}?wsdl", wsse=wsse,
                           transport=Transport(session=session))

    yield client
    for session in sessions:
        session.close()


@pytest.fixture
def admin(soap: Client, api_server: Any) -> zeep.Client:
    return soap("cloudadmin", wsse=UsernameToken("admin", api_server.password))


@pytest.fixture
def as_user(soap: Client) -> Callable[[str], zeep.Client]:
    return lambda name: soap("clouduser", wsse=UsernameToken(name, PASSWORD))


@pytest.fixture(scope="module")
def alice(api_server: Any) -> dict[str, Any]:
    """A cloud user with credit and one active request (with its appliance)."""
    name = create_user(api_server, "alice", credit=500)
    request_id = submit_request(api_server, name, approve=True)
    appliance_ids = read(api_server, lambda request: [
        ca.id for ca in request.find_service(CloudRequestService).get(
            request_id, actor=_admin()).appliances])
    return {"name": name, "request_id": request_id, "appliance_id": appliance_ids[0]}


@pytest.fixture(scope="module")
def bob(api_server: Any) -> dict[str, Any]:
    """Another cloud user with credit and one new request."""
    name = create_user(api_server, "bob", credit=500)
    return {"name": name, "request_id": submit_request(api_server, name)}


def _admin() -> Any:
    from engine.security import Actor

    return Actor.system("tests")


def _request_status(api_server: Any, request_id: int) -> RequestStatus:
    return read(api_server, lambda request: request.dbsession.get(CloudRequest,
                                                                  request_id).status)


# -- the request path ---------------------------------------------------------------------------
def test_request_path_with_username_token_as_text(admin: zeep.Client,
                                                  as_user: Callable[[str], zeep.Client],
                                                  api_server: Any) -> None:
    """A UsernameToken with a PasswordText authenticates every step of the request path."""
    result = walk_request_path(caller(admin), lambda name, _password: caller(as_user(name)),
                               api_server.run_jobs, prefix="zeeptext")
    assert result["user"]("CloudUserGetDetails", "")["name"] == result["name"]


def test_request_path_with_http_basic(soap: Client, api_server: Any) -> None:
    """HTTP Basic credentials work instead of a WS-Security header."""
    admin = soap("cloudadmin", basic=("admin", api_server.password))
    walk_request_path(caller(admin), lambda name, password: caller(
        soap("clouduser", basic=(name, password))), api_server.run_jobs, prefix="zeepbasic")


def test_password_digest_token_authenticates(soap: Client, alice: dict[str, Any],
                                             api_server: Any) -> None:
    """A UsernameToken with a PasswordDigest authenticates the caller, on both endpoints."""
    client = soap("clouduser", wsse=UsernameToken(alice["name"], PASSWORD, use_digest=True))
    assert client.service.CloudUserGetDetails("").name == alice["name"]
    admin = soap("cloudadmin", wsse=UsernameToken("admin", api_server.password,
                                                  use_digest=True))
    assert alice["name"] in admin.service.CloudUserGetList()
    wrong = soap("clouduser", wsse=UsernameToken(alice["name"], "not-it", use_digest=True))
    code, _text = fault_of(lambda: wrong.service.CloudUserGetDetails(""))
    assert code == "Client.AuthenticationFailed"


def test_replayed_password_digest_is_refused(soap: Client, alice: dict[str, Any]) -> None:
    """The same digest token (same nonce) is accepted once only."""
    token = UsernameToken(alice["name"], PASSWORD, use_digest=True, nonce="replayed-nonce-1",
                          created=dt.datetime.now(dt.UTC))
    client = soap("clouduser", wsse=token)
    assert client.service.CloudUserGetDetails("").name == alice["name"]
    code, text = fault_of(lambda: client.service.CloudUserGetDetails(""))
    assert code == "Client.AuthenticationFailed"
    assert "nonce" in text


def test_username_token_created_over_five_minutes_ago_is_refused(
        soap: Client, alice: dict[str, Any]) -> None:
    """A token whose wsu:Created is older than five minutes is refused (replay window)."""
    created = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    client = soap("clouduser", wsse=UsernameToken(alice["name"], PASSWORD, created=created,
                                                  use_digest=True))
    code, text = fault_of(lambda: client.service.CloudUserGetCCUs(""))
    assert (code, "5 minutes" in text) == ("Client.AuthenticationFailed", True)


def test_digest_nonce_cannot_be_replayed(soap: Client, alice: dict[str, Any]) -> None:
    """The same digest nonce is accepted at most once."""
    token = UsernameToken(alice["name"], PASSWORD, use_digest=True, nonce=secrets.token_hex(8),
                          created=dt.datetime.now(dt.UTC))
    client = soap("clouduser", wsse=token)
    with contextlib.suppress(zeep.exceptions.Fault):  # until digests can be checked
        client.service.CloudUserGetCCUs("")
    code, text = fault_of(lambda: client.service.CloudUserGetCCUs(""))
    assert code == "Client.AuthenticationFailed"
    assert "nonce" in text


# -- every fault of the contract ------------------------------------------------------------------
def test_wrong_password_or_no_credentials_fail_authentication(
        soap: Client, alice: dict[str, Any]) -> None:
    """No credentials, a wrong password and an unknown name are AuthenticationFailed."""
    for wsse in (None, UsernameToken(alice["name"], "wrong-password"),
                 UsernameToken("nobody-here", PASSWORD)):
        client = soap("clouduser", wsse=wsse)
        code, _ = fault_of(lambda client=client: client.service.KernelGetList())
        assert code == "Client.AuthenticationFailed"


def test_disabled_account_fails_authentication(api_server: Any,
                                               as_user: Callable[[str], zeep.Client]) -> None:
    """A disabled cloud user cannot call the API, and is told no more than a wrong
    password is."""
    name = create_user(api_server, "disabled", status=CloudUserStatus.DISABLED)
    code, text = fault_of(lambda: as_user(name).service.CloudUserGetDetails(""))
    assert (code, text) == ("Client.AuthenticationFailed", "wrong user name or password")


def test_cloud_user_at_the_admin_endpoint_is_permission_denied(
        soap: Client, alice: dict[str, Any]) -> None:
    """Valid cloud-user credentials at the cloud-admin endpoint: the wrong role."""
    client = soap("cloudadmin", wsse=UsernameToken(alice["name"], PASSWORD))
    code, _ = fault_of(client.service.CloudUserGetList)
    assert code == "Client.PermissionDenied"
    client = soap("cloudadmin", wsse=UsernameToken(alice["name"], "wrong-password"))
    assert fault_of(client.service.CloudUserGetList)[0] == \
        "Client.AuthenticationFailed"


def test_cloud_user_cannot_name_another_user(as_user: Callable[[str], zeep.Client],
                                             alice: dict[str, Any], bob: dict[str, Any]
                                             ) -> None:
    """Passing someone else's name is PermissionDenied, naming the parameter."""
    client = as_user(alice["name"])
    for call in (lambda: client.service.CloudUserGetDetails(bob["name"]),
                 lambda: client.service.CloudUserGetTransactions(bob["name"], 5),
                 lambda: client.service.CloudRequestGetList(bob["name"]),
                 lambda: client.service.CloudProvision(bob["name"],
                                                       *provision_arguments(in_hours(3))[1:])):
        code, text = fault_of(call)
        assert (code, "cloud_user" in text) == ("Client.PermissionDenied", True)


def test_other_users_objects_are_not_found(api_server: Any,
                                           as_user: Callable[[str], zeep.Client],
                                           alice: dict[str, Any], bob: dict[str, Any]) -> None:
    """Someone else's request or appliance is answered like an id that does not exist, and
    stays as it was."""
    client = as_user(alice["name"])
    code, text = fault_of(lambda: client.service.CloudRequestGetDetails(bob["request_id"]))
    assert code == "Client.NotFound"
    assert text == f"request_id: no request {bob['request_id']}"
    assert fault_of(lambda: client.service.CloudRequestGetDetails(10**6)) == (
        "Client.NotFound", f"request_id: no request {10**6}")
    for call in (lambda: client.service.CloudDeProvision(bob["request_id"]),
                 lambda: client.service.CloudRequestExtend(bob["request_id"], in_hours(9))):
        assert fault_of(call)[0] == "Client.NotFound"
    assert _request_status(api_server, bob["request_id"]) is RequestStatus.NEW
    bobs = as_user(bob["name"])
    assert fault_of(lambda: bobs.service.CloudApplianceGetDetails(
        alice["appliance_id"]))[0] == "Client.NotFound"
    assert fault_of(lambda: bobs.service.CloudApplianceComment(
        alice["appliance_id"], "mine now"))[0] == "Client.NotFound"


def test_unknown_names_are_not_found(as_user: Callable[[str], zeep.Client],
                                     alice: dict[str, Any], admin: zeep.Client) -> None:
    """An unknown kernel, product or user is NotFound, naming the parameter."""
    arguments = list(provision_arguments(in_hours(3)))
    arguments[3] = "no-such-kernel"
    code, text = fault_of(lambda: as_user(alice["name"]).service.CloudProvision(*arguments))
    assert (code, "kernel" in text) == ("Client.NotFound", True)
    assert fault_of(lambda: admin.service.CloudUserGetDetails("nobody-here"))[0] == \
        "Client.NotFound"
    assert fault_of(lambda: admin.service.ProductGetDetails(10**6))[0] == "Client.NotFound"


def test_invalid_values_are_validation_errors_naming_the_parameter(
        as_user: Callable[[str], zeep.Client], alice: dict[str, Any]) -> None:
    """A value out of range is ValidationError whose text names the parameter."""
    client = as_user(alice["name"])
    arguments = list(provision_arguments(in_hours(3)))
    arguments[6] = 0  # cpus
    code, text = fault_of(lambda: client.service.CloudProvision(*arguments))
    assert (code, "cpus" in text) == ("Client.ValidationError", True)
    code, text = fault_of(lambda: client.service.CloudUserGetTransactions("", 0))
    assert (code, "max" in text) == ("Client.ValidationError", True)
    code, text = fault_of(lambda: client.service.ProductGetList("gpu"))
    assert (code, "product_type" in text) == ("Client.ValidationError", True)


def test_provision_over_the_limit_is_refused_and_leaves_no_request(
        admin: zeep.Client, as_user: Callable[[str], zeep.Client], api_server: Any) -> None:
    """LimitExceeded names the parameter, and the refused request is not stored."""
    name = create_user(api_server, "limited", credit=500)
    limits = admin.service.CloudUserSetLimits(name, 1, 0, 0, 0, 0)
    assert (limits.resource_limit, limits.memory_limit_mb) == (1, 0)
    client = as_user(name)
    code, text = fault_of(lambda: client.service.CloudProvision(
        *provision_arguments(in_hours(3), quantity=2)))
    assert (code, "quantity" in text) == ("Client.LimitExceeded", True)
    assert not client.service.CloudRequestGetList("")  # zeep reads an empty array as None


def test_provision_without_credit_is_insufficient_credit(
        as_user: Callable[[str], zeep.Client], api_server: Any) -> None:
    """A user without CCUs cannot provision; nothing is stored."""
    name = create_user(api_server, "broke")
    client = as_user(name)
    code, _ = fault_of(lambda: client.service.CloudProvision(
        *provision_arguments(in_hours(3))))
    assert code == "Client.InsufficientCredit"
    assert not client.service.CloudRequestGetList("")  # zeep reads an empty array as None


@pytest.mark.parametrize(("operation", "arguments", "sentence"), [
    ("CloudApplianceCommand", ("start",), "it cannot start now"),
    ("CloudApplianceResize", (4000,), "resizing appliance disks is not available yet"),
    ("CloudAppliancePrivate", ("my-image",), "private images of appliances is not available"),
])
def test_appliance_operations_the_engine_lacks_are_invalid_state(
        as_user: Callable[[str], zeep.Client], alice: dict[str, Any], operation: str,
        arguments: tuple[Any, ...], sentence: str) -> None:
    """Commands not possible now (or not yet offered) answer InvalidState with a clear
    sentence."""
    client = as_user(alice["name"])
    code, text = fault_of(lambda: client.service[operation](alice["appliance_id"], *arguments))
    assert code == "Client.InvalidState"
    assert sentence in text


def test_state_changes_not_allowed_are_invalid_state(admin: zeep.Client,
                                                     alice: dict[str, Any],
                                                     bob: dict[str, Any]) -> None:
    """Removing a user with open requests, or an active request, is InvalidState."""
    assert fault_of(lambda: admin.service.CloudUserRemove(bob["name"]))[0] == \
        "Client.InvalidState"
    assert fault_of(lambda: admin.service.CloudRequestRemove(alice["request_id"]))[0] == \
        "Client.InvalidState"
    code, text = fault_of(lambda: admin.service.CloudRequestSetState(alice["request_id"],
                                                                      "new"))
    assert (code, "state" in text) == ("Client.InvalidState", True)


def test_unexpected_error_is_server_error_with_a_logged_reference(
        as_user: Callable[[str], zeep.Client], alice: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Anything but a service error is Server.Error quoting a reference that the log holds;
    the reply carries no exception text or stack trace."""
    def broken(*_args: Any, **_kw: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(CloudRequestService, "kernels", broken)
    with caplog.at_level(logging.ERROR, logger="qrm.api"):
        code, text = fault_of(as_user(alice["name"]).service.KernelGetList)
    assert code == "Server.Error"
    assert "secret internals" not in text
    assert "Traceback" not in text
    reference = text.split("reference ", 1)[1].split(":", 1)[0]
    assert any(reference in record.getMessage() and record.exc_info
               for record in caplog.records)


def test_fault_rolls_back_what_the_call_wrote(api_server: Any,
                                              as_user: Callable[[str], zeep.Client],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that fails after a service wrote something leaves the database unchanged."""
    import soap.operations

    name = create_user(api_server, "rollback")
    monkeypatch.setattr(soap.operations, "user_struct", lambda *_a: 1 / 0)
    code, _ = fault_of(lambda: as_user(name).service.CloudUserSetDetails(
        "", "Changed", "", "", "", "Nowhere", "", ""))
    assert code == "Server.Error"
    stored = read(api_server, lambda request: request.dbsession.query(CloudUser)
                  .filter_by(name=name).one().lastname)
    assert stored == ""


# -- the admin operations -------------------------------------------------------------------
def test_admin_manages_users_products_and_the_ledger(admin: zeep.Client,
                                                     api_server: Any) -> None:
    """The admin-only operations answer with the contract's types."""
    name = create_user(api_server, "managed", credit=20)
    assert name in admin.service.CloudUserGetList()
    entry = admin.service.CloudPushTransaction(name, None, Decimal("-2.5"), "Correction",
                                               "by the CRM")
    assert (entry.amount, entry.balance, entry.cloud_user) == (Decimal("-2.5"),
                                                               Decimal("17.5"), name)
    assert admin.service.CloudUserGetCCUs(name) == Decimal("17.5")
    assert admin.service.CloudUserSetCCUs(name, Decimal(50), "") == Decimal(50)
    details = admin.service.CloudUserSetDetails(name, "Lovelace", "Ada", "", "",
                                                "London", "", "")
    assert (details.lastname, details.city, details.status) == ("Lovelace", "London",
                                                                "active")
    assert admin.service.CloudUserSetPassword(name, "another-password-2") is True
    product_ids = admin.service.ProductGetList("cpu")
    product = admin.service.ProductGetDetails(product_ids[0])
    assert (product.type, product.enabled) == ("cpu", True)
    assert isinstance(product.price, Decimal)
    assert admin.service.CloudUserRemove(name) is True
    assert name not in admin.service.CloudUserGetList()


def test_admin_denies_and_removes_a_request(admin: zeep.Client, api_server: Any) -> None:
    """CloudRequestSetState accepts the old verbs; a denied request can be removed."""
    name = create_user(api_server, "denied", credit=50)
    request_id = submit_request(api_server, name)
    assert request_id in admin.service.CloudRequestGetList("")
    assert admin.service.CloudRequestGetList(name) == [request_id]
    assert admin.service.CloudRequestSetState(request_id, "deny") == "denied"
    assert admin.service.CloudRequestRemove(request_id) is True
    assert fault_of(lambda: admin.service.CloudRequestGetDetails(request_id))[0] == \
        "Client.NotFound"


def test_user_extends_and_comments(as_user: Callable[[str], zeep.Client],
                                   alice: dict[str, Any]) -> None:
    """CloudRequestExtend moves the stop time; CloudApplianceComment sets the comment."""
    client = as_user(alice["name"])
    stop = in_hours(10)
    assert client.service.CloudRequestExtend(alice["request_id"], stop).stop == stop
    assert client.service.CloudApplianceComment(alice["appliance_id"], "web 1") is True
    assert client.service.CloudApplianceGetDetails(alice["appliance_id"]).comment == "web 1"
    assert client.service.CloudUserGetLimits("").resource_limit == 0
    assert client.service.ProductGetList("") != []
    assert "sim-vm" in client.service.VirtualizationGetList()
    assert (client.service.PuppetGetList() or []) == []  # the demo offers no puppet groups


def test_wsdl_address_is_the_url_the_wsdl_was_fetched_from(soap: Client,
                                                           api_server: Any) -> None:
    """zeep posts to the address the WSDL names, which is the server's own URL."""
    client = soap("clouduser")
    address = client.wsdl.services["CloudUserService"].ports["CloudUser"].binding_options[
        "address"]
    assert address == f"{api_server.url}/soap/clouduser"



def test_digest_nonce_of_a_faulted_call_cannot_be_replayed(soap: Client,
                                                           alice: dict[str, Any]) -> None:
    """A faulted call is rolled back, but its token's nonce stays used."""
    token = UsernameToken(alice["name"], PASSWORD, use_digest=True, nonce="faulted-nonce-1",
                          created=dt.datetime.now(dt.UTC))
    client = soap("clouduser", wsse=token)
    assert fault_of(lambda: client.service.CloudRequestGetDetails(999999))[0] == \
        "Client.NotFound"
    code, text = fault_of(lambda: client.service.CloudUserGetDetails(""))
    assert code == "Client.AuthenticationFailed"
    assert "nonce" in text
