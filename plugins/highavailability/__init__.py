"""The high-availability plugin (``highavailability``): when a resource of an appliance marked
highly available fails, the appliance is failed over (``AppliancesService.fail_over``) to an
idle resource or a new VM, fenced first. See ``docs/plugins.md``.

The package itself is the plugin registered with pluggy, so its hook implementations are
imported here.
"""

from plugins.highavailability.hooks import qrm_monitor, qrm_plugin_info, qrm_resource_failed

__all__ = ["qrm_monitor", "qrm_plugin_info", "qrm_resource_failed"]
