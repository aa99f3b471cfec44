"""The WSDL documents of the two SOAP endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from soap.operations import OPERATIONS, operations_for

NS = {"wsdl": "http://schemas.xmlsoap.org/wsdl/",
      "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
      "xs": "http://www.w3.org/2001/XMLSchema"}
TYPES = {"CloudUser", "CloudUserLimits", "CloudRequest", "CloudAppliance", "Transaction",
         "Product"}
FAULTS = {"AuthenticationFailed", "PermissionDenied", "NotFound", "ValidationError",
          "LimitExceeded", "InsufficientCredit", "InvalidState", "ServerError"}


def wsdl(testapp: Any, endpoint: str, host: str = "localhost") -> Any:
    response = testapp.get(f"/soap/{endpoint}?wsdl", extra_environ={"HTTP_HOST": host})
    assert response.content_type == "text/xml"
    return etree.fromstring(response.body)


def operations(document: Any) -> list[str]:
    return [op.get("name") for op in document.findall("wsdl:portType/wsdl:operation", NS)]


@pytest.mark.parametrize(("endpoint", "namespace"), [
    ("cloudadmin", "urn:qrmcloud:cloudadmin"), ("clouduser", "urn:qrmcloud:clouduser")])
def test_wsdl_describes_every_operation_of_its_endpoint(testapp: Any, endpoint: str,
                                                        namespace: str) -> None:
    """Each WSDL has its own target namespace and all of its operations, documented."""
    document = wsdl(testapp, endpoint)
    assert document.get("targetNamespace") == namespace
    assert operations(document) == [op.name for op in operations_for(endpoint)]
    for operation in document.findall("wsdl:portType/wsdl:operation", NS):
        assert operation.findtext("wsdl:documentation", namespaces=NS)
        assert {fault.get("name") for fault in operation.findall("wsdl:fault", NS)} == FAULTS


def test_cloud_user_wsdl_leaves_out_the_admin_operations(testapp: Any) -> None:
    """The cloud-user endpoint offers everything but the admin-only operations."""
    names = set(operations(wsdl(testapp, "clouduser")))
    assert names == {op.name for op in OPERATIONS if not op.admin_only}
    assert "CloudUserCreate" not in names


def test_shared_types_live_in_the_types_namespace(testapp: Any) -> None:
    """The six complex types are declared once, in urn:qrmcloud:types, with the contract's
    members in order."""
    document = wsdl(testapp, "clouduser")
    schema = document.find("wsdl:types/xs:schema[@targetNamespace='urn:qrmcloud:types']", NS)
    declared = {element.get("name") for element in schema.findall("xs:complexType", NS)}
    assert declared >= TYPES
    members = [element.get("name") for element in schema.findall(
        "xs:complexType[@name='Transaction']/xs:sequence/xs:element", NS)]
    assert members == ["id", "time", "cloud_user", "request_id", "amount", "balance",
                       "reason", "comment"]
    types = {element.get("name"): element.get("type") for element in schema.findall(
        "xs:complexType[@name='CloudRequest']/xs:sequence/xs:element", NS)}
    assert (types["created"], types["memory_mb"]) == ("xs:dateTime", "xs:int")
    assert types["puppet_groups"].endswith(":stringArray")
    assert types["appliance_ids"].endswith(":intArray")


def test_parameters_are_documented(testapp: Any) -> None:
    """Every parameter element carries its sentence from the operation table."""
    document = wsdl(testapp, "cloudadmin")
    schema = document.find("wsdl:types/xs:schema[@targetNamespace='urn:qrmcloud:cloudadmin']",
                           NS)
    provision = schema.find("xs:complexType[@name='CloudProvision']", NS)
    names = [element.get("name") for element in provision.findall("xs:sequence/xs:element",
                                                                   NS)]
    assert names == ["cloud_user", "start", "stop", "kernel", "image", "memory_mb", "cpus",
                     "disk_mb", "network_cards", "quantity", "virtualization", "ha",
                     "puppet_groups"]
    for element in provision.findall("xs:sequence/xs:element", NS):
        assert element.findtext("xs:annotation/xs:documentation", namespaces=NS)


def address(testapp: Any, endpoint: str, host: str = "localhost") -> str:
    return wsdl(testapp, endpoint, host).find("wsdl:service/wsdl:port/soap:address",
                                              NS).get("location")


@pytest.mark.parametrize("host", ["localhost", "localhost:6543", "127.0.0.1:8080",
                                  "127.3.4.5", "[::1]:6543", "LOCALHOST"])
def test_address_follows_a_loopback_host(testapp: Any, host: str) -> None:
    """Without a public URL, a loopback Host is echoed: the developer's own machine."""
    assert address(testapp, "cloudadmin", host) == f"http://{host}/soap/cloudadmin"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8443", "10.0.0.5",
                                  "[2001:db8::1]:80", "localhost.evil.example",
                                  "127.0.0.1.evil.example"])
def test_forged_host_header_does_not_reach_the_address(testapp: Any, host: str) -> None:
    """Without a public URL, any other Host header (a forged ``evil.example``) gives the
    safe default address, never the client's host."""
    location = address(testapp, "clouduser", host)
    assert location == "http://localhost/soap/clouduser"
    assert "evil" not in location


def test_address_comes_from_the_portal_url_of_the_cloud_configuration(
        testapp: Any, demo_cloud: dict[str, Any]) -> None:
    """Without qrm.public_url, the cloud's external_portal_url gives the address."""
    from engine.cloud.config import CloudConfigService
    from engine.security import Actor
    from tests.conftest import commit

    request = demo_cloud["request"]
    request.find_service(CloudConfigService).set(
        "external_portal_url", "https://portal.example.net", actor=Actor.system("tests"))
    commit(request)
    assert address(testapp, "cloudadmin", "evil.example") == (
        "https://portal.example.net/soap/cloudadmin")


def test_address_comes_from_the_public_url_behind_a_proxy(
        testapp: Any, registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With qrm.public_url set, soap:address is built from it."""
    monkeypatch.setitem(registry.settings, "qrm.public_url", "https://cloud.example.com/qrm/")
    for host in ("localhost", "evil.example"):
        assert address(testapp, "clouduser", host) == (
            "https://cloud.example.com/qrm/soap/clouduser")


def test_only_the_contracts_nillable_members_may_be_nil(testapp: Any) -> None:
    """Generated clients see required members, nillable ones only where the contract has
    them, and no member that may be left out (a nillable one is always sent, nil when
    empty)."""
    schema = wsdl(testapp, "cloudadmin").find(
        "wsdl:types/xs:schema[@targetNamespace='urn:qrmcloud:types']", NS)
    nillable, optional = set(), set()
    for complex_type in schema.findall("xs:complexType", NS):
        if complex_type.get("name") not in TYPES:
            continue
        for element in complex_type.findall("xs:sequence/xs:element", NS):
            member = (complex_type.get("name"), element.get("name"))
            if element.get("nillable") == "true":
                nillable.add(member)
            if element.get("minOccurs", "1") != "1":
                optional.add(member)
    assert nillable == {("CloudRequest", "last_bill"), ("CloudAppliance", "resource_id"),
                        ("CloudAppliance", "load"), ("CloudAppliance", "uptime_s"),
                        ("Transaction", "request_id")}
    assert optional == set()


@pytest.mark.parametrize("endpoint", ["cloudadmin", "clouduser"])
def test_parameters_and_results_are_required_as_the_contract_says(testapp: Any,
                                                                  endpoint: str) -> None:
    """Every operation parameter and every ``…Result`` is required and not nillable; only
    CloudPushTransaction's request_id may be nil or left out."""
    schema = wsdl(testapp, endpoint).find(
        f"wsdl:types/xs:schema[@targetNamespace='urn:qrmcloud:{endpoint}']", NS)
    loose, checked = set(), 0
    for operation in operations_for(endpoint):
        for type_name in (operation.name, f"{operation.name}Response"):
            complex_type = schema.find(f"xs:complexType[@name='{type_name}']", NS)
            for element in complex_type.findall("xs:sequence/xs:element", NS):
                checked += 1
                if element.get("minOccurs", "1") != "1" or element.get("nillable") == "true":
                    loose.add((type_name, element.get("name"), element.get("minOccurs"),
                               element.get("nillable")))
    expected = ({("CloudPushTransaction", "request_id", "0", "true")}
                if endpoint == "cloudadmin" else set())
    assert loose == expected
    assert checked == sum(len(op.params) + 1 for op in operations_for(endpoint))


def test_the_types_schema_comes_before_the_schema_that_imports_it(testapp: Any) -> None:
    """Strict tools (wsimport, xmllint) resolve names in document order: the shared types
    are declared before the operations' schema refers to them."""
    schemas = wsdl(testapp, "clouduser").findall("wsdl:types/xs:schema", NS)
    assert [schema.get("targetNamespace") for schema in schemas] == [
        "urn:qrmcloud:types", "urn:qrmcloud:clouduser"]
    imports = [element.get("namespace") for element in schemas[1].findall("xs:import", NS)]
    assert imports == ["urn:qrmcloud:types"]


def test_each_use_of_an_array_type_is_documented_for_what_it_holds(testapp: Any) -> None:
    """The array types describe themselves; every element of an array type says what it
    holds (no "Puppet groups" on the kernels' list)."""
    document = wsdl(testapp, "cloudadmin")
    docs: dict[str, list[str]] = {}
    for element in document.iter(f"{{{NS['xs']}}}element"):
        kind = (element.get("type") or "").split(":")[-1]
        nested = element.getparent().tag != f"{{{NS['xs']}}}schema"
        if nested and kind in ("stringArray", "intArray", "TransactionArray"):
            text = element.findtext("xs:annotation/xs:documentation", namespaces=NS)
            assert text, element.get("name")
            docs.setdefault(element.get("name"), []).append(text)
    assert [text for text in docs["puppet_groups"] if "uppet" not in text] == []
    for name in ("KernelGetListResult", "ImageGetListResult", "ip_addresses",
                 "CloudUserGetListResult", "appliance_ids", "CloudRequestGetListResult"):
        assert all("uppet" not in text for text in docs[name]), (name, docs[name])
    assert "kernels" in docs["KernelGetListResult"][0]
    assert "IP addresses" in docs["ip_addresses"][0]
    types = document.find("wsdl:types/xs:schema[@targetNamespace='urn:qrmcloud:types']", NS)
    for name in ("stringArray", "intArray", "TransactionArray"):
        text = types.findtext(f"xs:complexType[@name='{name}']/xs:annotation/xs:documentation",
                              namespaces=NS)
        assert text.startswith("A list of"), (name, text)


def test_every_declared_fault_names_a_detail_element_with_code_and_parameter(
        testapp: Any) -> None:
    """Each wsdl:fault message's part is an element whose type carries the faultcode and
    the parameter (what the fault's detail sends)."""
    document = wsdl(testapp, "clouduser")
    schema = document.find("wsdl:types/xs:schema[@targetNamespace='urn:qrmcloud:clouduser']",
                           NS)
    for name in FAULTS:
        part = document.find(f"wsdl:message[@name='{name}']/wsdl:part", NS)
        assert part.get("element") == f"tns:{name}"
        assert schema.find(f"xs:element[@name='{name}']", NS).get("type") == f"tns:{name}"
        members = [(element.get("name"), element.get("minOccurs", "1")) for element in
                   schema.findall(f"xs:complexType[@name='{name}']/xs:sequence/xs:element",
                                  NS)]
        assert members == [("code", "1"), ("parameter", "0")]


def production_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    import plaster

    from tests.conftest import ROOT

    monkeypatch.setenv("QRM_DATABASE_URL", f"sqlite:///{tmp_path}/prod.sqlite")
    monkeypatch.setenv("QRM_SESSION_SECRET", "s" * 40)
    monkeypatch.setenv("QRM_SECRET_KEY", "k" * 40)
    monkeypatch.delenv("QRM_PUBLIC_URL", raising=False)
    return plaster.get_settings(str(ROOT / "production.ini"), "app:main")


def test_production_refuses_to_serve_without_a_public_url(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """production.ini (qrm.require_secrets) builds no web application without
    qrm.public_url, and says which setting to set."""
    from engine.app import main

    settings = production_settings(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match=r"qrm\.public_url is not set: set the environment "
                                          r"variable QRM_PUBLIC_URL"):
        main({}, **settings)


def test_production_serves_with_a_public_url(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Any) -> None:
    from engine.app import main

    settings = production_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QRM_PUBLIC_URL", "https://cloud.example.com")
    assert callable(main({}, **settings))
    monkeypatch.setenv("QRM_PUBLIC_URL", "cloud.example.com")
    with pytest.raises(ValueError, match=r"qrm\.public_url must start with http"):
        main({}, **settings)
