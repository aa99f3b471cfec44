"""Every route of the API face."""

from __future__ import annotations

from typing import Any

#: route name -> (role, path)
SOAP_ROUTES = {
    "soap.cloudadmin": ("cloudadmin", "/soap/cloudadmin"),
    "soap.clouduser": ("clouduser", "/soap/clouduser"),
}
XMLRPC_ROUTES = {
    "xmlrpc.cloudadmin": ("cloudadmin", "/xmlrpc/cloudadmin"),
    "xmlrpc.clouduser": ("clouduser", "/xmlrpc/clouduser"),
}


def includeme(config: Any) -> None:
    for name, (_role, path) in SOAP_ROUTES.items():
        config.add_route(name, path)
    for name, (_role, path) in XMLRPC_ROUTES.items():
        # an XML-RPC endpoint is a route whose predicate parses the call (pyramid_rpc)
        config.add_xmlrpc_endpoint(name, path)
