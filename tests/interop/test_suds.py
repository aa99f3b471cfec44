"""The SOAP API through suds (suds-community), loaded from the WSDL, with its own
WS-Security UsernameToken."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import suds.client
import suds.sudsobject
import suds.wsse
from suds import WebFault

from tests.interop.conftest import PASSWORD, create_user, submit_request
from tests.interop.scenario import walk_request_path


def client(api_server: Any, endpoint: str, name: str, password: str) -> suds.client.Client:
    security = suds.wsse.Security()
    security.tokens.append(suds.wsse.UsernameToken(name, password))
    return suds.client.Client(f"{api_server.url}/soap/{endpoint}?wsdl", wsse=security,
                              cache=None)


def plain(value: Any) -> Any:
    """suds objects as plain values; the array wrappers (``{"int": [...]}``) as lists."""
    if isinstance(value, suds.sudsobject.Object):
        fields = dict(suds.sudsobject.items(value))
        if set(fields) <= {"int", "string", "Transaction"} and len(fields) <= 1:
            return list(next(iter(fields.values()), []))
        return {key: plain(item) for key, item in fields.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, suds.sax.text.Text):
        return str(value)
    return value


def string_array(soap: suds.client.Client, items: list[str]) -> Any:
    """A stringArray object (suds leaves a plain empty list out, and the parameter is
    required)."""
    array = soap.factory.create("{urn:qrmcloud:types}stringArray")
    array.string = list(items)
    return array


def caller(soap: suds.client.Client) -> Callable[..., Any]:
    def call(operation: str, *args: Any) -> Any:
        args = tuple(string_array(soap, arg) if isinstance(arg, list) else arg for arg in args)
        result = plain(getattr(soap.service, operation)(*args))
        # suds returns an empty array as an empty object, and an int[] with its wrapper
        return [] if result == {} else result

    return call


def test_request_path_with_suds_username_token(api_server: Any) -> None:
    """suds walks the request path with a suds.wsse UsernameToken."""
    admin = client(api_server, "cloudadmin", "admin", api_server.password)
    walk_request_path(caller(admin), lambda name, password: caller(
        client(api_server, "clouduser", name, password)), api_server.run_jobs, prefix="suds")


def test_suds_reads_faults_and_decimals(api_server: Any) -> None:
    """Faults reach suds as WebFault with the contract's faultcode; decimals stay exact."""
    name = create_user(api_server, "sudsfault", credit=12)
    other = create_user(api_server, "sudsother", credit=50)
    request_id = submit_request(api_server, other)
    user = client(api_server, "clouduser", name, PASSWORD)
    assert Decimal(str(user.service.CloudUserGetCCUs(""))) == Decimal(12)
    with pytest.raises(WebFault) as info:
        user.service.CloudRequestGetDetails(request_id)
    assert info.value.fault.faultcode.endswith("Client.NotFound")
    with pytest.raises(WebFault) as info:
        client(api_server, "clouduser", name, "wrong-password").service.KernelGetList()
    assert info.value.fault.faultcode.endswith("Client.AuthenticationFailed")
