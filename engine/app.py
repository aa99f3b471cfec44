"""The application factory: the one ordered list of what makes up QRM Cloud."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from pyramid.config import Configurator
from pyramid.events import ApplicationCreated

from engine import clock
from engine.settings import as_bool, check_public_url, normalize_settings


def _include_if_present(config: Configurator, package: str, **kw: Any) -> None:
    # A face is a package of its own; a deployment may leave one out (an API-only node).
    if importlib.util.find_spec(package) is not None and hasattr(
        importlib.import_module(package), "includeme"
    ):
        config.include(package, **kw)


def make_config(settings: dict[str, Any]) -> Configurator:
    config = Configurator(settings=normalize_settings(settings))
    clock.use(clock.from_settings(config.registry.settings))  # the engine's one clock
    # -- infrastructure ---------------------------------------------------------------------
    config.include("pyramid_services")      # request.find_service
    config.include("pyramid_jinja2")        # templates of the faces
    config.include("engine.db")             # request.dbsession under pyramid_tm, retries
    config.include("engine.security")       # sessions, CSRF, the security policy
    config.include("engine.headers")        # CSP and friends on every response
    config.include("engine.i18n")           # locale negotiation, Babel, error catalogs
    config.include("engine.scheduler")      # job registry, after-commit kicks
    # -- the engine's services --------------------------------------------------------------
    config.include("engine.events")         # the event log
    config.include("engine.plugins")        # pluggy registry, plugin states, drivers
    config.include("engine.accounts")       # admin accounts, browser sessions
    config.include("engine.commands")       # the remote command queue
    config.include("engine.datacenter")     # resources, images, storage, appliances
    config.include("engine.monitoring")     # agent reports, health job
    config.include("engine.boot")           # boot decisions, kernel files, agent tokens
    config.include("engine.cloud")          # users, limits, products, requests + jobs
    config.include("engine.dhcp")           # DHCP configuration from resources + IP groups
    config.include("billing")               # prices, ledger, hourly charge job
    config.include("engine.views")          # /health
    # -- faces ------------------------------------------------------------------------------
    _include_if_present(config, "soap")                            # SOAP + XML-RPC APIs
    if as_bool(config.registry.settings.get("qrm.legacy_api", False)):
        _include_if_present(config, "legacy")                      # openQRM's SOAP API
    _include_if_present(config, "admin", route_prefix="/admin")    # the admin console
    _include_if_present(config, "boot")                            # agent endpoints
    _include_if_present(config, "portal")                          # the cloud portal at /
    # a web server (not the command line) refuses to start without the public URL it needs
    config.add_subscriber(lambda event: check_public_url(event.app.registry.settings),
                          ApplicationCreated)
    return config


def main(global_config: dict[str, Any] | None = None, **settings: Any) -> Any:
    """PasteDeploy entry point: build the WSGI application."""
    config = make_config(settings)
    return config.make_wsgi_app()
