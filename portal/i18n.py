"""Translation and formatting for the portal: the ``portal`` gettext domain, Babel formatting
in the negotiated locale, and the names every portal template can use."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, format_decimal
from pyramid.csrf import get_csrf_token
from pyramid.i18n import TranslationString, TranslationStringFactory

from engine.cloud.config import CloudConfigService
from engine.cloud.models import CloudApplianceState, RequestStatus
from engine.i18n import LANGUAGES, format_ccus, format_time, parsed_locale

DOMAIN = "portal"
_ = TranslationStringFactory(DOMAIN)

REQUEST_STATUS_LABELS: dict[RequestStatus, TranslationString] = {
    RequestStatus.NEW: _("New"),
    RequestStatus.APPROVED: _("Approved"),
    RequestStatus.ACTIVE: _("Active"),
    RequestStatus.DENIED: _("Denied"),
    RequestStatus.DEPROVISION: _("Being removed"),
    RequestStatus.DONE: _("Done"),
    RequestStatus.NO_RESOURCES: _("No resources"),
}

APPLIANCE_STATE_LABELS: dict[CloudApplianceState, TranslationString] = {
    CloudApplianceState.PROVISIONING: _("Being set up"),
    CloudApplianceState.ACTIVE: _("Running"),
    CloudApplianceState.PAUSED: _("Paused"),
    CloudApplianceState.ERROR: _("Error"),
    CloudApplianceState.DEPROVISIONING: _("Being removed"),
    CloudApplianceState.REMOVED: _("Removed"),
}

#: the priced parts of a request (``Quote.components`` and ``CloudRequest.price_breakdown``)
COMPONENT_LABELS: dict[str, TranslationString] = {
    "resource": _("Type"),
    "kernel": _("Kernel"),
    "cpu": _("Processors (CPUs)"),
    "memory": _("Memory (MB)"),
    "disk": _("Disk (MB)"),
    "network": _("Network cards"),
    "ha": _("High availability"),
    "puppet": _("Application"),
}

LANGUAGE_NAMES: dict[str, str] = {"en": "English", "de": "Deutsch"}

#: ISO codes of the ``cloud_currency`` choices
CURRENCY_CODES: dict[str, str] = {"US": "USD", "Euro": "EUR"}


def translate(request: Any, message: str | TranslationString, **mapping: Any) -> str:
    """``message`` in the request's language (a plain string is a ``portal`` message id)."""
    if not isinstance(message, TranslationString):
        message = TranslationString(message, domain=DOMAIN, mapping=mapping or None)
    elif mapping:
        message = TranslationString(message, domain=message.domain,
                                    mapping={**(message.mapping or {}), **mapping})
    return request.localizer.translate(message)


def format_money(request: Any, value: Decimal) -> str:
    currency = request.find_service(CloudConfigService)["cloud_currency"]
    return format_currency(value, CURRENCY_CODES.get(currency, "USD"),
                           locale=parsed_locale(request.locale_name))


def format_number(request: Any, value: int | Decimal) -> str:
    return format_decimal(value, locale=parsed_locale(request.locale_name))


def input_time(value: dt.datetime | None) -> str:
    """A UTC time as the value of a ``datetime-local`` input."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M") if value else ""


def template_globals(request: Any) -> dict[str, Any]:
    """What every portal template can call: gettext in the ``portal`` domain, formatting in
    the user's locale, the CSRF token, who is logged in, whether the cloud is open."""
    locale = request.locale_name
    actor = request.identity
    return {
        "_": lambda message, **mapping: translate(request, message, **mapping),
        "gettext": lambda message, **mapping: translate(request, message, **mapping),
        "format_time": lambda value: format_time(value, locale),
        "format_ccus": lambda value: format_ccus(value, locale),
        "format_money": lambda value: format_money(request, value),
        "format_number": lambda value: format_number(request, value),
        "input_time": input_time,
        "status_label": lambda status: translate(request, REQUEST_STATUS_LABELS[status]),
        "appliance_state_label": lambda state: translate(request,
                                                         APPLIANCE_STATE_LABELS[state]),
        "component_label": lambda kind: translate(request, COMPONENT_LABELS.get(kind, kind)),
        "csrf_token": get_csrf_token(request),
        "cloud_user": actor if actor is not None and actor.is_cloud_user else None,
        "cloud_enabled": request.find_service(CloudConfigService)["cloud_enabled"],
        "locale_name": locale,
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
    }


def add_template_globals(event: Any) -> None:
    """BeforeRender subscriber: only portal templates get the portal's names.

    They are context variables, which Jinja2 looks up before the shared environment's globals,
    so ``_`` in a portal template translates in the ``portal`` domain while other faces keep
    their own."""
    renderer_name = event.get("renderer_name") or ""
    request = event.get("request")
    if request is None or not renderer_name.startswith("portal:"):
        return
    for name, value in template_globals(request).items():
        event.setdefault(name, value)
