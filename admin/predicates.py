"""A view predicate that scopes the console's forbidden, not-found and error views to the
console, so that the portal (mounted at ``/``) keeps its own."""

from __future__ import annotations

from typing import Any


def is_admin_request(request: Any) -> bool:
    """Whether ``request`` is addressed to the console: an ``admin.*`` route, or a path under
    the console's prefix (also when no route matched)."""
    route = getattr(request, "matched_route", None)
    if route is not None and route.name.startswith("admin."):
        return True
    prefix = request.registry.get("admin.prefix", "/admin")
    path = request.path_info or "/"
    return path == prefix or path.startswith(prefix + "/")


class AdminFacePredicate:
    def __init__(self, value: bool, config: Any) -> None:
        self.value = bool(value)

    def text(self) -> str:
        return f"admin_face = {self.value}"

    phash = text

    def __call__(self, context: Any, request: Any) -> bool:
        return is_admin_request(request) is self.value
