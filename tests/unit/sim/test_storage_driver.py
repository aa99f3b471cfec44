"""The simulated storage driver: volumes, clones, snapshots, growth, authorisation, capacity,
kept in the sim's own state by storage name."""

from __future__ import annotations

import dataclasses

import pytest

from engine.errors import CapacityError, DriverError, ValidationError
from engine.plugins.drivers import MachineRef, StorageDriver, StorageRef, VolumeInfo
from plugins.sim import inventory


def volume(settings, root_device):
    return inventory.volume(settings, root_device)


def root_devices(driver, storage):
    return [info.root_device for info in driver.list_volumes(storage)]


def test_driver_implements_the_storage_driver_protocol(storage_driver):
    assert isinstance(storage_driver, StorageDriver)
    assert storage_driver.storage_type == "sim-storage"


def test_create_volume_returns_sim_root_device_and_lists_it(settings, storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=1000)

    assert root_device == "sim:test-sim-storage/data"
    assert storage_driver.list_volumes(storage) == [
        VolumeInfo(name="data", root_device=root_device, size_mb=1000, origin=None)]
    assert volume(settings, root_device).kind == "volume"


def test_create_volume_is_idempotent_by_name(settings, storage, storage_driver):
    first = storage_driver.create_volume(storage, name="data", size_mb=1000)
    again = storage_driver.create_volume(storage, name="data", size_mb=1000)

    assert again == first
    assert len(inventory.volumes(settings, storage)) == 1
    with pytest.raises(ValidationError):
        storage_driver.create_volume(storage, name="data", size_mb=2000)  # not the same ask


def test_create_volume_refuses_a_name_taken_by_a_clone(storage, storage_driver):
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
    assert storage_driver.list_volumes(storage) == []


def test_create_volume_beyond_capacity_raises_and_leaves_nothing(storage, storage_driver):
    storage_driver.create_volume(storage, name="big", size_mb=9000)

    with pytest.raises(CapacityError) as error:
        storage_driver.create_volume(storage, name="too-big", size_mb=1001)

    assert "test-sim-storage" in error.value.message
    assert "1000 MB free" in error.value.message
    assert "1001 MB asked" in error.value.message
    assert root_devices(storage_driver, storage) == ["sim:test-sim-storage/big"]


def test_volume_filling_capacity_exactly_fits(storage, storage_driver):
    storage_driver.create_volume(storage, name="all", size_mb=10000)

    assert storage_driver.used_mb(storage) == 10000


def test_storage_without_capacity_is_unlimited(storage_driver):
    unlimited = StorageRef(id=2, name="unlimited", storage_type="sim-storage", capacity_mb=0)

    storage_driver.create_volume(unlimited, name="huge", size_mb=10_000_000)

    assert storage_driver.used_mb(unlimited) == 10_000_000


def test_capacity_is_the_one_the_engine_passes_now(storage, storage_driver):
    storage_driver.create_volume(storage, name="data", size_mb=8000)
    shrunk = dataclasses.replace(storage, capacity_mb=8500)

    with pytest.raises(CapacityError, match="500 MB free"):
        storage_driver.create_volume(shrunk, name="more", size_mb=1000)


def test_clone_keeps_its_origin_and_is_idempotent_by_name(settings, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=2000)

    clone = storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                        size_mb=3000)
    again = storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                        size_mb=3000)

    assert clone == again == "sim:test-sim-storage/copy"
    cloned = volume(settings, clone)
    assert (cloned.kind, cloned.origin, cloned.size_mb) == ("clone", origin, 3000)
    assert storage_driver.list_volumes(storage)[1].origin == origin
    assert storage_driver.used_mb(storage) == 5000


def test_clone_is_never_smaller_than_its_origin(settings, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=4000)

    clone = storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                        size_mb=2000)

    assert volume(settings, clone).size_mb == 4000


def test_clone_name_taken_by_a_clone_of_another_origin_is_refused(storage, storage_driver):
    first = storage_driver.create_volume(storage, name="first", size_mb=1000)
    second = storage_driver.create_volume(storage, name="second", size_mb=1000)
    storage_driver.clone_volume(storage, source_root_device=first, name="copy", size_mb=1000)

    with pytest.raises(ValidationError):
        storage_driver.clone_volume(storage, source_root_device=second, name="copy",
                                    size_mb=1000)


def test_clone_of_a_missing_volume_raises_driver_error(storage, storage_driver):
    with pytest.raises(DriverError, match="no volume sim:test-sim-storage/none"):
        storage_driver.clone_volume(storage, source_root_device="sim:test-sim-storage/none",
                                    name="copy", size_mb=1000)


def test_clone_beyond_capacity_raises_and_leaves_nothing(storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=6000)

    with pytest.raises(CapacityError):
        storage_driver.clone_volume(storage, source_root_device=origin, name="copy",
                                    size_mb=6000)

    assert root_devices(storage_driver, storage) == [origin]


def test_snapshot_is_read_only_reserves_the_origin_size_and_is_idempotent(
        settings, storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=2000)

    snapshot = storage_driver.snapshot_volume(storage, source_root_device=origin, name="snap")
    again = storage_driver.snapshot_volume(storage, source_root_device=origin, name="snap")

    assert snapshot == again == "sim:test-sim-storage/snap"
    assert (volume(settings, snapshot).kind, volume(settings, snapshot).size_mb) == (
        "snapshot", 2000)
    with pytest.raises(DriverError, match="read-only"):
        storage_driver.resize_volume(storage, root_device=snapshot, size_mb=3000)
    with pytest.raises(ValidationError):
        storage_driver.clone_volume(storage, source_root_device=origin, name="snap",
                                    size_mb=2000)  # a snapshot is not a clone


def test_snapshot_beyond_capacity_raises_and_leaves_nothing(storage, storage_driver):
    origin = storage_driver.create_volume(storage, name="golden", size_mb=6000)

    with pytest.raises(CapacityError):
        storage_driver.snapshot_volume(storage, source_root_device=origin, name="snap")

    assert len(storage_driver.list_volumes(storage)) == 1


def test_resize_grows_volume_and_the_same_size_is_left_alone(settings, storage,
                                                             storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=1000)

    storage_driver.resize_volume(storage, root_device=root_device, size_mb=2500)
    storage_driver.resize_volume(storage, root_device=root_device, size_mb=2500)

    assert volume(settings, root_device).size_mb == 2500
    assert storage_driver.used_mb(storage) == 2500


def test_resize_refuses_to_shrink_naming_disk_mb(settings, storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=2000)

    with pytest.raises(ValidationError) as error:
        storage_driver.resize_volume(storage, root_device=root_device, size_mb=1000)

    assert error.value.field == "disk_mb"
    assert volume(settings, root_device).size_mb == 2000


def test_resize_beyond_capacity_keeps_the_old_size(settings, storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=2000)
    storage_driver.create_volume(storage, name="other", size_mb=7000)

    with pytest.raises(CapacityError) as error:
        storage_driver.resize_volume(storage, root_device=root_device, size_mb=4000)

    assert "1000 MB free" in error.value.message
    assert "2000 MB asked" in error.value.message
    assert volume(settings, root_device).size_mb == 2000


def test_remove_volume_frees_its_space(storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=2000)

    storage_driver.remove_volume(storage, root_device=root_device)

    assert storage_driver.list_volumes(storage) == []
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
    assert storage_driver.list_volumes(storage) == []


def test_authenticate_sets_and_clears_the_authorized_machine(settings, storage,
                                                             storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=1000)
    machine = MachineRef(id=42, mac="52:54:00:AA:BB:CC", name="box")

    storage_driver.authenticate(storage, root_device=root_device, machine=machine)
    storage_driver.authenticate(storage, root_device=root_device, machine=machine)
    authorized = volume(settings, root_device)
    assert (authorized.authorized_mac, authorized.authorized_id) == ("52:54:00:aa:bb:cc", 42)

    storage_driver.authenticate(storage, root_device=root_device, machine=None)
    assert volume(settings, root_device).authorized_mac is None


def test_authenticate_missing_volume_raises_driver_error(storage, storage_driver):
    with pytest.raises(DriverError):
        storage_driver.authenticate(storage, root_device="sim:test-sim-storage/none",
                                    machine=None)


def test_root_device_of_another_storage_is_refused(storage, storage_driver):
    other = StorageRef(id=2, name="other", storage_type="sim-storage")
    foreign = storage_driver.create_volume(other, name="data", size_mb=1000)

    with pytest.raises(DriverError, match="not a volume of storage test-sim-storage"):
        storage_driver.remove_volume(storage, root_device=foreign)
    assert root_devices(storage_driver, other) == [foreign]


def test_list_volumes_lists_only_that_storage_oldest_first(storage, storage_driver):
    other = StorageRef(id=2, name="other", storage_type="sim-storage")
    storage_driver.create_volume(storage, name="b", size_mb=10)
    storage_driver.create_volume(other, name="elsewhere", size_mb=10)
    storage_driver.create_volume(storage, name="a", size_mb=10)

    assert root_devices(storage_driver, storage) == ["sim:test-sim-storage/b",
                                                     "sim:test-sim-storage/a"]


def test_storages_are_known_by_name(storage, storage_driver):
    storage_driver.create_volume(storage, name="data", size_mb=10)
    same_name_other_id = dataclasses.replace(storage, id=99)

    assert root_devices(storage_driver, same_name_other_id) == ["sim:test-sim-storage/data"]


def test_a_storage_of_another_type_is_refused(storage_driver):
    lvm = StorageRef(id=3, name="lvm-1", storage_type="lvm-storage")

    with pytest.raises(DriverError, match="not sim-storage"):
        storage_driver.create_volume(lvm, name="data", size_mb=10)


def test_volumes_survive_the_engine_transaction(sim, storage, storage_driver):
    storage_driver.create_volume(storage, name="data", size_mb=10)

    sim.tm.abort()
    sim.tm.begin()

    assert root_devices(storage_driver, storage) == ["sim:test-sim-storage/data"]
