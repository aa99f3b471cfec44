"""Fixtures for the simulated datacenter: the plugin started, drivers, hosts, machines, a
storage. The sim's state file is the test's own (``sim_state`` in ``tests/conftest.py``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from engine.datacenter.models import Resource, ResourceState, VirtualizationKind
from engine.datacenter.services import DatacenterService, generate_mac
from engine.plugins.drivers import HostRef, MachineRef, StorageRef, VmSpec
from engine.plugins.manager import PluginService
from engine.security import Actor
from plugins.sim import inventory
from plugins.sim.demo import add_host, add_physical_machine
from plugins.sim.drivers import SimStorageDriver, SimVirtualizationDriver

_macs = itertools.count(1)


def new_mac() -> str:
    """A MAC no other test object has (deterministic, unlike ``generate_mac``)."""
    number = next(_macs)
    return f"52:54:00:{number >> 16 & 255:02x}:{number >> 8 & 255:02x}:{number & 255:02x}"


def host_ref(resource: Resource) -> HostRef:
    """The value the engine hands the driver for a host row."""
    return HostRef(id=resource.id, name=resource.name, mac=resource.mac, ip=resource.ip)


def machine_ref(resource: Resource) -> MachineRef:
    return MachineRef(id=resource.id, mac=resource.mac, name=resource.name,
                      kind=resource.kind.value, ip=resource.ip)


def spec(name: str = "qrm-vm-1", *, cpus: int = 2, memory_mb: int = 2048,
         macs: tuple[str, ...] | None = None, **more: Any) -> VmSpec:
    return VmSpec(name=name, cpus=cpus, memory_mb=memory_mb, macs=macs or (new_mac(),), **more)


@pytest.fixture
def sim(pyramid_request: Any, admin_actor: Actor) -> Any:
    """The request, with the ``sim`` plugin enabled and started."""
    plugins = pyramid_request.find_service(PluginService)
    plugins.act("sim", "enable", actor=admin_actor)
    plugins.act("sim", "start", actor=admin_actor)
    return pyramid_request


@pytest.fixture
def settings(sim: Any) -> Any:
    return sim.registry.settings


@pytest.fixture
def datacenter(sim: Any) -> DatacenterService:
    return sim.find_service(DatacenterService)


@pytest.fixture
def storage_driver(sim: Any) -> SimStorageDriver:
    return sim.find_service(PluginService).storage_driver("sim-storage")


@pytest.fixture
def vm_driver(sim: Any) -> SimVirtualizationDriver:
    return sim.find_service(PluginService).virtualization_driver("sim-vm")


@pytest.fixture
def storage() -> StorageRef:
    """A simulated storage of 10000 MB, as the engine hands it to the driver."""
    return StorageRef(id=1, name="test-sim-storage", storage_type="sim-storage",
                      capacity_mb=10000)


@pytest.fixture
def host(settings: Any) -> HostRef:
    """A simulated host of 16 CPUs and 32 GB, registered in the sim only (no row)."""
    mac = new_mac()
    inventory.register_host(settings, mac, 16, 32768, name="host")
    return HostRef(id=1, name="host", mac=mac)


@pytest.fixture
def make_host(sim: Any, admin_actor: Actor) -> Callable[..., Resource]:
    """A simulated host: its resource row and the box (``sim_cpus``/``sim_memory_mb``: the
    box's capacity, when it differs from what the engine believes)."""

    def make(name: str = "host", **kw: Any) -> Resource:
        return add_host(sim, name, actor=admin_actor, mac=new_mac(), **kw)

    return make


@pytest.fixture
def make_physical(sim: Any, admin_actor: Actor) -> Callable[..., Resource]:
    """A simulated physical machine that is up and idle (``booting=True``: just switched
    on)."""

    def make(name: str = "box", **kw: Any) -> Resource:
        return add_physical_machine(sim, name, actor=admin_actor, mac=new_mac(), **kw)

    return make


@pytest.fixture
def make_vm(sim: Any, datacenter: DatacenterService,
            vm_driver: SimVirtualizationDriver) -> Callable[..., Resource]:
    """A VM the way the engine makes one: its resource row on ``host``, then ``create_vm``
    with the row's values."""

    def make(host: Resource, *, name: str | None = None, cpus: int = 2,
             memory_mb: int = 2048) -> Resource:
        vm = Resource(mac=generate_mac(), kind=VirtualizationKind.VM, name=name or "vm",
                      virtualization_type=datacenter.virtualization_type("sim-vm"), host=host,
                      cpus=cpus, memory_mb=memory_mb, state=ResourceState.BOOTING)
        sim.dbsession.add(vm)
        sim.dbsession.flush()
        vm_driver.create_vm(host_ref(host), spec(name or f"qrm-vm-{vm.id}", cpus=cpus,
                                                  memory_mb=memory_mb, macs=(vm.mac,)))
        return vm

    return make
