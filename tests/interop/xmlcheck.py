"""Strict checks with ``xmllint`` (Debian ``libxml2-utils``): a WSDL against the structure of
WSDL 1.1, the schemas it embeds compiled on their own, and SOAP messages against the SOAP
1.1 envelope with their Body (and fault details) validated strictly against those embedded
schemas. The recorder keeps every SOAP request and response the interop server handles."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from lxml import etree

SCHEMAS = pathlib.Path(__file__).parent / "schemas"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def xmllint_binary() -> str:
    """The xmllint binary: skipped without it, except on CI (a failure there)."""
    binary = shutil.which("xmllint")
    if binary is None:
        message = "xmllint is missing (scripts/install-system-deps.sh installs libxml2-utils)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def xmllint(schema: pathlib.Path, documents: Iterable[pathlib.Path]) -> subprocess.CompletedProcess:
    """``xmllint --noout --schema schema documents…`` (never fetching anything)."""
    return subprocess.run([xmllint_binary(), "--noout", "--nonet", "--schema", str(schema),
                           *map(str, documents)], capture_output=True, text=True, timeout=120,
                          check=False)


def write_endpoint_schemas(wsdl: bytes, directory: pathlib.Path) -> pathlib.Path:
    """Write the schemas a WSDL embeds as files (each import pointing at its file) and a
    driver schema for its messages (the SOAP envelope plus those schemas); returns the
    driver's path."""
    directory.mkdir(parents=True, exist_ok=True)
    root = etree.fromstring(wsdl)
    schemas = root.findall(f"{{{WSDL_NS}}}types/{{{XSD_NS}}}schema")
    files = {schema.get("targetNamespace"): directory / f"schema{number}.xsd"
             for number, schema in enumerate(schemas)}
    for schema in schemas:
        copy = etree.fromstring(etree.tostring(schema))  # keeps the namespaces in scope
        for element in copy.findall(f"{{{XSD_NS}}}import"):
            element.set("schemaLocation", files[element.get("namespace")].name)
        files[schema.get("targetNamespace")].write_bytes(etree.tostring(copy))
    imports = "".join(f'<xs:import namespace="{namespace}" schemaLocation="{path.name}"/>'
                      for namespace, path in [(SOAP_ENV, SCHEMAS / "soap-envelope.xsd"),
                                              *files.items()])
    shutil.copy(SCHEMAS / "soap-envelope.xsd", directory / "soap-envelope.xsd")
    driver = directory / "messages.xsd"
    driver.write_text(f'<xs:schema xmlns:xs="{XSD_NS}">{imports}</xs:schema>')
    return driver


@dataclasses.dataclass
class Message:
    """One SOAP exchange the server handled: its path and the two documents."""

    path: str
    request: bytes
    status: str
    response: bytes


class Recorder:
    """WSGI middleware keeping every SOAP POST (request and response) it passes on."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith("/soap/"):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def record_start(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(status_line)
            return start_response(status_line, headers, exc_info)

        chunks = self.app(environ, record_start)
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        with self.lock:
            self.messages.append(Message(path, body, status[0] if status else "", payload))
        return [payload]


def check_messages(messages: list[Message], wsdls: dict[str, bytes],
                   directory: pathlib.Path) -> list[str]:
    """Validate every request and response against its endpoint's driver schema; returns
    xmllint's complaints (empty when all validate)."""
    problems = []
    directory.mkdir(parents=True, exist_ok=True)
    by_path: dict[str, list[pathlib.Path]] = {}
    for number, message in enumerate(messages):
        for kind, document in (("request", message.request), ("response", message.response)):
            name = message.path.strip('/').replace('/', '-')
            path = directory / f"{number:04d}-{name}-{kind}.xml"
            path.write_bytes(document)
            by_path.setdefault(message.path, []).append(path)
    for endpoint_path, documents in by_path.items():
        endpoint = endpoint_path.rstrip("/").rsplit("/", 1)[-1]
        driver = write_endpoint_schemas(wsdls[endpoint], directory / f"schemas-{endpoint}")
        completed = xmllint(driver, documents)
        lines = [line for line in (completed.stdout + completed.stderr).splitlines()
                 if not line.endswith(" validates")]
        if completed.returncode != 0 or lines:
            problems.extend(lines or [f"xmllint exited {completed.returncode}"])
    return problems
