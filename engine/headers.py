"""Security headers on every response of the web faces (a tween).

A page answered within a logged-in browser session (admin console, the portal behind its
log-in) is also marked ``Cache-Control: no-store``: neither the browser's history nor a
shared cache keeps a copy once the session has ended. A response that states its own policy
(the static files: public, an hour) keeps it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: pages load only their own scripts, styles and images; no framing, no sniffing
HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def security_headers_tween_factory(handler: Callable[[Any], Any], registry: Any
                                   ) -> Callable[[Any], Any]:
    def tween(request: Any) -> Any:
        response = handler(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if "Cache-Control" not in response.headers and _logged_in(request):
            response.headers["Cache-Control"] = "no-store"
        return response

    return tween


def _logged_in(request: Any) -> bool:
    # only a session the request has loaded already (``request.session`` is reified): a
    # static file or an API call never reads the cookie for this
    session = request.__dict__.get("session")
    return bool(session is not None and session.get("actor"))


def includeme(config: Any) -> None:
    config.add_tween("engine.headers.security_headers_tween_factory")
