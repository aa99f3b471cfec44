"""What the API faces refuse before any operation runs: XML with a DTD (entity expansion,
external entities), malformed or schema-invalid envelopes, stale or replayed tokens."""

from __future__ import annotations

import base64
import datetime as dt
import time
import xmlrpc.client
from typing import Any

import pytest
from lxml import etree
from zeep.wsse.username import UsernameToken

from engine.accounts.digest import password_digest, use_nonce
from engine.errors import AuthenticationFailed
from soap.credentials import (
    PASSWORD_TEXT,
    WSSE_NS,
    WSU_NS,
    check_created,
    parse_username_token,
)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
ENVELOPE = ('<?xml version="1.0"?>{doctype}<s:Envelope xmlns:s="' + SOAP_ENV + '" '
            'xmlns:c="urn:qrmcloud:clouduser"><s:Header>{header}</s:Header><s:Body>{body}'
            '</s:Body></s:Envelope>')
BILLION_LAUGHS = ('<!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10}">'
                            .replace("&lol0;", "&lol;") for n in range(1, 10))
                  + "]>")
EXTERNAL_ENTITY = '<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'


def soap_fault(response: Any) -> tuple[str, str]:
    document = etree.fromstring(response.body)
    fault = document.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    return fault.findtext("faultcode").split(":", 1)[1], fault.findtext("faultstring")


def post_soap(testapp: Any, body: str, *, doctype: str = "", header: str = "") -> Any:
    document = ENVELOPE.format(doctype=doctype, header=header, body=body)
    return testapp.post("/soap/clouduser", document.encode(), content_type="text/xml",
                        expect_errors=True)


def text_token(name: str, password: str, created: dt.datetime | None = None) -> str:
    created_element = (f'<u:Created xmlns:u="{WSU_NS}">{created:%Y-%m-%dT%H:%M:%SZ}'
                       "</u:Created>" if created else "")
    return (f'<w:Security xmlns:w="{WSSE_NS}"><w:UsernameToken><w:Username>{name}'
            f'</w:Username><w:Password Type="{PASSWORD_TEXT}">{password}</w:Password>'
            f"{created_element}</w:UsernameToken></w:Security>")


ATTACKS = pytest.mark.parametrize(("doctype", "entity"), [
    (BILLION_LAUGHS, "&lol9;"), (EXTERNAL_ENTITY, "&secret;")],
    ids=["billion-laughs", "external-entity"])


@ATTACKS
def test_soap_refuses_documents_with_a_dtd_without_expanding_them(testapp: Any, doctype: str,
                                                                  entity: str) -> None:
    """A DTD is refused before parsing: no entity is expanded and no file is read."""
    started = time.monotonic()
    response = post_soap(testapp, f"<c:ProductGetList><c:product_type>{entity}"
                                  "</c:product_type></c:ProductGetList>", doctype=doctype)
    assert time.monotonic() - started < 2
    code, text = soap_fault(response)
    assert (code, "DTD" in text) == ("Client.ValidationError", True)
    assert b"lollol" not in response.body
    assert b"root:" not in response.body


@ATTACKS
def test_xmlrpc_refuses_documents_with_a_dtd_without_expanding_them(testapp: Any, doctype: str,
                                                                    entity: str) -> None:
    """The XML-RPC endpoints refuse a DTD with fault 4 before pyramid_rpc parses the body."""
    body = (f'<?xml version="1.0"?>{doctype}<methodCall><methodName>ProductGetList'
            f"</methodName><params><param><value><string>{entity}</string></value></param>"
            "</params></methodCall>")
    response = testapp.post("/xmlrpc/clouduser", body.encode(), content_type="text/xml")
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(response.body)
    assert info.value.faultCode == 4
    assert "DTD" in info.value.faultString
    assert b"lollol" not in response.body
    assert b"root:" not in response.body


def test_schema_invalid_value_is_a_validation_error_naming_the_parameter(
        testapp: Any) -> None:
    """The lxml schema validation names the element that failed (an xs:int with the
    range)."""
    response = post_soap(testapp, "<c:CloudRequestGetDetails><c:request_id>many"
                                  "</c:request_id></c:CloudRequestGetDetails>")
    code, text = soap_fault(response)
    assert code == "Client.ValidationError"
    assert text == ("request_id must be a whole number from -2147483648 to 2147483647 "
                    "(32 bits)")
    response = post_soap(testapp, "<c:CloudRequestExtend><c:request_id>1</c:request_id>"
                                  "<c:stop>tomorrow</c:stop></c:CloudRequestExtend>")
    code, text = soap_fault(response)
    assert code == "Client.ValidationError"
    assert text.startswith("stop: 'tomorrow' is not a valid value")


def test_malformed_xml_and_unknown_operations_are_refused(testapp: Any) -> None:
    """A body that is not XML, or names no operation of the endpoint, is a fault."""
    response = testapp.post("/soap/clouduser", b"<not-closed>", content_type="text/xml",
                            expect_errors=True)
    assert soap_fault(response)[0] == "Client.ValidationError"
    code, text = soap_fault(post_soap(testapp, "<c:CloudUserCreate/>"))
    assert (code, text) == ("Client.ValidationError",
                            "CloudUserCreate: no such operation at this endpoint")
    assert testapp.get("/soap/clouduser", expect_errors=True).status_int == 405


def test_missing_credentials_and_stale_tokens_fail_authentication(testapp: Any) -> None:
    """No credentials, or a text token created more than five minutes ago, are refused."""
    code, text = soap_fault(post_soap(testapp, "<c:KernelGetList/>"))
    assert (code, "credentials are missing" in text) == ("Client.AuthenticationFailed", True)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    code, text = soap_fault(post_soap(testapp, "<c:KernelGetList/>",
                                      header=text_token("demo", "whatever", old)))
    assert (code, "5 minutes" in text) == ("Client.AuthenticationFailed", True)


def test_text_token_and_basic_credentials_authenticate(testapp: Any,
                                                       demo_cloud: dict[str, Any]) -> None:
    """The demo user gets its kernels with a text token and with HTTP Basic."""
    now = dt.datetime.now(dt.UTC)
    response = post_soap(testapp, "<c:KernelGetList/>",
                         header=text_token("demo", demo_cloud["password"], now))
    assert response.status_int == 200
    assert b">default</" in response.body
    basic = base64.b64encode(f"demo:{demo_cloud['password']}".encode()).decode()
    document = ENVELOPE.format(doctype="", header="", body="<c:CloudUserGetCCUs><c:cloud_user/>"
                                                          "</c:CloudUserGetCCUs>")
    response = testapp.post("/soap/clouduser", document.encode(), content_type="text/xml",
                            headers={"Authorization": f"Basic {basic}"})
    assert b"1000.0000" in response.body


def test_password_digest_matches_what_zeep_sends() -> None:
    """The server computes a UsernameToken digest exactly as a WS-Security client does."""
    token = UsernameToken("demo", "s3cret-password", use_digest=True, nonce="abcdefgh12345678",
                          created=dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC))
    envelope = etree.fromstring(f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Header/><s:Body/>'
                                "</s:Envelope>")
    envelope, _headers = token.apply(envelope, {})
    parsed = parse_username_token(envelope.find(f"{{{SOAP_ENV}}}Header"))
    assert parsed.digest
    assert parsed.username == "demo"
    assert password_digest(parsed.nonce, parsed.created, "s3cret-password") == parsed.password
    assert password_digest(parsed.nonce, parsed.created, "wrong") != parsed.password


def test_token_times_and_nonces_are_checked(pyramid_request: Any) -> None:
    """Created must lie within five minutes of now; a nonce counts once (in the database,
    so on every worker)."""
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    check_created("2026-11-24T11:56:00Z", now=now)
    for created in ("2026-11-24T11:54:59Z", "2026-11-24T12:06:00Z", "yesterday"):
        with pytest.raises(AuthenticationFailed):
            check_created(created, now=now)
    db = pyramid_request.dbsession
    use_nonce(db, "demo", b"n1")
    use_nonce(db, "other", b"n1")
    with pytest.raises(AuthenticationFailed):
        use_nonce(db, "demo", b"n1")


def test_spyne_parser_never_loads_dtds_resolves_entities_or_uses_the_network(
        registry: Any) -> None:
    """The lxml parser spyne builds for each endpoint is configured defensively."""
    for endpoint in registry["soap.endpoints"].values():
        options = endpoint.application.in_protocol.parser_kwargs
        assert (options["resolve_entities"], options["no_network"], options["load_dtd"],
                options["dtd_validation"], options["huge_tree"]) == (False, True, False,
                                                                      False, False)


def _basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def _soap_answer(testapp: Any, endpoint: str, name: str, password: str) -> tuple[str, str]:
    namespace = "urn:qrmcloud:" + endpoint
    document = ENVELOPE.format(doctype="", header="", body="<c:KernelGetList/>").replace(
        'xmlns:c="urn:qrmcloud:clouduser"', f'xmlns:c="{namespace}"')
    response = testapp.post(f"/soap/{endpoint}", document.encode(), content_type="text/xml",
                            headers=_basic(name, password), expect_errors=True)
    return soap_fault(response)


def _xmlrpc_answer(testapp: Any, endpoint: str, name: str, password: str) -> tuple[int, str]:
    body = xmlrpc.client.dumps((), "KernelGetList").encode()
    response = testapp.post(f"/xmlrpc/{endpoint}", body, content_type="text/xml",
                            headers=_basic(name, password))
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(response.body)
    return info.value.faultCode, info.value.faultString


@pytest.mark.parametrize("endpoint", ["clouduser", "cloudadmin"])
def test_a_disabled_account_is_answered_like_a_wrong_password(
        testapp: Any, demo_cloud: dict[str, Any], endpoint: str) -> None:
    """The right password of a disabled account gets the wrong password's fault and text over
    SOAP and XML-RPC (nothing tells the caller the account exists); the event log says why."""
    from sqlalchemy import select

    from engine.accounts.models import AdminUser
    from engine.cloud.models import CloudUser, CloudUserStatus
    from engine.events.models import Event
    from tests.conftest import commit

    request, password = demo_cloud["request"], demo_cloud["password"]
    if endpoint == "clouduser":
        name, role = "demo", "clouduser"
        request.dbsession.scalar(select(CloudUser).where(CloudUser.name == name)).status = \
            CloudUserStatus.DISABLED
    else:
        name, role = "admin", "admin"
        request.dbsession.scalar(select(AdminUser).where(AdminUser.name == name)).active = False
    commit(request)
    for answer in (_soap_answer, _xmlrpc_answer):
        wrong = answer(testapp, endpoint, name, "wrong-password")
        assert answer(testapp, endpoint, name, password) == wrong
        assert "disabled" not in str(wrong)
    reasons = request.dbsession.scalars(select(Event.message).where(
        Event.name == "login.failed", Event.actor == f"{role}:{name}")).all()
    assert sum("disabled" in reason for reason in reasons) == 2, reasons
