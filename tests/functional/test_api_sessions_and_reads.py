"""API calls carry no browser session, and read-only calls on SQLite do not wait for the
write lock."""

from __future__ import annotations

import base64
import sqlite3
import time
import xmlrpc.client
from typing import Any

import pytest
import webtest
from pyramid.router import Router

from engine.cloud.demo import load_demo
from engine.scheduler.runner import run_in_transaction
from tests.conftest import DEMO_PASSWORD

ENVELOPE = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
            'envelope/" xmlns:c="urn:qrmcloud:clouduser"><s:Body>{body}</s:Body>'
            "</s:Envelope>")


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_api_responses_set_no_session_cookie_even_for_a_browser_session(
        testapp: Any, demo_cloud: dict[str, Any]) -> None:
    """A client that sends a portal session cookie gets no cookie back on /soap, /xmlrpc
    or the WSDL, and the session does not authenticate the call."""
    login = testapp.get("/login")
    form = login.forms[0] if login.forms else None
    if form is not None and "name" in form.fields:
        form["name"], form["password"] = "demo", demo_cloud["password"]
        form.submit()
    testapp.set_cookie("qrm_session", testapp.cookies.get("qrm_session", "x" * 40))
    call = ENVELOPE.format(body="<c:KernelGetList/>").encode()
    response = testapp.post("/soap/clouduser", call, content_type="text/xml",
                            headers=basic("demo", demo_cloud["password"]))
    assert response.status_int == 200
    assert "Set-Cookie" not in response.headers
    refused = testapp.post("/soap/clouduser", call, content_type="text/xml",
                           expect_errors=True)
    assert b"credentials are missing" in refused.body
    assert "Set-Cookie" not in refused.headers
    wsdl = testapp.get("/soap/clouduser?wsdl")
    assert "Set-Cookie" not in wsdl.headers
    body = xmlrpc.client.dumps((), "KernelGetList").encode()
    response = testapp.post("/xmlrpc/clouduser", body, content_type="text/xml",
                            headers=basic("demo", demo_cloud["password"]))
    assert "default" in xmlrpc.client.loads(response.body)[0][0]
    assert "Set-Cookie" not in response.headers


def test_read_only_calls_on_sqlite_succeed_while_another_connection_holds_the_write_lock(
        committing_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """SOAP and XML-RPC reads begin deferred: a writer holding the lock does not stop them."""
    engine = committing_registry["dbsession_factory"].kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("the write lock is SQLite's")
    monkeypatch.setenv("QRM_DEMO_PASSWORD", DEMO_PASSWORD)
    run_in_transaction(committing_registry, load_demo)
    app = webtest.TestApp(Router(committing_registry), extra_environ={"HTTP_HOST": "localhost"})
    headers = basic("demo", DEMO_PASSWORD)
    call = ENVELOPE.format(body="<c:KernelGetList/>").encode()
    app.post("/soap/clouduser", call, content_type="text/xml", headers=headers)  # warm
    writer = sqlite3.connect(engine.url.database, isolation_level=None, timeout=1)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE kernel SET comment = 'being changed'")
        started = time.monotonic()
        response = app.post("/soap/clouduser", call, content_type="text/xml",
                            headers=headers)
        assert b">default</" in response.body
        response = app.post("/xmlrpc/clouduser",
                            xmlrpc.client.dumps((), "KernelGetList").encode(),
                            content_type="text/xml", headers=headers)
        assert "default" in xmlrpc.client.loads(response.body)[0][0]
        assert time.monotonic() - started < 5
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_api_paths_get_a_stateless_session_and_browser_paths_a_real_one(registry: Any) -> None:
    """Nothing on /soap/ or /xmlrpc/ reads, reissues or sets the browser session cookie."""
    from pyramid.request import Request

    from engine.security import StatelessSession

    for path, stateless in (("/soap/clouduser", True), ("/xmlrpc/cloudadmin", True),
                            ("/login", False)):
        request = Request.blank(path, headers={"Cookie": "qrm_session=anything"})
        request.registry = registry
        assert isinstance(request.session, StatelessSession) is stateless, path
