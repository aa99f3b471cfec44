"""The SOAP views: spyne runs inside the Pyramid request (and so inside its transaction)."""

from __future__ import annotations

import ipaddress
from typing import Any

from pyramid.httpexceptions import HTTPMethodNotAllowed
from pyramid.response import Response

from soap.endpoint import SoapEndpoint

#: registry key of the endpoints by route name
ENDPOINTS_KEY = "soap.endpoints"


def soap_view(request: Any) -> Response:
    """``GET ...?wsdl`` answers the WSDL, a POST is a SOAP call."""
    endpoint: SoapEndpoint = request.registry[ENDPOINTS_KEY][request.matched_route.name]
    if request.method == "POST":
        return endpoint.call(request)
    if request.method == "GET" and any(key.lower() == "wsdl" for key in request.GET):
        return Response(body=endpoint.wsdl(wsdl_location(request)),
                        content_type="text/xml", charset="utf-8")
    return HTTPMethodNotAllowed("POST a SOAP envelope here; GET ?wsdl for the WSDL",
                                headers={"Allow": "GET, POST"})


def wsdl_location(request: Any) -> str:
    """The endpoint's address for the WSDL.

    The configured public URL when there is one: ``qrm.public_url`` (behind a proxy), else
    the cloud's ``external_portal_url``. Without one, the URL this request came to, but only
    when its host is a loopback one (127.0.0.0/8, ::1, localhost): any other ``Host`` header
    is the client's word, and echoing it would let a forged one point generated clients at
    another server. Those get ``http://localhost:<the server's port>``."""
    name = request.matched_route.name
    public_url = configured_public_url(request)
    if public_url:
        return request.route_url(name, _app_url=public_url.rstrip("/"))
    if is_loopback_host(request.host):
        return request.route_url(name)
    port = str(request.environ.get("SERVER_PORT") or "")
    default_port = {"http": "80", "https": "443"}.get(request.scheme, "")
    suffix = f":{port}" if port and port != default_port else ""
    return request.route_url(name, _app_url=f"{request.scheme}://localhost{suffix}")


def configured_public_url(request: Any) -> str:
    """``qrm.public_url``, else the cloud configuration's ``external_portal_url``, else ""."""
    public_url = str(request.registry.settings.get("qrm.public_url") or "").strip()
    if public_url:
        return public_url
    from engine.cloud.config import CloudConfigService
    from engine.db import begin_for_reading

    begin_for_reading(request)  # (a WSDL fetch writes nothing)
    return str(request.find_service(CloudConfigService).get("external_portal_url")
               or "").strip()


def is_loopback_host(host: str) -> bool:
    """Whether a ``Host`` header (``name[:port]``, ``[v6]:port``) names this machine's
    loopback interface: 127.0.0.0/8, ::1 or localhost."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
