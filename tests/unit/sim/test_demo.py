"""The demo datacenter: engine rows through the services, boxes and golden images in the
simulated datacenter."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.datacenter.models import Image, Resource, ResourceState, Storage
from engine.monitoring.services import plugins_monitor_job
from engine.plugins.manager import PluginService
from engine.plugins.models import PluginState
from plugins.sim import inventory
from plugins.sim.demo import add_master_image, build_datacenter

EXPECTED = {
    "hosts": ["sim-host-1", "sim-host-2"],
    "machines": ["sim-physical-1", "sim-physical-2"],
    "storage": "sim-storage-1",
    "kernels": ["default", "linux-6.1"],
    "images": ["debian-12", "ubuntu-24.04"],
}


def by_name(request, name: str) -> Resource:
    return request.dbsession.scalars(select(Resource).where(Resource.name == name)).one()


def count(request, model) -> int:
    return request.dbsession.scalar(select(func.count()).select_from(model))


def test_build_datacenter_enables_and_starts_the_plugin(pyramid_request, admin_actor):
    build_datacenter(pyramid_request, actor=admin_actor)

    assert pyramid_request.find_service(PluginService).states()["sim"] is PluginState.STARTED


def test_build_datacenter_creates_rows_and_registers_the_boxes(sim, settings, admin_actor):
    built = build_datacenter(sim, actor=admin_actor)

    assert built == dict(EXPECTED, created=True)
    host = by_name(sim, "sim-host-1")
    assert (host.state, host.cpus, host.memory_mb) == (ResourceState.ACTIVE, 16, 32768)
    boxes = {h.mac: h for h in inventory.hosts(settings)}
    assert (boxes[host.mac].cpus, boxes[by_name(sim, "sim-host-2").mac].memory_mb) == (16,
                                                                                       16384)
    machine = by_name(sim, "sim-physical-1")
    assert (machine.cpus, machine.memory_mb, machine.nics) == (4, 8192, 2)
    assert machine.virtualization_type.name == "physical"
    assert machine.state is ResourceState.BOOTING
    assert inventory.machine_by_mac(settings, machine.mac).powered is True
    assert len(inventory.physical_machines(settings)) == 2


def test_the_master_images_are_golden_volumes_on_the_simulated_storage(sim, settings,
                                                                       admin_actor):
    build_datacenter(sim, actor=admin_actor)

    storage = sim.dbsession.scalars(select(Storage).where(Storage.name == "sim-storage-1")
                                    ).one()
    assert (storage.storage_type, storage.capacity_mb) == ("sim-storage", 200000)
    debian = sim.dbsession.scalars(select(Image).where(Image.name == "debian-12")).one()
    assert (debian.root_device, debian.size_mb, debian.is_master) == (
        "sim:sim-storage-1/debian-12", 4000, True)
    assert [(v.root_device, v.size_mb, v.kind) for v in inventory.volumes(settings, storage)
            ] == [("sim:sim-storage-1/debian-12", 4000, "volume"),
                  ("sim:sim-storage-1/ubuntu-24.04", 4000, "volume")]


def test_build_datacenter_twice_creates_things_once(sim, settings, admin_actor):
    build_datacenter(sim, actor=admin_actor)
    resources, images = count(sim, Resource), count(sim, Image)

    again = build_datacenter(sim, actor=admin_actor)

    assert again == dict(EXPECTED, created=False)
    assert (count(sim, Resource), count(sim, Image)) == (resources, images)
    assert len(inventory.volumes(settings, "sim-storage-1")) == 2
    assert len(inventory.hosts(settings)) == 2


def test_build_datacenter_registers_the_boxes_again_in_a_new_state_file(
        sim, settings, admin_actor, tmp_path, monkeypatch):
    build_datacenter(sim, actor=admin_actor)
    monkeypatch.setitem(settings, "qrm.sim.state", str(tmp_path / "fresh.sqlite"))

    build_datacenter(sim, actor=admin_actor)

    assert len(inventory.hosts(settings)) == 2
    assert len(inventory.physical_machines(settings)) == 2
    assert len(inventory.volumes(settings, "sim-storage-1")) == 2


def test_add_master_image_plants_its_volume_once(sim, settings, datacenter, admin_actor):
    storage = datacenter.add_storage("gold", storage_type="sim-storage", actor=admin_actor)

    image = add_master_image(sim, "golden", storage=storage, size_mb=100, actor=admin_actor)
    again = add_master_image(sim, "golden", storage=storage, size_mb=100, actor=admin_actor)

    assert again.id == image.id
    assert image.root_device == "sim:gold/golden"
    assert [v.root_device for v in inventory.volumes(settings, storage)] == [image.root_device]


def test_demo_machines_report_idle_after_their_boot(sim, admin_actor):
    build_datacenter(sim, actor=admin_actor)
    machine = by_name(sim, "sim-physical-1")
    assert machine.state is ResourceState.BOOTING

    plugins_monitor_job(sim)

    assert machine.state is ResourceState.IDLE
    assert by_name(sim, "sim-physical-2").state is ResourceState.IDLE
    assert by_name(sim, "sim-host-1").state is ResourceState.ACTIVE


def test_a_new_demo_formats_the_demo_storage_of_an_earlier_database(sim, settings,
                                                                    admin_actor):
    golden = inventory.plant_volume(settings, "sim-storage-1", "debian-12", size_mb=4000)
    inventory.plant_volume(settings, "sim-storage-1", "qrm-img-1", size_mb=1, origin=golden)
    inventory.plant_volume(settings, "elsewhere", "kept", size_mb=1)

    build_datacenter(sim, actor=admin_actor)

    assert [v.name for v in inventory.volumes(settings, "sim-storage-1")] == [
        "debian-12", "ubuntu-24.04"]
    assert len(inventory.volumes(settings, "elsewhere")) == 1
