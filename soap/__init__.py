"""The cloud APIs for CRM and billing systems: SOAP (spyne) and XML-RPC (pyramid_rpc), two
endpoints each (cloud admin, cloud user), all built from ``soap.operations``."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    from pyramid_rpc.xmlrpc import XMLRPCRenderer

    from engine.permissions import Permissions
    from soap.endpoint import SoapEndpoint
    from soap.routes import SOAP_ROUTES, XMLRPC_ROUTES
    from soap.views import ENDPOINTS_KEY, soap_view
    from soap.xmlrpc import SafeEndpointPredicate, add_methods

    config.include("pyramid_rpc.xmlrpc")
    # These two replace pyramid_rpc's own registrations (the including package wins):
    # nil is a valid result, and a body with a DTD is refused before it is parsed.
    config.add_renderer("xmlrpc", XMLRPCRenderer(allow_none=True))
    config.add_route_predicate("xmlrpc_endpoint", SafeEndpointPredicate)
    config.include("soap.routes")
    config.add_translation_dirs("soap:locale")
    # every call carries its own credentials: no browser session on these paths
    for prefix in ("/soap/", "/xmlrpc/"):
        config.add_stateless_path_prefix(prefix)

    config.registry[ENDPOINTS_KEY] = {name: SoapEndpoint(role)
                                      for name, (role, _path) in SOAP_ROUTES.items()}
    for name in SOAP_ROUTES:
        # each call authenticates itself, so the view is public and has no CSRF token
        config.add_view(soap_view, route_name=name, permission=Permissions.PUBLIC,
                        require_csrf=False)
    for name, (role, _path) in XMLRPC_ROUTES.items():
        add_methods(config, name, role)
