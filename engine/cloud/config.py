"""The cloud configuration: every key with its type and default, addressed by name.

Values are stored as text in ``cloud_config`` only when they differ from the default, and
are validated on the way in (no free text where a number or a boolean belongs).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.cloud.models import CloudConfigValue
from engine.db import utcnow
from engine.errors import PermissionDenied, ValidationError
from engine.events.services import EventService
from engine.i18n import _
from engine.security import Actor
from engine.validation import check_email, invalid


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    name: str
    type: type
    default: Any
    description: str
    minimum: int | None = None
    choices: tuple[str, ...] | None = None


CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("cloud_admin_email", str, "root@localhost",
              "Sender of every cloud mail and recipient of admin notifications"),
    ConfigKey("auto_provision", bool, False,
              "Approve new requests automatically"),
    ConfigKey("external_portal_url", str, "",
              "The portal's public URL, used in mails and the WSDL"),
    ConfigKey("request_physical_systems", bool, True,
              "Offer physical systems as a virtualization type"),
    ConfigKey("default_clone_on_deploy", bool, True,
              "Always clone the image per appliance (otherwise users may choose)"),
    ConfigKey("max_resources_per_cr", int, 5,
              "Most appliances one request may ask for", minimum=1),
    ConfigKey("auto_create_vms", bool, True,
              "Create a VM when no idle resource fits"),
    ConfigKey("max_disk_size", int, 100000,
              "Largest disk (MB) a request may ask for", minimum=1),
    ConfigKey("max_network_interfaces", int, 4,
              "Most network cards a request may ask for", minimum=1),
    ConfigKey("show_ha_checkbox", bool, True,
              "Offer high availability in the portal"),
    ConfigKey("show_puppet_groups", bool, True,
              "Offer puppet groups in the portal"),
    ConfigKey("auto_give_ccus", int, 0,
              "CCUs every new cloud user starts with", minimum=0),
    ConfigKey("max_apps_per_user", int, 10,
              "Most appliances one user may hold at a time (0 = unlimited)", minimum=0),
    ConfigKey("public_register_enabled", bool, True,
              "Let anyone register in the portal"),
    ConfigKey("cloud_enabled", bool, True,
              "The cloud is open (false: maintenance; no new requests)"),
    ConfigKey("cloud_billing_enabled", bool, True,
              "Charge CCUs every hour and require credit to request"),
    ConfigKey("show_sshterm_login", bool, True,
              "Show a web terminal login for appliances"),
    ConfigKey("cloud_nat", bool, False,
              "Translate appliance addresses through the NAT table"),
    ConfigKey("show_collectd_graphs", bool, False,
              "Show monitoring graphs in the portal"),
    ConfigKey("show_disk_resize", bool, False,
              "Let users grow the disks of their appliances"),
    ConfigKey("show_private_image", bool, False,
              "Let users make private images of their appliances"),
    ConfigKey("cloud_selector", bool, True,
              "Choices and prices come from the enabled products"),
    ConfigKey("cloud_currency", str, "US", "Real currency of the CCU value",
              choices=("US", "Euro")),
    ConfigKey("cloud_1000_ccus", int, 1,
              "Value of 1000 CCUs in the real currency", minimum=0),
)

KEYS_BY_NAME = {key.name: key for key in CONFIG_KEYS}


def parse_value(key: ConfigKey, raw: Any) -> Any:
    """Turn ``raw`` (text from a form or the database, or a Python value) into the key's type."""
    if key.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off", ""):
            return False
        raise invalid(_("${field} must be true or false"), key.name)
    if key.type is int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise invalid(_("${field} must be a whole number"), key.name) from None
        if key.minimum is not None and value < key.minimum:
            raise invalid(_("${field} must be at least ${minimum}"), key.name,
                          minimum=key.minimum)
        return value
    value = str(raw).strip()
    if key.choices and value not in key.choices:
        raise invalid(_("${field} must be one of ${choices}"), key.name,
                      choices=", ".join(key.choices))
    if key.name == "cloud_admin_email":
        check_email(value, field=key.name)
    if key.name == "external_portal_url" and value and not value.startswith(
        ("http://", "https://")
    ):
        raise invalid(_("${field} must start with http:// or https://"), key.name)
    return value


def render_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class CloudConfigService:
    """Typed access to the cloud configuration."""

    def __init__(self, db: Session, *, events: EventService) -> None:
        self.db, self.events = db, events
        self._cache: dict[str, Any] | None = None

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> CloudConfigService:
        return cls(request.dbsession, events=request.find_service(EventService))

    def all(self) -> dict[str, Any]:
        if self._cache is None:
            stored = {row.key: row.value for row in self.db.scalars(select(CloudConfigValue))}
            self._cache = {
                key.name: parse_value(key, stored[key.name]) if key.name in stored
                else key.default
                for key in CONFIG_KEYS
            }
        return dict(self._cache)

    def get(self, name: str) -> Any:
        if name not in KEYS_BY_NAME:
            raise KeyError(name)
        return self.all()[name]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def set(self, name: str, raw: Any, *, actor: Actor) -> Any:
        """Validate and store one value; the event log records old and new."""
        if not actor.is_admin:
            raise PermissionDenied(_("only an admin may change the configuration"))
        if name not in KEYS_BY_NAME:
            raise ValidationError(_("unknown configuration key ${name}",
                                    mapping={"name": repr(name)}), field=name)
        key = KEYS_BY_NAME[name]
        value = parse_value(key, raw)
        old = self.get(name)
        if value == old:
            return value
        row = self.db.get(CloudConfigValue, name)
        if row is None:
            row = CloudConfigValue(key=name, value="")
            self.db.add(row)
        row.value, row.updated_at, row.updated_by = render_value(value), utcnow(), actor.label
        self._cache = None
        self.events.log(source="cloud", name="config.changed", actor=actor,
                        object_type="cloud_config",
                        message=f"{name}: {render_value(old)} -> {render_value(value)}")
        self.db.flush()
        return value

    def update(self, values: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        """Set several keys; every one is validated before any is written."""
        parsed = {}
        for name, raw in values.items():
            if name not in KEYS_BY_NAME:
                raise ValidationError(_("unknown configuration key ${name}",
                                        mapping={"name": repr(name)}), field=name)
            parsed[name] = parse_value(KEYS_BY_NAME[name], raw)
        for name, value in parsed.items():
            self.set(name, value, actor=actor)
        return self.all()
