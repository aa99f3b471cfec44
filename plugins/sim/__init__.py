"""The simulated datacenter plugin (``sim``): hosts, VMs and volumes kept in the database.

The package itself is the plugin registered with pluggy, so its hook implementations are
imported here.
"""

from plugins.sim import models  # noqa: F401  (registers the plugin's tables)
from plugins.sim.hooks import (
    qrm_demo,
    qrm_monitor,
    qrm_plugin_action,
    qrm_plugin_info,
    qrm_resource_command,
    qrm_storage_drivers,
    qrm_virtualization_drivers,
)

__all__ = [
    "qrm_demo", "qrm_monitor", "qrm_plugin_action", "qrm_plugin_info", "qrm_resource_command",
    "qrm_storage_drivers", "qrm_virtualization_drivers",
]
