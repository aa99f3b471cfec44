"""The simulated datacenter plugin (``sim``): hosts, VMs, physical machines and volumes kept in
a state file of their own (``plugins.sim.store``), outside the engine's database.

The package itself is the plugin registered with pluggy, so its hook implementations are
imported here.
"""

from plugins.sim.hooks import (
    qrm_demo,
    qrm_monitor,
    qrm_plugin_action,
    qrm_plugin_info,
    qrm_resource_command,
    qrm_resource_event,
    qrm_storage_drivers,
    qrm_virtualization_drivers,
)

__all__ = [
    "qrm_demo", "qrm_monitor", "qrm_plugin_action", "qrm_plugin_info", "qrm_resource_command",
    "qrm_resource_event", "qrm_storage_drivers", "qrm_virtualization_drivers",
]
