"""The demo datacenter built through the engine's services."""

from __future__ import annotations

from sqlalchemy import select

from engine.datacenter.models import Image, Resource, ResourceState, Storage
from engine.monitoring.services import plugins_monitor_job
from engine.plugins.manager import PluginService
from engine.plugins.models import PluginState
from plugins.sim.demo import build_datacenter
from plugins.sim.models import SimHost, SimMachine, SimVolume
from tests.unit.sim.conftest import count

EXPECTED = {
    "hosts": ["sim-host-1", "sim-host-2"],
    "machines": ["sim-physical-1", "sim-physical-2"],
    "storage": "sim-storage-1",
    "kernels": ["default", "linux-6.1"],
    "images": ["debian-12", "ubuntu-24.04"],
}


def by_name(request, name: str) -> Resource:
    return request.dbsession.scalars(select(Resource).where(Resource.name == name)).one()


def test_build_datacenter_enables_and_starts_the_plugin(pyramid_request, admin_actor):
    build_datacenter(pyramid_request, actor=admin_actor)

    assert pyramid_request.find_service(PluginService).states()["sim"] is PluginState.STARTED


def test_build_datacenter_creates_hosts_storage_kernels_images_and_machines(sim,
                                                                            admin_actor):
    built = build_datacenter(sim, actor=admin_actor)

    assert built == dict(EXPECTED, created=True)
    host = by_name(sim, "sim-host-1")
    assert (host.state, host.cpus, host.memory_mb) == (ResourceState.ACTIVE, 16, 32768)
    assert (sim.dbsession.get(SimHost, host.id).cpus,
            sim.dbsession.get(SimHost, by_name(sim, "sim-host-2").id).memory_mb) == (16, 16384)
    storage = sim.dbsession.scalars(select(Storage).where(Storage.name == "sim-storage-1")).one()
    assert (storage.storage_type, storage.capacity_mb) == ("sim-storage", 200000)
    debian = sim.dbsession.scalars(select(Image).where(Image.name == "debian-12")).one()
    assert (debian.root_device, debian.size_mb) == ("sim:sim-storage-1/debian-12", 4000)
    assert count(sim, SimVolume, SimVolume.storage_id == storage.id) == 2
    machine = by_name(sim, "sim-physical-1")
    assert (machine.cpus, machine.memory_mb, machine.nics) == (4, 8192, 2)
    assert machine.virtualization_type.name == "physical"
    assert sim.dbsession.get(SimMachine, machine.id).powered is True


def test_build_datacenter_twice_creates_things_once(sim, admin_actor):
    build_datacenter(sim, actor=admin_actor)
    resources, images = count(sim, Resource), count(sim, Image)

    again = build_datacenter(sim, actor=admin_actor)

    assert again == dict(EXPECTED, created=False)
    assert (count(sim, Resource), count(sim, Image)) == (resources, images)
    assert count(sim, SimVolume) == 2


def test_demo_machines_report_idle_after_their_boot(sim, admin_actor):
    build_datacenter(sim, actor=admin_actor)
    machine = by_name(sim, "sim-physical-1")
    assert machine.state is ResourceState.BOOTING

    plugins_monitor_job(sim)

    assert machine.state is ResourceState.IDLE
    assert by_name(sim, "sim-physical-2").state is ResourceState.IDLE
    assert by_name(sim, "sim-host-1").state is ResourceState.ACTIVE
