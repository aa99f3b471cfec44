"""The ``lvm-storage`` plugin's hook implementations (see ``engine.plugins.hookspecs``)."""

from __future__ import annotations

from typing import Any

from engine.datacenter.services import DatacenterService
from engine.plugins.hookspecs import hookimpl
from plugins.lvm.driver import (
    ISCSI_DEPLOYMENT,
    NFS_DEPLOYMENT,
    STORAGE_TYPE,
    LvmStorageDriver,
)

PLUGIN_NAME = "lvm-storage"


@hookimpl
def qrm_plugin_info() -> dict[str, str]:
    """Describe the plugin."""
    return {
        "name": PLUGIN_NAME,
        "type": "storage",
        "description": "LVM storage hosts over SSH: a volume group's logical volumes as "
                       "images, cloned by snapshot or copy, exported by NFS or iSCSI to "
                       "the machine that boots them",
    }


@hookimpl
def qrm_plugin_action(request: Any, name: str, action: str) -> None:
    """``init`` registers the deployment types ``lvm-nfs`` and ``lvm-iscsi`` (storage type
    ``lvm-storage``); ``uninstall`` removes them (refused while images use them)."""
    if name != PLUGIN_NAME:
        return
    datacenter = request.find_service(DatacenterService)
    if action == "init":
        datacenter.register_deployment_type(NFS_DEPLOYMENT, "LVM volume over NFS",
                                            storage_type=STORAGE_TYPE, plugin=PLUGIN_NAME)
        datacenter.register_deployment_type(ISCSI_DEPLOYMENT, "LVM volume over iSCSI",
                                            storage_type=STORAGE_TYPE, plugin=PLUGIN_NAME)
    elif action == "uninstall":
        datacenter.unregister_plugin_types(PLUGIN_NAME)


@hookimpl
def qrm_storage_drivers(request: Any) -> list[Any]:
    """The LVM storage driver (it takes the registry from ``request``, nothing else)."""
    return [LvmStorageDriver(request)]
