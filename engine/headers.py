"""Security headers on every response of the web faces (a tween)."""

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
        return response

    return tween


def includeme(config: Any) -> None:
    config.add_tween("engine.headers.security_headers_tween_factory")
