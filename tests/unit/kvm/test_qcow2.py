"""The qcow2 storage driver with the local executor, for real: qemu-img makes, clones,
snapshots, grows and removes files under ``tmp_path``; qemu-io reads and writes them; the
domains that get them as disks are on libvirt's test driver."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from engine.errors import CapacityError, DriverError, ValidationError
from engine.plugins.drivers import (
    HostRef,
    MachineRef,
    StorageDriver,
    StorageRef,
    SupportsBootParameters,
)
from plugins.kvm.drivers import KvmDriver
from tests.unit.kvm.conftest import new_mac, spec


def qemu_io(path: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-io", "-c", command, path], capture_output=True, text=True,
                          timeout=30, check=False)


def holds(path: str, byte: int, offset: int = 0, length: str = "64k") -> bool:
    """Whether the image reads ``byte`` throughout ``length`` at ``offset``."""
    result = qemu_io(path, f"read -P 0x{byte:02x} {offset} {length}")
    return result.returncode == 0 and "Pattern verification failed" not in result.stdout


def write(path: str, byte: int, offset: int = 0, length: str = "64k") -> None:
    result = qemu_io(path, f"write -P 0x{byte:02x} {offset} {length}")
    assert result.returncode == 0, result.stdout + result.stderr


def info(path: str) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                     capture_output=True, check=True, timeout=30).stdout)


def test_the_driver_implements_the_protocol(qcow2):
    assert isinstance(qcow2, StorageDriver)
    assert isinstance(qcow2, SupportsBootParameters)
    assert qcow2.storage_type == "qcow2"


def test_create_makes_a_qcow2_file_of_that_size_once(qcow2, storage):
    path = qcow2.create_volume(storage, name="qrm-img-1", size_mb=64)
    again = qcow2.create_volume(storage, name="qrm-img-1", size_mb=64)

    assert path == again == f"{storage.settings['directory']}/qrm-img-1.qcow2"
    assert (info(path)["format"], info(path)["virtual-size"]) == ("qcow2", 64 * 1024 * 1024)
    [listed] = qcow2.list_volumes(storage)
    assert (listed.name, listed.root_device, listed.size_mb, listed.origin) == (
        "qrm-img-1", path, 64, None)
    with pytest.raises(ValidationError, match="64 MB exists already"):
        qcow2.create_volume(storage, name="qrm-img-1", size_mb=128)


def test_a_clone_reads_its_golden_image_and_keeps_its_writes_to_itself(qcow2, storage):
    golden = qcow2.create_volume(storage, name="golden", size_mb=16)
    write(golden, 0xAA, 0, "1M")

    clone = qcow2.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                               size_mb=32)

    assert info(clone)["backing-filename"] == golden
    assert info(clone)["backing-filename-format"] == "qcow2"
    assert holds(clone, 0xAA, 0, "1M")  # reads the golden image's data
    write(clone, 0xBB, 0, "64k")
    assert holds(clone, 0xBB, 0, "64k")
    assert holds(clone, 0xAA, 65536, "64k")
    assert holds(golden, 0xAA, 0, "1M")  # the golden image is unchanged
    assert os.path.getsize(clone) < 2 * 1024 * 1024  # copy-on-write, not a copy
    listed = {volume.root_device: volume for volume in qcow2.list_volumes(storage)}
    assert (listed[clone].origin, listed[clone].size_mb) == (golden, 32)


def test_cloning_again_returns_the_clone_untouched(qcow2, storage):
    golden = qcow2.create_volume(storage, name="golden", size_mb=16)
    clone = qcow2.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                               size_mb=16)
    write(clone, 0xBB)

    again = qcow2.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                               size_mb=16)

    assert again == clone
    assert holds(clone, 0xBB)  # not made anew over the VM's writes
    other = qcow2.create_volume(storage, name="other", size_mb=16)
    with pytest.raises(ValidationError, match="not a clone of"):
        qcow2.clone_volume(storage, source_root_device=other, name="qrm-img-2", size_mb=16)


def test_a_clone_is_never_smaller_than_its_origin(qcow2, storage):
    golden = qcow2.create_volume(storage, name="golden", size_mb=48)
    clone = qcow2.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                               size_mb=16)
    assert info(clone)["virtual-size"] == 48 * 1024 * 1024


def test_cloning_what_is_not_there_is_a_driver_error(qcow2, storage):
    missing = f"{storage.settings['directory']}/golden.qcow2"
    with pytest.raises(DriverError, match="no volume"):
        qcow2.clone_volume(storage, source_root_device=missing, name="qrm-img-2", size_mb=16)
    assert qcow2.list_volumes(storage) == []


def test_root_devices_outside_the_directory_are_refused(qcow2, storage, tmp_path):
    outside = tmp_path / "elsewhere.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(outside), "1M"], check=True)
    for root_device in (str(outside), f"{storage.settings['directory']}/../elsewhere.qcow2",
                        f"{storage.settings['directory']}/x.raw", "relative.qcow2"):
        with pytest.raises(DriverError, match="is not a volume of storage"):
            qcow2.remove_volume(storage, root_device=root_device)
    assert outside.exists()


def test_resize_grows_once_and_never_shrinks(qcow2, storage):
    path = qcow2.create_volume(storage, name="qrm-img-1", size_mb=16)
    write(path, 0xCC)

    qcow2.resize_volume(storage, root_device=path, size_mb=64)
    qcow2.resize_volume(storage, root_device=path, size_mb=64)

    assert info(path)["virtual-size"] == 64 * 1024 * 1024
    assert holds(path, 0xCC)
    with pytest.raises(ValidationError, match="cannot shrink"):
        qcow2.resize_volume(storage, root_device=path, size_mb=32)


def test_a_snapshot_keeps_the_data_of_its_moment(qcow2, storage):
    path = qcow2.create_volume(storage, name="qrm-img-1", size_mb=16)
    write(path, 0xAA)

    snapshot = qcow2.snapshot_volume(storage, source_root_device=path, name="qrm-snap-1")
    again = qcow2.snapshot_volume(storage, source_root_device=path, name="qrm-snap-1")
    write(path, 0xBB)

    assert snapshot == again == f"{path}@qrm-snap-1"
    assert [s["name"] for s in info(path)["snapshots"]] == ["qrm-snap-1"]
    applied = subprocess.run(["qemu-img", "snapshot", "-a", "qrm-snap-1", path],
                             capture_output=True, timeout=30, check=False)
    assert applied.returncode == 0, applied.stderr
    assert holds(path, 0xAA)  # back to the snapshot's data
    origins = {volume.root_device: volume.origin for volume in qcow2.list_volumes(storage)}
    assert origins == {path: None, snapshot: path}
    with pytest.raises(DriverError, match="read-only"):
        qcow2.resize_volume(storage, root_device=snapshot, size_mb=32)
    with pytest.raises(DriverError, match="is a snapshot"):
        qcow2.clone_volume(storage, source_root_device=snapshot, name="qrm-img-3", size_mb=16)

    qcow2.remove_volume(storage, root_device=snapshot)
    qcow2.remove_volume(storage, root_device=snapshot)
    assert "snapshots" not in info(path)


def test_remove_is_refused_while_clones_or_snapshots_depend_on_it(qcow2, storage):
    golden = qcow2.create_volume(storage, name="golden", size_mb=16)
    clone = qcow2.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                               size_mb=16)

    with pytest.raises(DriverError, match="remove them first"):
        qcow2.remove_volume(storage, root_device=golden)

    qcow2.remove_volume(storage, root_device=clone)
    qcow2.remove_volume(storage, root_device=clone)
    assert not os.path.exists(clone)
    qcow2.remove_volume(storage, root_device=golden)
    assert qcow2.list_volumes(storage) == []
    assert os.listdir(storage.settings["directory"]) == []


def test_what_does_not_fit_raises_capacity_error_and_makes_nothing(qcow2, storage):
    bounded = StorageRef(id=storage.id, name=storage.name, storage_type="qcow2",
                         capacity_mb=100, settings=storage.settings)
    golden = qcow2.create_volume(bounded, name="golden", size_mb=60)

    with pytest.raises(CapacityError, match="40 MB free"):
        qcow2.create_volume(bounded, name="qrm-img-2", size_mb=60)
    with pytest.raises(CapacityError):
        qcow2.clone_volume(bounded, source_root_device=golden, name="qrm-img-3", size_mb=10)
    with pytest.raises(CapacityError):
        qcow2.resize_volume(bounded, root_device=golden, size_mb=120)

    assert [(volume.name, volume.size_mb) for volume in qcow2.list_volumes(bounded)] == [
        ("golden", 60)]


def test_an_empty_or_missing_directory_lists_nothing(qcow2, storage):
    assert not pathlib.Path(storage.settings["directory"]).exists()
    assert qcow2.list_volumes(storage) == []


def test_a_file_that_is_no_qcow2_image_is_a_driver_error(qcow2, storage):
    directory = pathlib.Path(storage.settings["directory"])
    directory.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(directory / "raw.qcow2"),
                    "1M"], check=True)
    with pytest.raises(DriverError, match="not a qcow2 image"):
        qcow2.list_volumes(storage)


def test_storage_of_another_type_is_refused(qcow2, storage):
    other = StorageRef(id=1, name="nfs", storage_type="sim-storage", settings=storage.settings)
    with pytest.raises(DriverError, match="not qcow2"):
        qcow2.list_volumes(other)


# -- the disk of a VM ---------------------------------------------------------------------
def disks(driver: KvmDriver, host: HostRef) -> dict[str, list[str]]:
    """Each domain's disk files, in its definition."""
    import libvirt

    from plugins.kvm.domain import disks_of

    connection = driver.pool.get(host.settings["uri"])
    return {vm.name: list(disks_of(connection.lookupByName(vm.name).XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE))) for vm in driver.list_vms(host)}


def test_authenticate_makes_the_volume_the_disk_of_exactly_that_vm(qcow2, storage, host,
                                                                   driver):
    golden = qcow2.create_volume(storage, name="golden", size_mb=16)
    clone = qcow2.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                               size_mb=16)
    driver.create_vm(host, spec("qrm-vm-5"))
    driver.create_vm(host, spec("qrm-vm-6"))
    vm5 = MachineRef(id=5, mac=new_mac(), name="vm5", kind="vm")
    vm6 = MachineRef(id=6, mac=new_mac(), name="vm6", kind="vm")

    qcow2.authenticate(storage, root_device=clone, machine=vm5)
    qcow2.authenticate(storage, root_device=clone, machine=vm5)
    assert disks(driver, host) == {"qrm-vm-5": [clone], "qrm-vm-6": []}

    qcow2.authenticate(storage, root_device=clone, machine=vm6)
    assert disks(driver, host) == {"qrm-vm-5": [], "qrm-vm-6": [clone]}

    driver.reboot_vm(host, "qrm-vm-6")  # the engine's reboot into the appliance
    assert driver.disk_users(host, clone) == ["qrm-vm-6"]

    qcow2.authenticate(storage, root_device=clone, machine=None)
    assert disks(driver, host) == {"qrm-vm-5": [], "qrm-vm-6": []}


def test_only_a_vm_on_the_storages_host_can_have_the_volume(qcow2, storage, host, driver):
    path = qcow2.create_volume(storage, name="qrm-img-1", size_mb=16)
    physical = MachineRef(id=3, mac=new_mac(), name="box", kind="physical")
    elsewhere = MachineRef(id=4, mac=new_mac(), name="vm-elsewhere", kind="vm")

    with pytest.raises(DriverError, match="physical machine"):
        qcow2.authenticate(storage, root_device=path, machine=physical)
    with pytest.raises(DriverError, match="no VM qrm-vm-4"):
        qcow2.authenticate(storage, root_device=path, machine=elsewhere)


def test_removing_a_volume_takes_it_off_the_vm_first(qcow2, storage, host, driver):
    path = qcow2.create_volume(storage, name="qrm-img-1", size_mb=16)
    driver.create_vm(host, spec("qrm-vm-5"))
    qcow2.authenticate(storage, root_device=path,
                       machine=MachineRef(id=5, mac=new_mac(), kind="vm"))

    qcow2.remove_volume(storage, root_device=path)

    assert disks(driver, host) == {"qrm-vm-5": []}
    assert not os.path.exists(path)


def test_boot_parameters_mount_the_vms_disk_as_root(qcow2, storage):
    assert qcow2.boot_parameters(storage, root_device="/x/qrm-img-1.qcow2",
                                 root_fs_type="ext4", deployment_type="qcow2") == {
        "root": "local", "rootdev": "/dev/vda", "rootfstype": "ext4"}
