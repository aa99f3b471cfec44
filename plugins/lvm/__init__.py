"""The ``lvm-storage`` plugin: LVM storage hosts driven over SSH (``plugins.lvm.driver``).

The package itself is the plugin registered with pluggy, so its hook implementations are
imported here; its model (``lvm_storage``) comes with it.
"""

from plugins.lvm import models  # noqa: F401 - the schema must know lvm_storage
from plugins.lvm.hooks import qrm_plugin_action, qrm_plugin_info, qrm_storage_drivers

__all__ = ["qrm_plugin_action", "qrm_plugin_info", "qrm_storage_drivers"]
