"""The demo datacenter: two simulated hosts, a network storage with two master images, kernels,
and two simulated physical machines.

The engine's rows are built through its services; the boxes themselves are registered in the
simulated datacenter (``plugins.sim.inventory``), and the master images' volumes are planted
on the simulated storage directly: like golden images on a real storage, they exist before
the engine registers them (``add_image`` with their root device). ``add_storage``,
``add_host`` and ``add_physical_machine`` do both sides for tests.

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
from plugins.sim import inventory
from plugins.sim.hooks import DEPLOYMENT_TYPE, HOST_TYPE, PLUGIN_NAME, STORAGE_TYPE

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

    Building it formats the simulated storage ``sim-storage-1`` first (an earlier database's
    volumes are gone). Idempotent: when the storage ``sim-storage-1`` exists no row is added
    and the existing datacenter is described; its hosts, physical machines and master volumes
    are registered in the simulated datacenter again if they are missing there (a state file
    deleted to start afresh). Returns the names of hosts, machines, storage, kernels and images, and
    ``created`` (whether this call built it).
    """
    db = request.dbsession
    storage = db.scalar(select(Storage).where(Storage.name == STORAGE_NAME))
    if storage is not None:
        _register_existing(request)
        return _describe(request, storage, created=False)
    _start_plugin(request, actor)
    # A new engine database (no demo storage yet) gets a freshly formatted demo storage:
    # volumes left in the state file by an earlier database would collide with the names
    # the engine derives from its new row ids.
    inventory.format_storage(request.registry.settings, STORAGE_NAME)
    for name, cpus, memory_mb in HOSTS:
        add_host(request, name, cpus=cpus, memory_mb=memory_mb, actor=actor)
    for name, cpus, memory_mb, nics in PHYSICAL_MACHINES:
        add_physical_machine(request, name, cpus=cpus, memory_mb=memory_mb, nics=nics,
                             actor=actor, booting=True)
    storage = add_storage(request, STORAGE_NAME, capacity_mb=STORAGE_CAPACITY_MB,
                          actor=actor, comment="simulated network storage")
    datacenter = request.find_service(DatacenterService)
    for name, version in KERNELS:
        _kernel(request, datacenter, name, version=version, actor=actor)
    for name, comment in IMAGES:
        add_master_image(request, name, storage=storage, size_mb=IMAGE_SIZE_MB,
                         actor=actor, comment=comment)
    return _describe(request, storage, created=True)


def add_storage(request: Any, name: str, *, capacity_mb: int, actor: Actor,
                comment: str = "") -> Storage:
    """Register a simulated storage of ``capacity_mb`` (0: unlimited). The simulated
    datacenter needs no registration of its own: it knows storages by name."""
    return request.find_service(DatacenterService).add_storage(
        name, storage_type=STORAGE_TYPE, capacity_mb=capacity_mb, actor=actor,
        comment=comment)


def add_host(request: Any, name: str, *, actor: Actor, cpus: int = 16,
             memory_mb: int = 32768, nics: int = 2, mac: str | None = None,
             sim_cpus: int | None = None, sim_memory_mb: int | None = None,
             state: ResourceState = ResourceState.ACTIVE) -> Resource:
    """A simulated hypervisor host: its resource row (what the engine believes: ``cpus``,
    ``memory_mb``) and the box in the simulated datacenter (``sim_cpus``/``sim_memory_mb``,
    by default the same). An existing host resource of that name is reused."""
    host = _find_resource(request, name, VirtualizationKind.HOST)
    if host is None:
        host = request.find_service(DatacenterService).add_resource(
            mac=mac or generate_mac(), kind=VirtualizationKind.HOST,
            virtualization_type=HOST_TYPE, actor=actor, name=name, cpus=cpus,
            memory_mb=memory_mb, nics=nics, state=state)
    inventory.register_host(request.registry.settings, host.mac,
                            cpus if sim_cpus is None else sim_cpus,
                            memory_mb if sim_memory_mb is None else sim_memory_mb, name=name)
    return host


def add_physical_machine(request: Any, name: str = "box", *, actor: Actor, cpus: int = 4,
                         memory_mb: int = 8192, nics: int = 2, mac: str | None = None,
                         booting: bool = False) -> Resource:
    """A simulated physical machine: its resource row and the powered box. ``booting``: it
    was just switched on (state ``booting``; the monitor reports it idle once the boot delay
    is over); otherwise it is up and idle already. An existing physical resource of that name
    is reused."""
    resource = _find_resource(request, name, VirtualizationKind.PHYSICAL)
    if resource is None:
        resource = request.find_service(DatacenterService).add_resource(
            mac=mac or generate_mac(), kind=VirtualizationKind.PHYSICAL,
            virtualization_type="physical", actor=actor, name=name, cpus=cpus,
            memory_mb=memory_mb, nics=nics,
            state=ResourceState.BOOTING if booting else ResourceState.IDLE)
    inventory.register_physical(request.registry.settings, resource.mac, name=name,
                                cpus=resource.cpus, memory_mb=resource.memory_mb,
                                nics=resource.nics, booted=not booting)
    return resource


def add_master_image(request: Any, name: str, *, storage: Storage, size_mb: int,
                     actor: Actor, comment: str = "") -> Image:
    """A golden image that exists on the simulated storage already: its volume is planted
    there and its image row registered with that root device. An existing image of that
    name is returned as it is (its volume planted again if it is missing)."""
    root_device = inventory.plant_volume(request.registry.settings, storage.name, name,
                                         size_mb=size_mb)
    image = request.dbsession.scalar(select(Image).where(Image.name == name))
    return image or request.find_service(DatacenterService).add_image(
        name, storage=storage, deployment_type=DEPLOYMENT_TYPE, root_device=root_device,
        size_mb=size_mb, actor=actor, comment=comment)


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


def _register_existing(request: Any) -> None:
    settings = request.registry.settings
    for name, cpus, memory_mb in HOSTS:
        host = _find_resource(request, name, VirtualizationKind.HOST)
        if host is not None:
            inventory.ensure_host(settings, host.mac, cpus, memory_mb, name=name)
    known = {machine.mac for machine in inventory.physical_machines(settings)}
    for name, *_ in PHYSICAL_MACHINES:
        machine = _find_resource(request, name, VirtualizationKind.PHYSICAL)
        if machine is not None and machine.mac not in known:
            inventory.register_physical(settings, machine.mac, name=name, cpus=machine.cpus,
                                        memory_mb=machine.memory_mb, nics=machine.nics,
                                        booted=True)
    for name, _comment in IMAGES:
        image = request.dbsession.scalar(select(Image).where(Image.name == name))
        if image is not None and image.storage is not None and image.storage.name == \
                STORAGE_NAME and image.root_device.startswith("sim:"):
            inventory.plant_volume(settings, image.storage.name, name, size_mb=image.size_mb)


def _kernel(request: Any, datacenter: DatacenterService, name: str, *, version: str,
            actor: Actor) -> Kernel:
    kernel = request.dbsession.scalar(select(Kernel).where(Kernel.name == name))
    return kernel or datacenter.add_kernel(name, version=version, actor=actor)


def _describe(request: Any, storage: Storage, *, created: bool) -> dict[str, Any]:
    db = request.dbsession
    names = [name for name, *_ in HOSTS] + [name for name, *_ in PHYSICAL_MACHINES]
    resources = {(resource.kind, resource.name): resource for resource in db.scalars(
        select(Resource).where(Resource.name.in_(names)).order_by(Resource.id.desc()))}
    hosts = [name for name, *_ in HOSTS if (VirtualizationKind.HOST, name) in resources]
    machines = [name for name, *_ in PHYSICAL_MACHINES
                if (VirtualizationKind.PHYSICAL, name) in resources]
    images = db.scalars(select(Image.name).where(Image.storage_id == storage.id,
                                                 Image.is_master.is_(True)).order_by(Image.id))
    kernels = db.scalars(select(Kernel.name).where(Kernel.name.in_([k for k, _ in KERNELS]))
                         .order_by(Kernel.id))
    return {"created": created, "hosts": hosts, "machines": machines,
            "storage": storage.name, "kernels": list(kernels), "images": list(images)}
