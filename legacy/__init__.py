"""The openQRM legacy API: openQRM's rpc/encoded SOAP cloud API (every operation takes one
comma-separated string ``mode,user,password,fields…``) at openQRM's own paths and WSDLs,
so that openQRM's integrations move over unchanged. A face of its own over the engine's
services; switched on by ``qrm.legacy_api = true``."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    from engine.permissions import Permissions
    from legacy.views import SERVICE_ROUTES, WSDL_ROUTES, service_view, wsdl_view

    # every call carries its own credentials: no browser session on these paths
    for prefix in ("/openqrm/", "/cloud-portal/user/soap/"):
        config.add_stateless_path_prefix(prefix)
    for name, (_endpoint, path) in WSDL_ROUTES.items():
        config.add_route(name, path)
        config.add_view(wsdl_view, route_name=name, permission=Permissions.PUBLIC,
                        request_method="GET")
    for name, (_endpoint, path) in SERVICE_ROUTES.items():
        config.add_route(name, path)
        # each call authenticates itself, so the view is public and has no CSRF token
        config.add_view(service_view, route_name=name, permission=Permissions.PUBLIC,
                        require_csrf=False)
