"""The demo datacenter: two simulated hosts, a network storage with two master images, kernels,
and two simulated physical machines, all built through the engine's services.

Cloud products and users are the caller's business; this module only builds the datacenter.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.datacenter.models import (
    Image,
    Kernel,
    Resource,
    ResourceState,
    Storage,
    VirtualizationKind,
)
from engine.datacenter.services import DatacenterService, generate_mac
from engine.plugins.manager import PluginService
from engine.plugins.models import PluginState
from engine.security import Actor
from plugins.sim.drivers import begin_boot
from plugins.sim.hooks import DEPLOYMENT_TYPE, HOST_TYPE, PLUGIN_NAME, STORAGE_TYPE
from plugins.sim.models import SimHost, SimMachine

STORAGE_NAME = "sim-storage-1"
STORAGE_CAPACITY_MB = 200_000
#: name, CPUs, memory (MB)
HOSTS = (("sim-host-1", 16, 32768), ("sim-host-2", 8, 16384))
#: name, CPUs, memory (MB), NICs
PHYSICAL_MACHINES = (("sim-physical-1", 4, 8192, 2), ("sim-physical-2", 4, 8192, 2))
#: name, version
KERNELS = (("default", "6.1"), ("linux-6.1", "6.1"))
#: name, comment
IMAGES = (("debian-12", "Debian 12 (bookworm)"), ("ubuntu-24.04", "Ubuntu 24.04 LTS (noble)"))
IMAGE_SIZE_MB = 4000


def build_datacenter(request: Any, *, actor: Actor) -> dict[str, Any]:
    """Build the demo datacenter (enabling and starting the ``sim`` plugin if needed).

    Idempotent: when the storage ``sim-storage-1`` exists nothing is done and the existing
    datacenter is described. Returns the names of hosts, machines, storage, kernels and images,
    and ``created`` (whether this call built it).
    """
    db = request.dbsession
    storage = db.scalar(select(Storage).where(Storage.name == STORAGE_NAME))
    if storage is not None:
        return _describe(request, storage, created=False)
    _start_plugin(request, actor)
    datacenter = request.find_service(DatacenterService)
    for name, cpus, memory_mb in HOSTS:
        _host(request, datacenter, name, cpus=cpus, memory_mb=memory_mb, actor=actor)
    for name, cpus, memory_mb, nics in PHYSICAL_MACHINES:
        _physical_machine(request, datacenter, name, cpus=cpus, memory_mb=memory_mb, nics=nics,
                          actor=actor)
    storage = add_storage(request, STORAGE_NAME, capacity_mb=STORAGE_CAPACITY_MB,
                          actor=actor, comment="simulated network storage")
    for name, version in KERNELS:
        _kernel(request, datacenter, name, version=version, actor=actor)
    for name, comment in IMAGES:
        _image(request, datacenter, name, storage=storage, comment=comment, actor=actor)
    return _describe(request, storage, created=True)


def add_storage(request: Any, name: str, *, capacity_mb: int, actor: Actor,
                comment: str = "") -> Storage:
    """Register a simulated storage of ``capacity_mb`` (0: unlimited)."""
    return request.find_service(DatacenterService).add_storage(
        name, storage_type=STORAGE_TYPE, capacity_mb=capacity_mb, actor=actor,
        comment=comment)


def _start_plugin(request: Any, actor: Actor) -> None:
    plugins = request.find_service(PluginService)
    if plugins.states()[PLUGIN_NAME] is PluginState.DISABLED:
        plugins.act(PLUGIN_NAME, "enable", actor=actor)
    if plugins.states()[PLUGIN_NAME] is PluginState.ENABLED:
        plugins.act(PLUGIN_NAME, "start", actor=actor)


def _find_resource(request: Any, name: str, kind: VirtualizationKind) -> Resource | None:
    # A half-built datacenter (its storage removed, say) is completed, not duplicated.
    return request.dbsession.scalar(select(Resource).where(
        Resource.name == name, Resource.kind == kind).order_by(Resource.id).limit(1))


def _host(request: Any, datacenter: DatacenterService, name: str, *, cpus: int,
          memory_mb: int, actor: Actor) -> Resource:
    host = _find_resource(request, name, VirtualizationKind.HOST)
    if host is None:
        host = datacenter.add_resource(
            mac=generate_mac(), kind=VirtualizationKind.HOST, virtualization_type=HOST_TYPE,
            actor=actor, name=name, cpus=cpus, memory_mb=memory_mb, nics=2,
            state=ResourceState.ACTIVE)
    if request.dbsession.get(SimHost, host.id) is None:
        request.dbsession.add(SimHost(resource_id=host.id, cpus=cpus, memory_mb=memory_mb))
        request.dbsession.flush()
    return host


def _physical_machine(request: Any, datacenter: DatacenterService, name: str, *, cpus: int,
                      memory_mb: int, nics: int, actor: Actor) -> Resource:
    resource = _find_resource(request, name, VirtualizationKind.PHYSICAL)
    if resource is None:
        resource = datacenter.add_resource(
            mac=generate_mac(), kind=VirtualizationKind.PHYSICAL,
            virtualization_type="physical", actor=actor, name=name, cpus=cpus,
            memory_mb=memory_mb, nics=nics, state=ResourceState.BOOTING)
    if request.dbsession.get(SimMachine, resource.id) is None:
        machine = SimMachine(resource_id=resource.id, host_id=None, disk_mb=0)
        begin_boot(request, machine)  # the monitor reports it idle once booted
        request.dbsession.add(machine)
        request.dbsession.flush()
    return resource


def _kernel(request: Any, datacenter: DatacenterService, name: str, *, version: str,
            actor: Actor) -> Kernel:
    kernel = request.dbsession.scalar(select(Kernel).where(Kernel.name == name))
    return kernel or datacenter.add_kernel(name, version=version, actor=actor)


def _image(request: Any, datacenter: DatacenterService, name: str, *, storage: Storage,
           comment: str, actor: Actor) -> Image:
    image = request.dbsession.scalar(select(Image).where(Image.name == name))
    return image or datacenter.create_image(name, storage=storage,
                                            deployment_type=DEPLOYMENT_TYPE,
                                            size_mb=IMAGE_SIZE_MB, actor=actor, comment=comment)


def _describe(request: Any, storage: Storage, *, created: bool) -> dict[str, Any]:
    db = request.dbsession
    hosts = db.scalars(select(Resource.name).join(SimHost, SimHost.resource_id == Resource.id)
                       .order_by(Resource.id))
    machines = db.scalars(select(Resource.name)
                          .join(SimMachine, SimMachine.resource_id == Resource.id)
                          .where(Resource.kind == VirtualizationKind.PHYSICAL)
                          .order_by(Resource.id))
    images = db.scalars(select(Image.name).where(Image.storage_id == storage.id,
                                                 Image.is_master.is_(True)).order_by(Image.id))
    kernels = db.scalars(select(Kernel.name).where(Kernel.name.in_([k for k, _ in KERNELS]))
                         .order_by(Kernel.id))
    return {"created": created, "hosts": list(hosts), "machines": list(machines),
            "storage": storage.name, "kernels": list(kernels), "images": list(images)}
