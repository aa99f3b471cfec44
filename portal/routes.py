"""Every route of the portal."""

from __future__ import annotations

from typing import Any

#: (route name, pattern), in matching order
ROUTES: tuple[tuple[str, str], ...] = (
    ("portal.home", "/"),
    ("portal.login", "/login"),
    ("portal.logout", "/logout"),
    ("portal.register", "/register"),
    ("portal.language", "/language"),
    ("portal.requests", "/requests"),
    ("portal.requests.new", "/requests/new"),
    ("portal.requests.quote", "/requests/quote"),
    ("portal.requests.detail", r"/requests/{id:\d+}"),
    ("portal.requests.deprovision", r"/requests/{id:\d+}/deprovision"),
    ("portal.requests.extend", r"/requests/{id:\d+}/extend"),
    ("portal.appliances.command", r"/appliances/{id:\d+}/command"),
    ("portal.account", "/account"),
    ("portal.account.profile", "/account/profile"),
    ("portal.account.password", "/account/password"),
)

ROUTE_NAMES: tuple[str, ...] = tuple(name for name, _pattern in ROUTES)


def add_routes(config: Any) -> None:
    for name, pattern in ROUTES:
        config.add_route(name, pattern)
