"""Translation for the console: the ``admin`` domain, and labels for the engine's states.

Python code marks messages with ``_`` (``${name}`` placeholders) and translates them with
``translate``; templates call ``_()``/``ngettext()`` (``%(name)s`` placeholders), which the
console's template globals bind to the same domain.
"""

from __future__ import annotations

import enum
from typing import Any

from pyramid.i18n import TranslationString, TranslationStringFactory

from engine.cloud.models import (
    CloudApplianceState,
    CloudUserStatus,
    ProductType,
    ProvisionStep,
    RequestStatus,
)
from engine.commands.models import CommandState
from engine.datacenter.models import (
    ApplianceState,
    CallState,
    ResourceState,
    VirtualizationKind,
)
from engine.errors import (
    AuthenticationFailed,
    InsufficientCredit,
    InvalidState,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    QrmError,
    ValidationError,
)
from engine.events.models import EventLevel
from engine.i18n import translate_error

DOMAIN = "admin"
_ = TranslationStringFactory(DOMAIN)


def translate(request: Any, message: TranslationString | str, **mapping: Any) -> str:
    """``message`` in the request's language, with ``${name}`` placeholders filled in."""
    return request.localizer.translate(message, domain=DOMAIN, mapping=mapping or None)


LABELS: dict[type[enum.Enum], dict[str, TranslationString]] = {
    RequestStatus: {
        "new": _("new"), "approved": _("approved"), "active": _("active"),
        "denied": _("denied"), "deprovision": _("deprovisioning"), "done": _("done"),
        "no-resources": _("no resources"),
    },
    CloudApplianceState: {
        "provisioning": _("provisioning"), "active": _("active"), "paused": _("paused"),
        "error": _("error"), "deprovisioning": _("deprovisioning"), "removed": _("removed"),
    },
    ProvisionStep: {
        "new": _("not started"), "appliance": _("appliance created"),
        "resource": _("resource claimed"), "image": _("image ready"),
        "addresses": _("addresses assigned"), "starting": _("starting"),
        "running": _("running"), "pausing": _("pausing"), "paused": _("paused"),
        "stopping": _("stopping"), "stopped": _("stopped"), "freed": _("addresses released"),
        "unassigned": _("appliance removed"), "volume-removed": _("volume removed"),
        "released": _("released"), "failed": _("failed"),
    },
    CallState: {"pending": _("pending"), "done": _("done"), "failed": _("failed")},
    CloudUserStatus: {"active": _("active"), "disabled": _("disabled"), "pending": _("pending")},
    ResourceState: {
        "unknown": _("unknown"), "booting": _("booting"), "idle": _("idle"),
        "active": _("active"), "transition": _("in transition"), "off": _("off"),
        "error": _("error"),
    },
    ApplianceState: {
        "stopped": _("stopped"), "starting": _("starting"), "active": _("active"),
        "stopping": _("stopping"), "error": _("error"),
    },
    VirtualizationKind: {"physical": _("physical"), "host": _("host"), "vm": _("virtual machine")},
    ProductType: {
        "cpu": _("CPUs"), "disk": _("Disk (MB)"), "ha": _("High availability"),
        "kernel": _("Kernel"), "memory": _("Memory (MB)"), "network": _("Network cards"),
        "puppet": _("Puppet groups"), "quantity": _("Systems per request"),
        "resource": _("Virtualization"),
    },
    CommandState: {
        "queued": _("queued"), "running": _("running"), "done": _("done"),
        "failed": _("failed"),
    },
    EventLevel: {
        "critical": _("critical"), "error": _("error"), "warning": _("warning"),
        "notice": _("notice"), "info": _("info"), "debug": _("debug"),
    },
}


def label(request: Any, member: enum.Enum | None) -> str:
    """The translated name of an engine state or type (its value if none is known)."""
    if member is None:
        return "—"
    message = LABELS.get(type(member), {}).get(member.value)
    return translate(request, message) if message is not None else str(member.value)


#: what kind of refusal an error is; the service's own message follows it as the detail
ERROR_KINDS: tuple[tuple[type[QrmError], TranslationString], ...] = (
    (ValidationError, _("Invalid input")),
    (NotFound, _("Not found")),
    (InvalidState, _("Not possible in the current state")),
    (LimitExceeded, _("Limit exceeded")),
    (InsufficientCredit, _("Not enough credit")),
    (PermissionDenied, _("Not allowed")),
    (AuthenticationFailed, _("Not allowed")),
)


def error_text(request: Any, error: QrmError) -> str:
    """A refusal for display: its kind and the service's detail, in the admin's language."""
    kind = next((text for cls, text in ERROR_KINDS if isinstance(error, cls)),
                _("The operation failed"))
    return translate(request, _("${kind}: ${detail}", mapping={
        "kind": translate(request, kind), "detail": translate_error(request, error)}))
