"""Form parsing and error display: turn posted fields into service arguments, and service
errors back into messages next to the form field they concern. No rules live here: every
check that matters is made by the services."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from pyramid.i18n import TranslationString

from engine.cloud.billing_port import RequestSpec
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
from engine.i18n import translate_error
from engine.validation import check_int
from portal.i18n import _, translate

#: the request form's fields that carry one text value
REQUEST_FIELDS = ("virtualization", "kernel", "image", "cpus", "memory_mb", "disk_mb",
                  "network_cards", "quantity", "start", "stop")

#: a service's field name → the form field its error is shown next to
REQUEST_ERROR_FIELDS = {"cloud_user": "price", "state": None, "request_id": None,
                        "appliance_id": None}
ACCOUNT_ERROR_FIELDS = {"cloud_user": "name", "password": "new_password"}
REGISTER_ERROR_FIELDS = {"cloud_user": "name"}

#: what each kind of service error means to the user
ERROR_HEADLINES: tuple[tuple[type[QrmError], TranslationString], ...] = (
    (LimitExceeded, _("This is more than your limits allow.")),
    (InsufficientCredit, _("Your CCU balance does not cover the first hour.")),
    (NotFound, _("This choice is not available.")),
    (PermissionDenied, _("You are not allowed to do this.")),
    (AuthenticationFailed, _("Your account cannot be used.")),
    (InvalidState, _("This is not possible right now.")),
    (ValidationError, _("Please check this value.")),
)


@dataclasses.dataclass
class FormErrors:
    """Messages by form field, plus those that concern the whole form (key ``None``)."""

    fields: dict[str | None, str] = dataclasses.field(default_factory=dict)

    def add(self, field: str | None, message: str) -> None:
        self.fields.setdefault(field, message)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def get(self, field: str | None) -> str | None:
        return self.fields.get(field)

    @property
    def general(self) -> str | None:
        return self.fields.get(None)


def error_message(request: Any, error: QrmError) -> str:
    """A headline for the kind of error, with the service's own detail, both in the user's
    language."""
    headline = next((text for kind, text in ERROR_HEADLINES if isinstance(error, kind)),
                    _("This did not work."))
    return f"{translate(request, headline)} ({translate_error(request, error)})"


def add_service_error(request: Any, errors: FormErrors, error: QrmError,
                      field_map: dict[str, str | None], fields: tuple[str, ...]) -> None:
    """Put ``error`` next to the form field it concerns (or at the top of the form)."""
    field = field_map.get(error.field, error.field) if error.field else None
    errors.add(field if field in fields else None, error_message(request, error))


def request_values(params: Any) -> dict[str, Any]:
    """The request form's input as the user gave it (to re-render and to submit)."""
    values: dict[str, Any] = {name: (params.get(name) or "").strip() for name in REQUEST_FIELDS}
    values["ha"] = params.get("ha") == "on"
    values["clone_on_deploy"] = params.get("clone_on_deploy") == "on"
    values["puppet_groups"] = [group for group in params.getall("puppet_groups") if group]
    return values


def utc_time(text: str) -> dt.datetime | str | None:
    """A ``datetime-local`` value read as UTC; anything unreadable goes to the service as
    typed, which names the field in its error."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def submit_arguments(values: dict[str, Any], *, clone_choice: bool) -> dict[str, Any]:
    """Keyword arguments of ``CloudRequestService.submit`` from the form's values."""
    return {
        "start": utc_time(values["start"]), "stop": utc_time(values["stop"]) or "",
        "kernel": values["kernel"], "image": values["image"],
        "virtualization": values["virtualization"], "memory_mb": values["memory_mb"],
        "cpus": values["cpus"], "disk_mb": values["disk_mb"],
        "network_cards": values["network_cards"], "quantity": values["quantity"],
        "ha": values["ha"], "puppet_groups": tuple(values["puppet_groups"]),
        "clone_on_deploy": values["clone_on_deploy"] if clone_choice else None,
    }


def request_spec(values: dict[str, Any]) -> RequestSpec:
    """The priced parts of the form's choices (ValidationError names a bad number)."""
    numbers = {name: check_int(values[name], field=name, minimum=1)
               for name in ("memory_mb", "cpus", "disk_mb", "network_cards", "quantity")}
    return RequestSpec(kernel=values["kernel"], virtualization=values["virtualization"],
                       ha=values["ha"], puppet_groups=tuple(values["puppet_groups"]),
                       **numbers)


def _printable_ascii(text: str) -> bool:
    # what a URL path is once encoded (as ``request.path_qs`` is): no CR/LF, no space
    return all("!" <= character <= "~" for character in text)


def safe_next(target: str | None, default: str) -> str:
    """A local path to go back to; anything else (another host, ``//evil``, a control
    character or anything else a ``Location`` header cannot carry) is ignored."""
    if (target and target.startswith("/") and not target.startswith("//")
            and "\\" not in target and _printable_ascii(target)):
        return target
    return default
