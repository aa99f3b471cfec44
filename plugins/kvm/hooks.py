"""The ``kvm`` plugin's hook implementations (see ``engine.plugins.hookspecs``)."""

from __future__ import annotations

from typing import Any

from engine.datacenter.models import VirtualizationKind
from engine.datacenter.services import DatacenterService
from engine.plugins.hookspecs import hookimpl
from plugins.kvm.drivers import VM_TYPE, KvmDriver
from plugins.kvm.models import KvmHost
from plugins.kvm.qcow2 import STORAGE_TYPE, Qcow2StorageDriver

PLUGIN_NAME = "kvm"
HOST_TYPE = "kvm"
DEPLOYMENT_TYPE = "qcow2"


@hookimpl
def qrm_plugin_info() -> dict[str, str]:
    """Describe the KVM plugin."""
    return {
        "name": PLUGIN_NAME,
        "type": "virtualization",
        "description": "KVM hosts driven through libvirt, and qcow2 disks on them "
                       "(golden image → copy-on-write clone per VM)",
    }


@hookimpl
def qrm_plugin_action(request: Any, name: str, action: str) -> None:
    """``init`` registers the KVM host and VM types and the qcow2 deployment type;
    ``uninstall`` removes them (refused while resources or images still use them)."""
    if name != PLUGIN_NAME:
        return
    datacenter = request.find_service(DatacenterService)
    if action == "init":
        datacenter.register_virtualization_type(HOST_TYPE, "KVM Host", VirtualizationKind.HOST,
                                                plugin=PLUGIN_NAME)
        datacenter.register_virtualization_type(VM_TYPE, "KVM VM", VirtualizationKind.VM,
                                                plugin=PLUGIN_NAME, host_type=HOST_TYPE)
        datacenter.register_deployment_type(DEPLOYMENT_TYPE, "Local qcow2 disk (KVM)",
                                            storage_type=STORAGE_TYPE, plugin=PLUGIN_NAME)
    elif action == "uninstall":
        datacenter.unregister_plugin_types(PLUGIN_NAME)


@hookimpl
def qrm_storage_drivers(request: Any) -> list[Any]:
    """qcow2 files on KVM hosts."""
    return [Qcow2StorageDriver(request)]


@hookimpl
def qrm_virtualization_drivers(request: Any) -> list[Any]:
    """libvirt domains on KVM hosts."""
    return [KvmDriver(request)]


@hookimpl
def qrm_resource_event(request: Any, resource: Any, action: str) -> None:
    """A KVM host added gets its ``kvm_host`` row with the default URI (unless it has one);
    a host removed loses it."""
    kind = getattr(getattr(resource, "kind", None), "value", None)
    vtype = getattr(resource, "virtualization_type", None)
    if kind != VirtualizationKind.HOST.value or getattr(vtype, "name", vtype) != HOST_TYPE:
        return
    db = request.dbsession
    row = db.get(KvmHost, resource.id)
    if action == "add" and row is None:
        from plugins.kvm.hosts import default_uri

        db.add(KvmHost(resource_id=resource.id, domain_type="kvm",
                       uri=default_uri(resource, request.registry.settings)))
        db.flush()
    elif action == "remove" and row is not None:
        db.delete(row)
        db.flush()


@hookimpl
def qrm_monitor(request: Any) -> None:
    """Ask each KVM host's libvirt whether it answers, and with what capacity
    (``plugins.kvm.monitor``)."""
    from plugins.kvm.monitor import run_monitor

    run_monitor(request)
