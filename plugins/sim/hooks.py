"""The ``sim`` plugin's hook implementations (see ``engine.plugins.hookspecs``)."""

from __future__ import annotations

from typing import Any

from engine.datacenter.models import VirtualizationKind
from engine.datacenter.services import DatacenterService
from engine.plugins.hookspecs import hookimpl
from plugins.sim import inventory
from plugins.sim.drivers import SimPowerSwitch, SimStorageDriver, SimVirtualizationDriver
from plugins.sim.monitor import run_monitor

PLUGIN_NAME = "sim"
HOST_TYPE = "sim"
VM_TYPE = SimVirtualizationDriver.vm_type
DEPLOYMENT_TYPE = "sim-deployment"
STORAGE_TYPE = SimStorageDriver.storage_type


@hookimpl
def qrm_plugin_info() -> dict[str, str]:
    """Describe the simulated datacenter."""
    return {
        "name": PLUGIN_NAME,
        "type": "virtualization",
        "description": "Simulated datacenter: hosts, VMs, physical machines and network "
                       "storage kept in a state file of their own, for demonstrations and "
                       "tests",
    }


@hookimpl
def qrm_plugin_action(request: Any, name: str, action: str) -> None:
    """``init`` registers the simulated host, VM and deployment types; ``uninstall`` removes
    them (refused while resources or images still use them)."""
    if name != PLUGIN_NAME:
        return
    datacenter = request.find_service(DatacenterService)
    if action == "init":
        _register_types(datacenter)
    elif action == "uninstall":
        datacenter.unregister_plugin_types(PLUGIN_NAME)


def _register_types(datacenter: DatacenterService) -> None:
    datacenter.register_virtualization_type(HOST_TYPE, "Simulated Host", VirtualizationKind.HOST,
                                            plugin=PLUGIN_NAME)
    datacenter.register_virtualization_type(VM_TYPE, "Simulated VM", VirtualizationKind.VM,
                                            plugin=PLUGIN_NAME, host_type=HOST_TYPE)
    datacenter.register_deployment_type(DEPLOYMENT_TYPE, "Simulated network storage",
                                        storage_type=STORAGE_TYPE, plugin=PLUGIN_NAME)


@hookimpl
def qrm_storage_drivers(request: Any) -> list[Any]:
    """The simulated network storage."""
    return [SimStorageDriver(request)]


@hookimpl
def qrm_virtualization_drivers(request: Any) -> list[Any]:
    """The simulated hypervisor."""
    return [SimVirtualizationDriver(request)]


@hookimpl
def qrm_resource_event(request: Any, resource: Any, action: str) -> None:
    """A simulated host added to the engine is a box that exists: register it in the
    simulated datacenter with the resource's CPUs and memory, unless it is there already."""
    if action != "add" or _kind(resource) != VirtualizationKind.HOST.value:
        return
    vtype = getattr(resource, "virtualization_type", None)
    if getattr(vtype, "name", vtype) != HOST_TYPE:
        return
    inventory.ensure_host(request.registry.settings, resource.mac, resource.cpus or 0,
                          resource.memory_mb or 0, name=resource.name or "")


def _kind(resource: Any) -> Any:
    kind = getattr(resource, "kind", None)
    return getattr(kind, "value", kind)


@hookimpl
def qrm_resource_command(request: Any, resource: Any, command: str) -> bool | None:
    """Reboot or halt a simulated physical machine (``resource``: a ``MachineRef``, known by
    its MAC) through its simulated power switch. VMs go through the virtualization driver,
    everything else through the command queue (None)."""
    if command not in ("reboot", "halt"):
        return None
    switch = SimPowerSwitch(request)
    if not switch.knows(resource.mac):
        return None
    if command == "reboot":
        switch.reboot(resource)
    else:
        switch.halt(resource)
    return True


@hookimpl
def qrm_monitor(request: Any) -> None:
    """Report every booted simulated machine and every running simulated host."""
    run_monitor(request)


@hookimpl
def qrm_demo(request: Any, actor: Any) -> None:
    """Build the simulated demo datacenter (hosts, storage, images, physical machines)."""
    from plugins.sim.demo import build_datacenter

    build_datacenter(request, actor=actor)
