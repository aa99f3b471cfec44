"""The KVM plugin (``kvm``): VMs as libvirt domains on KVM hosts (``plugins.kvm.drivers``)
and the ``qcow2`` storage of local disks on those hosts (``plugins.kvm.qcow2``).

The package itself is the plugin registered with pluggy, so its hook implementations are
imported here; its model (``kvm_host``) comes with it.
"""

from plugins.kvm import models  # noqa: F401 - the schema must know kvm_host
from plugins.kvm.hooks import (
    qrm_monitor,
    qrm_plugin_action,
    qrm_plugin_info,
    qrm_resource_event,
    qrm_storage_drivers,
    qrm_virtualization_drivers,
)

__all__ = [
    "qrm_monitor", "qrm_plugin_action", "qrm_plugin_info", "qrm_resource_event",
    "qrm_storage_drivers", "qrm_virtualization_drivers",
]
