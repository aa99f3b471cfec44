"""The WSDLs and the SOAP messages checked with xmllint (Debian libxml2-utils): each WSDL
against the structure of WSDL 1.1 and SOAP binding, its embedded schemas compiled without a
warning, and messages against the envelope with their Body validated strictly against those
schemas (what the interop tests' autouse check does for every request and response)."""

from __future__ import annotations

import base64
import pathlib
import urllib.request
from typing import Any

import pytest
from lxml import etree

from tests.interop.conftest import PASSWORD, create_user, wsdls_of
from tests.interop.xmlcheck import SCHEMAS, check_messages, write_endpoint_schemas, xmllint

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(body: str, namespace: str = "urn:qrmcloud:clouduser") -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:c="{namespace}" xmlns:t="urn:qrmcloud:types">'
            f"<s:Body>{body}</s:Body></s:Envelope>").encode()


@pytest.mark.parametrize("endpoint", ["cloudadmin", "clouduser"])
def test_wsdl_validates_and_its_schemas_compile_without_warnings(
        api_server: Any, endpoint: str, tmp_path: pathlib.Path) -> None:
    """The live WSDL is a valid WSDL 1.1 document with a valid SOAP binding, and xmllint
    compiles its embedded schemas (in document order) without a word."""
    wsdl = wsdls_of(api_server)[endpoint]
    path = tmp_path / f"{endpoint}.wsdl"
    path.write_bytes(wsdl)
    completed = xmllint(SCHEMAS / "wsdl11.xsd", [path])
    assert (completed.returncode, completed.stderr.strip()) == (0, f"{path} validates")
    driver = write_endpoint_schemas(wsdl, tmp_path / "schemas")
    sample = tmp_path / "sample.xml"
    sample.write_bytes(envelope("<c:KernelGetList/>", f"urn:qrmcloud:{endpoint}"))
    completed = xmllint(driver, [sample])
    assert (completed.returncode, completed.stderr.strip()) == (0, f"{sample} validates")


@pytest.mark.parametrize(("body", "complaint"), [
    ("<c:CloudRequestGetDetails/>", "Missing child element(s)"),
    ("<c:CloudRequestGetDetails><c:request_id>x</c:request_id></c:CloudRequestGetDetails>",
     "not a valid value"),
    ("<c:CloudRequestGetDetailsResponse><c:CloudRequestGetDetailsResult><t:id>1</t:id>"
     "</c:CloudRequestGetDetailsResult></c:CloudRequestGetDetailsResponse>",
     "Missing child element(s)"),
    ("<s:Fault><faultcode>s:Client.NotFound</faultcode><faultstring>no</faultstring>"
     "<detail><c:NoSuchFault/></detail></s:Fault>", "No matching global element"),
    ("<s:Fault><faultcode>s:Client.NotFound</faultcode><faultstring>no</faultstring>"
     "<detail><c:NotFound><c:parameter>x</c:parameter></c:NotFound></detail></s:Fault>",
     "Expected is ( {urn:qrmcloud:clouduser}code )"),
], ids=["missing-parameter", "not-an-int", "incomplete-result", "undeclared-detail",
        "detail-without-code"])
def test_invalid_messages_are_caught(api_server: Any, tmp_path: pathlib.Path, body: str,
                                     complaint: str) -> None:
    """The message check is strict: what breaks the schema is reported."""
    message = type("Message", (), {"path": "/soap/clouduser", "request": envelope(body),
                                   "status": "200 OK", "response": envelope("")})
    problems = check_messages([message], wsdls_of(api_server), tmp_path)
    assert any(complaint in problem for problem in problems), problems


def test_every_soap_message_of_a_call_is_recorded(api_server: Any) -> None:
    """The server records each SOAP exchange (which the autouse check then validates)."""
    name = create_user(api_server, "xmllint")
    before = len(api_server.messages)
    request = urllib.request.Request(
        f"{api_server.url}/soap/clouduser", data=envelope(
            "<c:CloudUserGetDetails><c:cloud_user/></c:CloudUserGetDetails>"),
        headers={"Content-Type": "text/xml", "Authorization": "Basic " + base64.b64encode(
            f"{name}:{PASSWORD}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = etree.fromstring(response.read())
    assert answer.findtext(".//{urn:qrmcloud:types}name") == name
    (message,) = api_server.messages[before:]
    assert (message.path, message.status) == ("/soap/clouduser", "200 OK")
    assert b"CloudUserGetDetailsResponse" in message.response
