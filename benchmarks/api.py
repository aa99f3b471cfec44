"""API calls per second against bare echo services on the same server set-up.

``api_soap_details`` / ``api_soap_kernels``: SOAP ``CloudRequestGetDetails`` and
``KernelGetList`` at the cloud-user endpoint (HTTP Basic), as a share of the calls per second
of a bare spyne echo service; ``api_xmlrpc_details``: XML-RPC ``CloudRequestGetDetails``
against a bare pyramid_rpc echo. Each server is the app (or the echo) under waitress on
127.0.0.1 in a thread of this process (ports from 18300), called one call after another over
one keep-alive connection. Goal: ≥ 70 % of the echo.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import threading
import time
import xmlrpc.client
from typing import Any

from benchmarks.__main__ import GOALS, UNITS, Figure

CALLS = 300
FIRST_PORT = 18300
SOAP_BODY = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
             'envelope/" xmlns:c="{ns}"><s:Body>{body}</s:Body></s:Envelope>')
for _name in ("api_soap_details", "api_soap_kernels", "api_xmlrpc_details"):
    GOALS[_name] = 70.0
    UNITS[_name] = "%"


class ShareFigure(Figure):
    """A figure whose goal is a lower bound (a share of the echo's rate, in %)."""

    @property
    def ok(self) -> bool:
        return self.value is not None and self.value >= GOALS[self.name]

    def line(self) -> str:
        value = self.text or ("-" if self.value is None else f"{self.value:.1f} %")
        goal = f">= {GOALS[self.name]:g} %"
        return f"{self.name:<26}  {value:<44}  {goal:<10}  {'ok' if self.ok else 'MISSED'}"


def free_port(start: int, first: int = FIRST_PORT) -> int:
    """The first port from ``start`` on that is free, within ``first`` … ``first`` + 99 (each
    benchmark keeps to its own hundred ports)."""
    for port in range(start, first + 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{first + 99}")


def serve(app: Any, port: int) -> Any:
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return server


def echo_spyne() -> Any:
    from spyne import Application, ServiceBase, Unicode, rpc
    from spyne.protocol.soap import Soap11
    from spyne.server.wsgi import WsgiApplication

    class EchoService(ServiceBase):
        @rpc(Unicode, _returns=Unicode)
        def Echo(ctx: Any, text: str) -> str:
            return text

    return WsgiApplication(Application([EchoService], tns="urn:echo", name="Echo",
                                       in_protocol=Soap11(validator="lxml"),
                                       out_protocol=Soap11()))


def echo_pyramid_rpc() -> Any:
    from pyramid.config import Configurator

    config = Configurator()
    config.include("pyramid_rpc.xmlrpc")
    config.add_xmlrpc_endpoint("echo", "/xmlrpc")
    config.add_xmlrpc_method(lambda request, text: text, endpoint="echo", method="Echo")
    return config.make_wsgi_app()


def rate(port: int, path: str, body: bytes, headers: dict[str, str]) -> float:
    """Calls per second of ``CALLS`` calls after 20 not counted."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = dict(headers, **{"Content-Type": "text/xml"})

    def call() -> None:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200 or b"Fault>" in payload[:400]:
            raise RuntimeError(f"{path}: {response.status} {payload[:300]!r}")

    for _ in range(20):
        call()
    started = time.perf_counter()
    for _ in range(CALLS):
        call()
    elapsed = time.perf_counter() - started
    connection.close()
    return CALLS / elapsed


def set_up(request: Any, password: str) -> int:
    """The demo user's password set, one request of it; returns the request's id."""
    from benchmarks.__main__ import submit
    from engine.cloud.services import CloudUserService
    from engine.security import Actor

    request.find_service(CloudUserService).set_password("demo", password,
                                                        actor=Actor.system("bench"))
    return submit(request)[0]


def api_figures(registry: Any) -> list[Figure]:
    """The three API figures against ``registry``'s database (the demo loaded)."""
    from pyramid.router import Router

    from engine.scheduler.runner import run_in_transaction

    password = "bench-api-password"  # noqa: S105 (the bench user's, set here)
    request_id = run_in_transaction(registry, set_up, password=password)
    token = base64.b64encode(f"demo:{password}".encode()).decode()
    auth = {"Authorization": f"Basic {token}"}
    # the servers' daemon threads end with the process (this runs last)
    ports: list[int] = []
    for app in (Router(registry), echo_spyne(), echo_pyramid_rpc()):
        ports.append(free_port(ports[-1] + 1 if ports else FIRST_PORT))
        serve(app, ports[-1])
    app_port, spyne_port, rpc_port = ports
    time.sleep(0.2)
    user_ns = "urn:qrmcloud:clouduser"
    echo_soap = rate(spyne_port, "/", SOAP_BODY.format(
        ns="urn:echo", body="<c:Echo><c:text>42</c:text></c:Echo>").encode(), {})
    details = rate(app_port, "/soap/clouduser", SOAP_BODY.format(
        ns=user_ns, body=f"<c:CloudRequestGetDetails><c:request_id>{request_id}"
        "</c:request_id></c:CloudRequestGetDetails>").encode(), auth)
    kernels = rate(app_port, "/soap/clouduser", SOAP_BODY.format(
        ns=user_ns, body="<c:KernelGetList/>").encode(), auth)
    echo_rpc = rate(rpc_port, "/xmlrpc", xmlrpc.client.dumps(("42",), "Echo").encode(), {})
    rpc_details = rate(app_port, "/xmlrpc/clouduser", xmlrpc.client.dumps(
        (request_id,), "CloudRequestGetDetails").encode(), auth)
    return [
        ShareFigure("api_soap_details", 100 * details / echo_soap,
                    f"{100 * details / echo_soap:.1f} % ({details:.0f}/s vs echo "
                    f"{echo_soap:.0f}/s)"),
        ShareFigure("api_soap_kernels", 100 * kernels / echo_soap,
                    f"{100 * kernels / echo_soap:.1f} % ({kernels:.0f}/s vs echo "
                    f"{echo_soap:.0f}/s)"),
        ShareFigure("api_xmlrpc_details", 100 * rpc_details / echo_rpc,
                    f"{100 * rpc_details / echo_rpc:.1f} % ({rpc_details:.0f}/s vs echo "
                    f"{echo_rpc:.0f}/s)"),
    ]


def run(registry: Any) -> list[Figure]:
    """Print and return the API figures (``python -m benchmarks`` calls this last)."""
    figures = api_figures(registry)
    for figure in figures:
        print(figure.line(), flush=True)
    return figures


if __name__ == "__main__":
    import tempfile

    from benchmarks.__main__ import make_registry, migrate, prepare
    from engine.db import get_engine
    from engine.scheduler.runner import run_in_transaction

    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("QRM_BENCH_DATABASE_URL") or f"sqlite:///{folder}/api.sqlite"
        engine = get_engine({"sqlalchemy.url": url})
        migrate(engine, fresh=not url.startswith("sqlite"))
        engine.dispose()
        bench_registry = make_registry(url, os.path.join(folder, "sim.sqlite"), kick="inline")
        run_in_transaction(bench_registry, prepare)
        results = run(bench_registry)
    os._exit(0 if all(figure.ok for figure in results) else 1)
