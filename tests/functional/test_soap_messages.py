"""The API faces' own messages: integers out of the contract's 32 bits are answered with the
range (in English; the catalogs have German too), and PHP's empty string stands for nil in a
nillable XML-RPC parameter."""

from __future__ import annotations

import base64
import pathlib
import re
import xmlrpc.client
from decimal import Decimal
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from lxml import etree

from soap.i18n import int_range_message
from tests.conftest import new_request

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOCALE = ROOT / "soap" / "locale"
RANGE = "must be a whole number from -2147483648 to 2147483647 (32 bits)"


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def xmlrpc_call(testapp: Any, endpoint: str, body: bytes, password: str,
                name: str = "admin") -> Any:
    """The parsed answer of a raw XML-RPC call: the result, or the Fault."""
    response = testapp.post(f"/xmlrpc/{endpoint}", body, content_type="text/xml",
                            headers=basic(name, password))
    try:
        (result,), _method = xmlrpc.client.loads(response.body, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        return fault
    return result


def php_call(method: str, *params: str) -> bytes:
    """A call as PHP's xmlrpc extension writes it (ISO-8859-1, a PHP null as <string/>)."""
    values = "".join(f"<param><value>{param}</value></param>" for param in params)
    return (f'<?xml version="1.0" encoding="iso-8859-1"?><methodCall><methodName>{method}'
            f"</methodName><params>{values}</params></methodCall>").encode("iso-8859-1")


def test_php_empty_string_is_nil_for_the_nillable_request_id(testapp: Any,
                                                              demo_cloud: dict[str, Any]
                                                              ) -> None:
    """CloudPushTransaction without a request id, the way PHP sends it."""
    result = xmlrpc_call(testapp, "cloudadmin", php_call(
        "CloudPushTransaction", "<string>demo</string>", "<string/>",
        "<string>2.50</string>", "<string>PHP credit</string>", "<string/>"),
        demo_cloud["password"])
    assert not isinstance(result, xmlrpc.client.Fault), result
    assert (result["request_id"], result["cloud_user"]) == (None, "demo")
    assert Decimal(result["amount"]) == Decimal("2.5")
    # a blank string too; other (not nillable) int parameters still refuse an empty string
    result = xmlrpc_call(testapp, "cloudadmin", php_call(
        "CloudPushTransaction", "<string>demo</string>", "<string> </string>",
        "<string>1</string>", "<string>PHP credit</string>", "<string/>"),
        demo_cloud["password"])
    assert result["request_id"] is None
    fault = xmlrpc_call(testapp, "cloudadmin", php_call(
        "CloudRequestGetDetails", "<string/>"), demo_cloud["password"])
    assert (fault.faultCode, fault.faultString) == (4, f"request_id {RANGE}")


@pytest.mark.parametrize("value", ["<int>5000000000</int>", "<i8>-5000000000</i8>",
                                   "<string>5000000000</string>", "<string>12abc</string>",
                                   "<double>1.5</double>"])
def test_xmlrpc_int_out_of_range_names_the_range(testapp: Any, demo_cloud: dict[str, Any],
                                                 value: str) -> None:
    """A value past 32 bits (or no whole number) is answered with the range, fault 4."""
    fault = xmlrpc_call(testapp, "cloudadmin", php_call("CloudRequestGetDetails", value),
                        demo_cloud["password"])
    assert (fault.faultCode, fault.faultString) == (4, f"request_id {RANGE}")


def test_soap_int_out_of_range_names_the_range(testapp: Any,
                                               demo_cloud: dict[str, Any]) -> None:
    """The same sentence over SOAP, for a value the schema's xs:int refuses."""
    soap_env = "http://schemas.xmlsoap.org/soap/envelope/"
    body = (f'<s:Envelope xmlns:s="{soap_env}" xmlns:c="urn:qrmcloud:clouduser"><s:Body>'
            "<c:CloudRequestGetDetails><c:request_id>5000000000</c:request_id>"
            "</c:CloudRequestGetDetails></s:Body></s:Envelope>")
    response = testapp.post("/soap/clouduser", body.encode(), content_type="text/xml",
                            headers=basic("demo", demo_cloud["password"]), expect_errors=True)
    fault = etree.fromstring(response.body).find(f".//{{{soap_env}}}Fault")
    assert fault.findtext("faultcode").endswith("Client.ValidationError")
    assert fault.findtext("faultstring") == f"request_id {RANGE}"


def test_range_message_is_german_in_a_german_request(registry: Any) -> None:
    with new_request(registry) as request:
        request.locale_name = "de"
        assert request.localizer.translate(int_range_message("max")) == (
            "max muss eine ganze Zahl von -2147483648 bis 2147483647 sein (32 Bit)")


def read_catalog(path: pathlib.Path, locale: str | None = None) -> Any:
    with path.open("rb") as catalog_file:
        return read_po(catalog_file, locale=locale)


def test_template_holds_every_message_of_the_api_faces() -> None:
    with (ROOT / "soap" / "babel.cfg").open() as mapping_file:
        method_map, options_map = parse_mapping_cfg(mapping_file)
    in_sources = {message for _file, _line, message, _comments, _context
                  in extract_from_dir(str(ROOT / "soap"), method_map, options_map)}
    assert {m.id for m in read_catalog(LOCALE / "soap.pot") if m.id} == in_sources


@pytest.mark.parametrize("language", ["en", "de"])
def test_catalogs_hold_the_template_and_are_compiled(language: str) -> None:
    template = {m.id for m in read_catalog(LOCALE / "soap.pot") if m.id}
    catalog = read_catalog(LOCALE / language / "LC_MESSAGES" / "soap.po", language)
    with (LOCALE / language / "LC_MESSAGES" / "soap.mo").open("rb") as compiled_file:
        compiled = read_mo(compiled_file)
    assert {m.id for m in catalog if m.id} == template
    assert {m.id: m.string for m in compiled if m.id} == {
        m.id: m.string for m in catalog if m.id and m.string}
    if language == "de":
        assert [m.id for m in catalog if m.id and (not m.string or m.fuzzy)] == []
        for message in catalog:
            if message.id:
                assert set(re.findall(r"\$\{\w+\}", message.id)) == set(
                    re.findall(r"\$\{\w+\}", message.string)), message.id
