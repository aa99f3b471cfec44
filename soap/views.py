"""The SOAP views: spyne runs inside the Pyramid request (and so inside its transaction)."""

from __future__ import annotations

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
    """The endpoint's address for the WSDL: ``qrm.public_url`` when set (behind a proxy),
    otherwise the URL this request came to."""
    public_url = (request.registry.settings.get("qrm.public_url") or "").strip()
    if public_url:
        return request.route_url(request.matched_route.name, _app_url=public_url.rstrip("/"))
    return request.route_url(request.matched_route.name)
