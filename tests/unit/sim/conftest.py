"""Fixtures for the simulated datacenter: the plugin started, a storage, hosts and machines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.datacenter.models import Resource, ResourceState, Storage, VirtualizationKind
from engine.datacenter.services import DatacenterService, generate_mac
from engine.plugins.manager import PluginService
from engine.security import Actor
from plugins.sim.demo import add_storage
from plugins.sim.drivers import SimStorageDriver, SimVirtualizationDriver
from plugins.sim.models import SimHost, SimMachine, SimVolume


@pytest.fixture
def sim(pyramid_request: Any, admin_actor: Actor) -> Any:
    """The request, with the ``sim`` plugin enabled and started."""
    plugins = pyramid_request.find_service(PluginService)
    plugins.act("sim", "enable", actor=admin_actor)
    plugins.act("sim", "start", actor=admin_actor)
    return pyramid_request


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
def storage(sim: Any, admin_actor: Actor) -> Storage:
    """A simulated storage of 10000 MB."""
    return add_storage(sim, "test-sim-storage", capacity_mb=10000, actor=admin_actor)


@pytest.fixture
def make_host(sim: Any, datacenter: DatacenterService,
              admin_actor: Actor) -> Callable[..., Resource]:
    """Add a simulated host; ``sim_cpus``/``sim_memory_mb`` give the SimHost a capacity
    different from the resource's (what the engine believes)."""

    def make(name: str, *, cpus: int = 16, memory_mb: int = 32768, sim_cpus: int | None = None,
             sim_memory_mb: int | None = None) -> Resource:
        host = datacenter.add_resource(
            mac=generate_mac(), kind=VirtualizationKind.HOST, virtualization_type="sim",
            actor=admin_actor, name=name, cpus=cpus, memory_mb=memory_mb,
            state=ResourceState.ACTIVE)
        sim.dbsession.add(SimHost(
            resource_id=host.id, cpus=cpus if sim_cpus is None else sim_cpus,
            memory_mb=memory_mb if sim_memory_mb is None else sim_memory_mb))
        sim.dbsession.flush()
        return host

    return make


@pytest.fixture
def make_vm_row(sim: Any, datacenter: DatacenterService) -> Callable[..., Resource]:
    """Insert a VM's resource row the way ``DatacenterService.create_vm`` does before it
    calls the driver."""

    def make(host: Resource, *, cpus: int = 2, memory_mb: int = 2048) -> Resource:
        vm = Resource(mac=generate_mac(), kind=VirtualizationKind.VM, name="vm",
                      virtualization_type=datacenter.virtualization_type("sim-vm"), host=host,
                      cpus=cpus, memory_mb=memory_mb, state=ResourceState.BOOTING)
        sim.dbsession.add(vm)
        sim.dbsession.flush()
        return vm

    return make


@pytest.fixture
def make_physical(sim: Any, datacenter: DatacenterService,
                  admin_actor: Actor) -> Callable[..., Resource]:
    """Add a simulated physical machine that is up and idle."""

    def make(name: str = "box") -> Resource:
        resource = datacenter.add_resource(
            mac=generate_mac(), kind=VirtualizationKind.PHYSICAL,
            virtualization_type="physical", actor=admin_actor, name=name, cpus=4,
            memory_mb=8192, nics=2, state=ResourceState.IDLE)
        sim.dbsession.add(SimMachine(resource_id=resource.id, powered=True,
                                     boot_ready_at=None, disk_mb=0))
        sim.dbsession.flush()
        return resource

    return make


def count(request: Any, model: type, *criteria: Any) -> int:
    """Rows of ``model`` matching ``criteria``."""
    column = next(iter(model.__table__.primary_key.columns))
    return request.dbsession.scalar(select(func.count(column)).where(*criteria))


def volumes_on(request: Any, storage: Storage) -> int:
    return count(request, SimVolume, SimVolume.storage_id == storage.id)
