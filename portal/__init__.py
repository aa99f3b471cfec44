"""The cloud portal: what a cloud user sees at ``/`` (log in, register, request systems,
follow them, see the account). A thin face over the engine's and billing's services."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    from pyramid.events import BeforeRender

    from engine.permissions import Permissions
    from portal.i18n import add_template_globals
    from portal.routes import add_routes
    from portal.views.errors import add_error_views

    add_routes(config)
    config.add_static_view("portal-static", "portal:static", cache_max_age=3600,
                           permission=Permissions.PUBLIC)
    config.add_translation_dirs("portal:locale")
    config.add_subscriber(add_template_globals, BeforeRender)
    config.scan("portal.views")
    add_error_views(config)
