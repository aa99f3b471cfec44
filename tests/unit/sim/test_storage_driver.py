"""The simulated storage driver: volumes, clones, snapshots, growth, authorisation, capacity."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine.datacenter.models import Image
from engine.errors import CapacityError, DriverError, ValidationError
from engine.plugins.drivers import StorageDriver
from plugins.sim.demo import add_storage
from plugins.sim.models import SimVolume, SimVolumeKind
from tests.unit.sim.conftest import count, volumes_on


def volume(request, root_device: str) -> SimVolume:
    return request.dbsession.scalars(
        select(SimVolume).where(SimVolume.root_device == root_device)).one()


def test_driver_implements_the_storage_driver_protocol(storage_driver):
    assert isinstance(storage_driver, StorageDriver)
    assert storage_driver.storage_type == "sim-storage"


def test_create_volume_returns_sim_root_device_and_lists_it(sim, storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=1000)

    assert root_device == "sim:test-sim-storage/data"
    assert storage_driver.list_root_devices(storage) == [root_device]
    created = volume(sim, root_device)
    assert (created.kind, created.size_mb, created.origin_id) == (SimVolumeKind.VOLUME, 1000,
                                                                  None)


def test_create_volume_is_idempotent_by_name(sim, storage, storage_driver):
    first = storage_driver.create_volume(storage, name="data", size_mb=1000)
    again = storage_driver.create_volume(storage, name="data", size_mb=1000)

    assert again == first
    assert volumes_on(sim, storage) == 1
    with pytest.raises(ValidationError):
        storage_driver.create_volume(storage, name="data", size_mb=2000)  # not the same ask


def test_create_volume_refuses_a_name_taken_by_a_clone(sim, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="origin", size_mb=1000)
    storage_driver.clone_volume(storage, source_root_device=origin, name="taken", size_mb=1000)

    with pytest.raises(ValidationError) as error:
        storage_driver.create_volume(storage, name="taken", size_mb=1000)
    assert error.value.field == "name"


def test_create_volume_refuses_invalid_name_and_size(storage, storage_driver):
    with pytest.raises(ValidationError):
        storage_driver.create_volume(storage, name="../etc", size_mb=1000)
    with pytest.raises(ValidationError):
        storage_driver.create_volume(storage, name="data", size_mb=0)


def test_create_volume_beyond_capacity_raises_and_leaves_nothing(sim, storage, storage_driver):
    storage_driver.create_volume(storage, name="big", size_mb=9000)

    with pytest.raises(CapacityError) as error:
        storage_driver.create_volume(storage, name="too-big", size_mb=1001)

    assert "test-sim-storage" in error.value.message
    assert "1000 MB free" in error.value.message
    assert "1001 MB asked" in error.value.message
    assert storage_driver.list_root_devices(storage) == ["sim:test-sim-storage/big"]


def test_volume_filling_capacity_exactly_fits(storage, storage_driver):
    storage_driver.create_volume(storage, name="all", size_mb=10000)

    assert storage_driver.used_mb(storage) == 10000


def test_storage_without_capacity_is_unlimited(sim, storage_driver, admin_actor):
    unlimited = add_storage(sim, "unlimited", capacity_mb=0, actor=admin_actor)

    storage_driver.create_volume(unlimited, name="huge", size_mb=10_000_000)

    assert storage_driver.used_mb(unlimited) == 10_000_000


def test_clone_shares_origin_and_is_idempotent_by_name(sim, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=2000)

    clone = storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                        size_mb=3000)
    again = storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                        size_mb=3000)

    assert clone == again == "sim:test-sim-storage/copy"
    cloned = volume(sim, clone)
    assert cloned.kind is SimVolumeKind.CLONE
    assert cloned.origin_id == volume(sim, origin).id
    assert cloned.size_mb == 3000
    assert volumes_on(sim, storage) == 2
    assert storage_driver.used_mb(storage) == 5000


def test_clone_is_never_smaller_than_its_origin(sim, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=4000)

    clone = storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                        size_mb=2000)

    assert volume(sim, clone).size_mb == 4000


def test_clone_name_taken_by_a_clone_of_another_origin_is_refused(storage, storage_driver):
    first = storage_driver.create_volume(storage, name="first", size_mb=1000)
    second = storage_driver.create_volume(storage, name="second", size_mb=1000)
    storage_driver.clone_volume(storage, source_root_device=first, name="copy", size_mb=1000)

    with pytest.raises(ValidationError):
        storage_driver.clone_volume(storage, source_root_device=second, name="copy",
                                    size_mb=1000)


def test_clone_beyond_capacity_raises_and_leaves_nothing(sim, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=6000)

    with pytest.raises(CapacityError) as error:
        storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                    size_mb=6000)

    assert "4000 MB free" in error.value.message
    assert storage_driver.list_root_devices(storage) == [origin]


def test_clone_of_missing_volume_raises_driver_error(storage, storage_driver):
    with pytest.raises(DriverError):
        storage_driver.clone_volume(storage, source_root_device="sim:test-sim-storage/none",
                                    name="copy", size_mb=1000)


def test_snapshot_is_read_only_and_idempotent_by_name(sim, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=2000)

    snapshot = storage_driver.snapshot_volume(storage, source_root_device=origin, name="snap")
    again = storage_driver.snapshot_volume(storage, source_root_device=origin, name="snap")

    assert snapshot == again == "sim:test-sim-storage/snap"
    taken = volume(sim, snapshot)
    assert (taken.kind, taken.size_mb) == (SimVolumeKind.SNAPSHOT, 2000)
    assert taken.origin_id == volume(sim, origin).id
    with pytest.raises(DriverError, match="read-only"):
        storage_driver.resize_volume(storage, root_device=snapshot, size_mb=3000)


def test_snapshot_beyond_capacity_raises_and_leaves_nothing(sim, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=6000)

    with pytest.raises(CapacityError):
        storage_driver.snapshot_volume(storage, source_root_device=origin, name="snap")

    assert volumes_on(sim, storage) == 1


def test_resize_grows_volume(sim, storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=1000)

    storage_driver.resize_volume(storage, root_device=root_device, size_mb=2500)
    storage_driver.resize_volume(storage, root_device=root_device, size_mb=2500)

    assert volume(sim, root_device).size_mb == 2500
    assert storage_driver.used_mb(storage) == 2500


def test_resize_refuses_to_shrink_naming_disk_mb(sim, storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=2000)

    with pytest.raises(ValidationError) as error:
        storage_driver.resize_volume(storage, root_device=root_device, size_mb=1000)

    assert error.value.field == "disk_mb"
    assert volume(sim, root_device).size_mb == 2000


def test_resize_beyond_capacity_keeps_the_old_size(sim, storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=2000)
    storage_driver.create_volume(storage, name="other", size_mb=7000)

    with pytest.raises(CapacityError) as error:
        storage_driver.resize_volume(storage, root_device=root_device, size_mb=4000)

    assert "1000 MB free" in error.value.message
    assert "2000 MB asked" in error.value.message
    assert volume(sim, root_device).size_mb == 2000


def test_remove_volume_frees_its_space(storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=2000)

    storage_driver.remove_volume(storage, root_device=root_device)

    assert storage_driver.list_root_devices(storage) == []
    assert storage_driver.used_mb(storage) == 0


def test_remove_missing_volume_is_not_an_error(storage, storage_driver):
    storage_driver.remove_volume(storage, root_device="sim:test-sim-storage/never-made")


def test_remove_volume_with_clones_or_snapshots_is_refused(storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=1000)
    clone = storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                        size_mb=1000)
    snapshot = storage_driver.snapshot_volume(storage, source_root_device=origin, name="snap")

    with pytest.raises(DriverError, match="2 clone"):
        storage_driver.remove_volume(storage, root_device=origin)

    storage_driver.remove_volume(storage, root_device=clone)
    storage_driver.remove_volume(storage, root_device=snapshot)
    storage_driver.remove_volume(storage, root_device=origin)
    assert storage_driver.list_root_devices(storage) == []


def test_authenticate_sets_and_clears_the_authorized_resource(sim, storage, storage_driver,
                                                              make_physical):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=1000)
    resource = make_physical()

    storage_driver.authenticate(storage, root_device=root_device, resource=resource)
    assert volume(sim, root_device).authorized_resource_id == resource.id

    storage_driver.authenticate(storage, root_device=root_device, resource=None)
    assert volume(sim, root_device).authorized_resource_id is None


def test_authenticate_missing_volume_raises_driver_error(storage, storage_driver):
    with pytest.raises(DriverError):
        storage_driver.authenticate(storage, root_device="sim:test-sim-storage/none",
                                    resource=None)


def test_root_device_of_another_storage_is_refused(sim, storage, storage_driver,
                                                   admin_actor):
    other = add_storage(sim, "other", capacity_mb=0, actor=admin_actor)
    foreign = storage_driver.create_volume(other, name="data", size_mb=1000)

    with pytest.raises(DriverError, match="not a volume of storage test-sim-storage"):
        storage_driver.remove_volume(storage, root_device=foreign)
    assert storage_driver.list_root_devices(other) == [foreign]


def test_list_root_devices_lists_only_that_storage_oldest_first(sim, storage,
                                                                storage_driver, admin_actor):
    other = add_storage(sim, "other", capacity_mb=0, actor=admin_actor)
    storage_driver.create_volume(storage, name="b", size_mb=10)
    storage_driver.create_volume(other, name="elsewhere", size_mb=10)
    storage_driver.create_volume(storage, name="a", size_mb=10)

    assert storage_driver.list_root_devices(storage) == ["sim:test-sim-storage/b",
                                                         "sim:test-sim-storage/a"]


def test_datacenter_creates_and_clones_images_on_sim_storage(sim, datacenter, storage,
                                                             storage_driver, admin_actor):
    master = datacenter.create_image("golden", storage=storage,
                                     deployment_type="sim-deployment", size_mb=4000,
                                     actor=admin_actor)
    clone = datacenter.clone_image(master, name="golden-clone", size_mb=5000,
                                   actor=admin_actor)
    again = datacenter.clone_image(master, name="golden-clone", size_mb=5000,
                                   actor=admin_actor)

    assert master.root_device == "sim:test-sim-storage/golden"
    assert again.id == clone.id
    assert volume(sim, clone.root_device).origin_id == volume(sim, master.root_device).id
    with pytest.raises(DriverError):
        datacenter.remove_image(master, actor=admin_actor)  # its clone shares its blocks
    datacenter.remove_image(clone, actor=admin_actor)
    datacenter.remove_image(master, actor=admin_actor)
    assert storage_driver.list_root_devices(storage) == []
    assert count(sim, Image, Image.name == "golden") == 0


def test_datacenter_image_beyond_capacity_leaves_no_volume(sim, datacenter, storage,
                                                           storage_driver, admin_actor):
    with pytest.raises(CapacityError):
        datacenter.create_image("huge", storage=storage, deployment_type="sim-deployment",
                                size_mb=20000, actor=admin_actor)

    assert storage_driver.list_root_devices(storage) == []
