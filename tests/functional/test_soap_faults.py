"""What a SOAP fault carries: the contract's faultcode and sentence, and the ``<detail>``
element its ``wsdl:fault`` declaration names (so that generated clients raise the declared
fault type); and what results send for empty members."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
USER_NS = "urn:qrmcloud:clouduser"
ENVELOPE = (f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:c="{USER_NS}"><s:Body>{{body}}'
            "</s:Body></s:Envelope>")


def post(testapp: Any, body: str, *, password: str | None) -> Any:
    headers = {}
    if password is not None:
        basic = base64.b64encode(f"demo:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    return testapp.post("/soap/clouduser", ENVELOPE.format(body=body).encode(),
                        content_type="text/xml", headers=headers, expect_errors=True)


def fault(response: Any) -> tuple[str, Any]:
    """The faultcode (without prefix) and the fault's detail children."""
    assert response.status_int == 500
    document = etree.fromstring(response.body)
    element = document.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    detail = element.find("detail")
    assert detail is not None, response.body
    return element.findtext("faultcode").split(":", 1)[1], list(detail)


def declared_fault_elements(testapp: Any) -> set[str]:
    """The elements the cloud-user WSDL's fault messages name (``{ns}name``)."""
    document = etree.fromstring(testapp.get("/soap/clouduser?wsdl").body)
    wsdl = "http://schemas.xmlsoap.org/wsdl/"
    faults = {element.get("message").split(":", 1)[1]
              for element in document.iter(f"{{{wsdl}}}fault") if element.get("message")}
    elements = set()
    for message in document.findall(f"{{{wsdl}}}message"):
        if message.get("name") in faults:
            prefix, name = message.find(f"{{{wsdl}}}part").get("element").split(":", 1)
            elements.add(f"{{{message.nsmap[prefix]}}}{name}")
    return elements


@pytest.mark.parametrize(("body", "password", "expected"), [
    ("<c:CloudRequestGetDetails><c:request_id>999999</c:request_id>"
     "</c:CloudRequestGetDetails>", "demo", ("NotFound", "request_id")),
    ("<c:CloudUserGetTransactions><c:cloud_user/><c:max>0</c:max>"
     "</c:CloudUserGetTransactions>", "demo", ("ValidationError", "max")),
    ("<c:CloudRequestGetDetails><c:request_id>abc</c:request_id>"
     "</c:CloudRequestGetDetails>", "demo", ("ValidationError", "request_id")),
    ("<c:CloudRequestGetDetails/>", "demo", ("ValidationError", "request_id")),
    ("<c:CloudUserGetDetails><c:cloud_user>admin</c:cloud_user></c:CloudUserGetDetails>",
     "demo", ("PermissionDenied", "cloud_user")),
    ("<c:KernelGetList/>", "wrong", ("AuthenticationFailed", None)),
    ("<c:KernelGetList/>", None, ("AuthenticationFailed", None)),
], ids=["not-found", "out-of-range", "schema-type", "schema-missing", "permission",
        "wrong-password", "no-credentials"])
def test_faults_carry_their_declared_detail_element(
        testapp: Any, demo_cloud: dict[str, Any], body: str, password: str | None,
        expected: tuple[str, str | None]) -> None:
    """The detail holds the element the operation's wsdl:fault names, with the faultcode
    and the parameter concerned."""
    code, parameter = expected
    secret = demo_cloud["password"] if password == "demo" else password
    faultcode, detail = fault(post(testapp, body, password=secret))
    assert faultcode == f"Client.{code}"
    (element,) = detail
    assert element.tag == f"{{{USER_NS}}}{code}"
    assert element.tag in declared_fault_elements(testapp)
    assert element.findtext(f"{{{USER_NS}}}code") == f"Client.{code}"
    assert element.findtext(f"{{{USER_NS}}}parameter") == parameter


def test_missing_parameter_is_named_in_the_sentence(testapp: Any,
                                                     demo_cloud: dict[str, Any]) -> None:
    """A required parameter left out is a ValidationError naming it."""
    response = post(testapp, "<c:CloudRequestGetDetails/>", password=demo_cloud["password"])
    text = etree.fromstring(response.body).findtext(f".//{{{SOAP_ENV}}}Fault/faultstring")
    assert text == "request_id is required (missing in CloudRequestGetDetails)"


def test_nillable_members_are_sent_as_nil(testapp: Any, demo_cloud: dict[str, Any]) -> None:
    """A request never charged sends last_bill as nil (the member is always there), as
    docs/api.md says."""
    import datetime as dt

    stop = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    start = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    provision = post(testapp, (
        f"<c:CloudProvision><c:cloud_user/><c:start>{start}</c:start><c:stop>{stop}</c:stop>"
        "<c:kernel>default</c:kernel><c:image>debian-12</c:image>"
        "<c:memory_mb>512</c:memory_mb><c:cpus>1</c:cpus><c:disk_mb>2000</c:disk_mb>"
        "<c:network_cards>1</c:network_cards><c:quantity>1</c:quantity>"
        "<c:virtualization>sim-vm</c:virtualization><c:ha>false</c:ha><c:puppet_groups/>"
        "</c:CloudProvision>"), password=demo_cloud["password"])
    assert provision.status_int == 200, provision.body
    request_id = etree.fromstring(provision.body).findtext(
        f".//{{{USER_NS}}}CloudProvisionResult")
    details = post(testapp, f"<c:CloudRequestGetDetails><c:request_id>{request_id}"
                            "</c:request_id></c:CloudRequestGetDetails>",
                   password=demo_cloud["password"])
    result = etree.fromstring(details.body).find(
        f".//{{{USER_NS}}}CloudRequestGetDetailsResult")
    last_bill = result.find("{urn:qrmcloud:types}last_bill")
    assert last_bill is not None
    assert last_bill.get(XSI_NIL) == "true"
    # an empty array is an empty element, not a missing one
    puppet_groups = result.find("{urn:qrmcloud:types}puppet_groups")
    assert puppet_groups is not None
    assert len(puppet_groups) == 0


@pytest.mark.parametrize("namespace", ["http://www.w3.org/2003/05/soap-envelope",
                                       "urn:not-soap"], ids=["soap12", "other"])
def test_envelope_of_another_soap_version_is_a_version_mismatch_fault(
        testapp: Any, demo_cloud: dict[str, Any], namespace: str) -> None:
    """A SOAP 1.2 (or any non-1.1) envelope gets SOAP 1.1's VersionMismatch fault, with the
    security headers of every response, and nothing runs."""
    document = (f'<?xml version="1.0"?><e:Envelope xmlns:e="{namespace}" '
                f'xmlns:c="{USER_NS}"><e:Body><c:KernelGetList/></e:Body></e:Envelope>')
    basic = base64.b64encode(f"demo:{demo_cloud['password']}".encode()).decode()
    response = testapp.post("/soap/clouduser", document.encode(),
                            content_type="application/soap+xml; charset=utf-8",
                            headers={"Authorization": f"Basic {basic}"}, expect_errors=True)
    assert response.status_int == 500
    assert response.content_type == "text/xml"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    envelope = etree.fromstring(response.body)
    assert envelope.tag == f"{{{SOAP_ENV}}}Envelope"
    element = envelope.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    prefix, code = element.findtext("faultcode").split(":")
    assert (envelope.nsmap[prefix], code) == (SOAP_ENV, "VersionMismatch")
    assert "SOAP 1.1 only" in element.findtext("faultstring")
    assert b"default" not in response.body
