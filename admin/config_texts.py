"""The descriptions of the cloud configuration keys (``engine.cloud.config.CONFIG_KEYS``),
marked here so that they are extracted into the console's catalog and shown translated.

A test checks that every key's description appears here, so a new key cannot go untranslated.
"""

from __future__ import annotations

from typing import Any

from admin.i18n import _, translate
from engine.cloud.config import ConfigKey

DESCRIPTIONS = (
    _("Sender of every cloud mail and recipient of admin notifications"),
    _("Approve new requests automatically"),
    _("The portal's public URL, used in mails and the WSDL"),
    _("Offer physical systems as a virtualization type"),
    _("Always clone the image per appliance (otherwise users may choose)"),
    _("Most appliances one request may ask for"),
    _("Create a VM when no idle resource fits"),
    _("Largest disk (MB) a request may ask for"),
    _("Most network cards a request may ask for"),
    _("Offer high availability in the portal"),
    _("Offer puppet groups in the portal"),
    _("CCUs every new cloud user starts with"),
    _("Most appliances one user may hold at a time (0 = unlimited)"),
    _("Let anyone register in the portal"),
    _("The cloud is open (false: maintenance; no new requests)"),
    _("Charge CCUs every hour and require credit to request"),
    _("Show a web terminal login for appliances"),
    _("Translate appliance addresses through the NAT table"),
    _("Show monitoring graphs in the portal"),
    _("Let users grow the disks of their appliances"),
    _("Let users make private images of their appliances"),
    _("Choices and prices come from the enabled products"),
    _("Real currency of the CCU value"),
    _("Value of 1000 CCUs in the real currency"),
)


def describe(request: Any, key: ConfigKey) -> str:
    """The key's description in the admin's language (the engine's English if unknown)."""
    return translate(request, key.description)
