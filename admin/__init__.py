"""The admin console: server-rendered pages for the cloud's administrators under ``/admin``.

A thin face: every page parses its input, calls the engine's and billing's services and
renders the result with the console's one layout. Translations use the ``admin`` domain.
"""

from __future__ import annotations

from typing import Any

from pyramid.events import BeforeRender

from engine.permissions import Permissions


def includeme(config: Any) -> None:
    from admin.predicates import AdminFacePredicate
    from admin.rendering import add_template_globals
    from admin.routes import includeme as add_routes

    prefix = "/" + (config.route_prefix or "").strip("/")
    config.registry["admin.prefix"] = prefix.rstrip("/") or ""
    config.add_translation_dirs("admin:locale")
    config.add_static_view("static", "admin:static", cache_max_age=3600,
                           permission=Permissions.PUBLIC)
    config.add_view_predicate("admin_face", AdminFacePredicate)
    config.add_subscriber(add_template_globals, BeforeRender)
    add_routes(config)
    config.scan("admin.views")
