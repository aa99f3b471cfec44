"""The boot face: what booting machines and their agents talk to over HTTP (``/boot/…``).

Machine endpoints: no browser session, no CSRF token; the agent authenticates its reports
with its resource's token. Views are thin over ``engine.boot``."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    config.include("boot.routes")
    config.scan("boot.views")
