"""The driver contract: what every ``VirtualizationDriver`` and ``StorageDriver`` must do,
whatever the backend (``engine.plugins.drivers``).

The engine makes every driver call after its commit and repeats it after a crash, so a driver
is idempotent by the name it is given, tells the truth in its lists (reconciliation compares
them with the rows), refuses what does not fit with ``CapacityError``, treats removing what is
missing as done, and raises ``HostUnreachable`` (never "it is gone") when its target does not
answer.

A backend plugs in by adding a factory to ``VIRTUALIZATION_BACKENDS`` / ``STORAGE_BACKENDS``:
a callable ``(tmp_path) -> backend`` giving the driver, a target with a given capacity, and a
way to make that target stop answering (``SimVirtualization`` and ``SimStorage`` below). The
kvm driver joins on libvirt's ``test:///`` driver (``KvmVirtualization``); its qcow2 storage
does not: its volumes are the disks of VMs on its own host only, so a physical machine is
refused (``tests/unit/kvm/test_qcow2.py``).
"""

from __future__ import annotations

import itertools
import pathlib
import types
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from engine.errors import CapacityError
from engine.plugins.drivers import (
    NAME_PREFIX,
    HostRef,
    HostUnreachable,
    MachineRef,
    StorageDriver,
    StorageRef,
    VirtualizationDriver,
    VmSpec,
)

_numbers = itertools.count(1)


def unique_mac() -> str:
    number = next(_numbers)
    return f"52:54:01:{number >> 16 & 255:02x}:{number >> 8 & 255:02x}:{number & 255:02x}"


# -- backends ----------------------------------------------------------------------------------
class VirtualizationBackend(Protocol):
    driver: VirtualizationDriver

    def host(self, *, cpus: int, memory_mb: int) -> HostRef:
        """A host the driver can use, with room for exactly ``cpus`` and ``memory_mb``."""

    def make_unreachable(self, host: HostRef) -> None:
        """From now on ``host`` does not answer."""


class StorageBackend(Protocol):
    driver: StorageDriver

    def storage(self, *, capacity_mb: int) -> StorageRef:
        """A storage the driver can use, holding at most ``capacity_mb``."""

    def make_unreachable(self, storage: StorageRef) -> None:
        """From now on ``storage`` does not answer."""


def _sim_request(tmp_path: pathlib.Path) -> Any:
    # Drivers get a request for its registry settings only: no database here at all.
    settings = {"qrm.sim.state": str(tmp_path / "contract-sim.sqlite"),
                "qrm.sim.boot_delay": "0"}
    return types.SimpleNamespace(registry=types.SimpleNamespace(settings=settings))


class SimVirtualization:
    def __init__(self, tmp_path: pathlib.Path) -> None:
        from plugins.sim.hooks import qrm_virtualization_drivers

        self.request = _sim_request(tmp_path)
        [self.driver] = qrm_virtualization_drivers(request=self.request)

    def host(self, *, cpus: int, memory_mb: int) -> HostRef:
        from plugins.sim import inventory

        mac = unique_mac()
        inventory.register_host(self.request.registry.settings, mac, cpus, memory_mb)
        return HostRef(id=next(_numbers), name=f"contract-host-{mac[-2:]}", mac=mac)

    def make_unreachable(self, host: HostRef) -> None:
        from plugins.sim import faults

        faults.unreachable(host, where=self.request.registry.settings)


class SimStorage:
    def __init__(self, tmp_path: pathlib.Path) -> None:
        from plugins.sim.hooks import qrm_storage_drivers

        self.request = _sim_request(tmp_path)
        [self.driver] = qrm_storage_drivers(request=self.request)

    def storage(self, *, capacity_mb: int) -> StorageRef:
        number = next(_numbers)
        return StorageRef(id=number, name=f"contract-storage-{number}",
                          storage_type=self.driver.storage_type, capacity_mb=capacity_mb)

    def make_unreachable(self, storage: StorageRef) -> None:
        from plugins.sim import faults

        faults.unreachable(storage, where=self.request.registry.settings)


class KvmVirtualization:
    """libvirt's test driver: each host a node file of its own (``test:///<file>``)."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        from plugins.kvm.drivers import ConnectionPool, KvmDriver

        self.tmp_path = tmp_path
        self.driver = KvmDriver(pool=ConnectionPool())

    def host(self, *, cpus: int, memory_mb: int) -> HostRef:
        number = next(_numbers)
        node = self.tmp_path / f"kvm-node-{number}.xml"
        node.write_text(f"<node><cpu><mhz>2000</mhz><model>x86_64</model><active>{cpus}"
                        f"</active><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores>"
                        f"<threads>1</threads></cpu><memory>{memory_mb * 1024}</memory></node>")
        return HostRef(id=number, name=f"contract-kvm-{number}", mac=unique_mac(),
                       settings={"uri": f"test://{node}", "domain_type": "test"})

    def make_unreachable(self, host: HostRef) -> None:
        uri = host.settings["uri"]
        self.driver.pool.drop(uri)  # the connection broke, and the host is gone
        node = pathlib.Path(uri[len("test://"):])
        node.rename(node.with_suffix(".gone"))


VIRTUALIZATION_BACKENDS: dict[str, Callable[[pathlib.Path], VirtualizationBackend]] = {
    "sim": SimVirtualization,
    "kvm": KvmVirtualization,
}
STORAGE_BACKENDS: dict[str, Callable[[pathlib.Path], StorageBackend]] = {
    "sim": SimStorage,
}


@pytest.fixture(params=sorted(VIRTUALIZATION_BACKENDS))
def hypervisor(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> VirtualizationBackend:
    return VIRTUALIZATION_BACKENDS[request.param](tmp_path)


@pytest.fixture(params=sorted(STORAGE_BACKENDS))
def storage_backend(request: pytest.FixtureRequest,
                    tmp_path: pathlib.Path) -> StorageBackend:
    return STORAGE_BACKENDS[request.param](tmp_path)


def vm_spec(number: int = 1, *, cpus: int = 1, memory_mb: int = 256) -> VmSpec:
    return VmSpec(name=f"{NAME_PREFIX}vm-{number}", cpus=cpus, memory_mb=memory_mb,
                  macs=(unique_mac(),))


def names(infos: list[Any]) -> list[str]:
    return sorted(info.name for info in infos)


# -- virtualization ----------------------------------------------------------------------------
def test_virtualization_driver_implements_the_protocol(hypervisor):
    assert isinstance(hypervisor.driver, VirtualizationDriver)
    assert hypervisor.driver.vm_type


def test_create_vm_is_listed_running_with_its_spec(hypervisor):
    host = hypervisor.host(cpus=4, memory_mb=4096)
    spec = vm_spec(cpus=2, memory_mb=1024)

    hypervisor.driver.create_vm(host, spec)

    [listed] = hypervisor.driver.list_vms(host)
    assert (listed.name, listed.state, listed.cpus, listed.memory_mb) == (
        spec.name, "running", 2, 1024)
    assert listed.macs[0] == spec.macs[0]


def test_create_vm_twice_by_name_makes_one_vm(hypervisor):
    host = hypervisor.host(cpus=4, memory_mb=4096)
    spec = vm_spec(cpus=4, memory_mb=4096)  # a second copy would not even fit

    hypervisor.driver.create_vm(host, spec)
    hypervisor.driver.create_vm(host, spec)

    assert names(hypervisor.driver.list_vms(host)) == [spec.name]


def test_create_vm_again_leaves_a_stopped_vm_stopped(hypervisor):
    host = hypervisor.host(cpus=4, memory_mb=4096)
    spec = vm_spec()
    hypervisor.driver.create_vm(host, spec)
    hypervisor.driver.stop_vm(host, spec.name)

    hypervisor.driver.create_vm(host, spec)

    assert [vm.state for vm in hypervisor.driver.list_vms(host)] == ["stopped"]


def test_create_vm_beyond_the_host_raises_capacity_error_and_lists_nothing_new(hypervisor):
    host = hypervisor.host(cpus=2, memory_mb=2048)
    hypervisor.driver.create_vm(host, vm_spec(1, cpus=2, memory_mb=1024))

    with pytest.raises(CapacityError):
        hypervisor.driver.create_vm(host, vm_spec(2, cpus=1, memory_mb=512))
    with pytest.raises(CapacityError):
        hypervisor.driver.create_vm(host, vm_spec(3, cpus=1, memory_mb=4096))

    assert names(hypervisor.driver.list_vms(host)) == [f"{NAME_PREFIX}vm-1"]


def test_stop_start_and_reboot_are_seen_in_the_list(hypervisor):
    host = hypervisor.host(cpus=4, memory_mb=4096)
    spec = vm_spec()
    hypervisor.driver.create_vm(host, spec)

    def state() -> str:
        return hypervisor.driver.list_vms(host)[0].state

    hypervisor.driver.stop_vm(host, spec.name)
    hypervisor.driver.stop_vm(host, spec.name)
    assert state() == "stopped"
    hypervisor.driver.start_vm(host, spec.name)
    hypervisor.driver.start_vm(host, spec.name)
    assert state() == "running"
    hypervisor.driver.stop_vm(host, spec.name)
    hypervisor.driver.reboot_vm(host, spec.name)
    assert state() == "running"


def test_remove_vm_takes_it_off_the_list_and_removing_again_is_fine(hypervisor):
    host = hypervisor.host(cpus=4, memory_mb=4096)
    kept, removed = vm_spec(1), vm_spec(2)
    hypervisor.driver.create_vm(host, kept)
    hypervisor.driver.create_vm(host, removed)

    hypervisor.driver.remove_vm(host, removed.name)
    hypervisor.driver.remove_vm(host, removed.name)
    hypervisor.driver.stop_vm(host, removed.name)  # stopping what is missing is fine too

    assert names(hypervisor.driver.list_vms(host)) == [kept.name]


def test_a_removed_vm_frees_its_room(hypervisor):
    host = hypervisor.host(cpus=2, memory_mb=2048)
    first = vm_spec(1, cpus=2, memory_mb=2048)
    hypervisor.driver.create_vm(host, first)
    hypervisor.driver.remove_vm(host, first.name)

    hypervisor.driver.create_vm(host, vm_spec(2, cpus=2, memory_mb=2048))

    assert names(hypervisor.driver.list_vms(host)) == [f"{NAME_PREFIX}vm-2"]


def test_an_unreachable_host_raises_host_unreachable(hypervisor):
    host = hypervisor.host(cpus=4, memory_mb=4096)
    spec = vm_spec()
    hypervisor.driver.create_vm(host, spec)
    hypervisor.make_unreachable(host)

    with pytest.raises(HostUnreachable):
        hypervisor.driver.list_vms(host)
    with pytest.raises(HostUnreachable):
        hypervisor.driver.create_vm(host, vm_spec(2))
    with pytest.raises(HostUnreachable):
        hypervisor.driver.remove_vm(host, spec.name)


# -- storage -----------------------------------------------------------------------------------
def test_storage_driver_implements_the_protocol(storage_backend):
    assert isinstance(storage_backend.driver, StorageDriver)
    assert storage_backend.driver.storage_type


def test_create_volume_twice_by_name_makes_one_listed_volume(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=1000)
    name = f"{NAME_PREFIX}img-1"

    first = driver.create_volume(storage, name=name, size_mb=600)
    again = driver.create_volume(storage, name=name, size_mb=600)  # twice would not fit

    assert again == first
    [listed] = driver.list_volumes(storage)
    assert (listed.name, listed.root_device, listed.size_mb, listed.origin) == (
        name, first, 600, None)


def test_clone_twice_by_name_makes_one_clone_of_its_origin(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=0)
    golden = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=100)

    clone = driver.clone_volume(storage, source_root_device=golden,
                                name=f"{NAME_PREFIX}img-2", size_mb=200)
    again = driver.clone_volume(storage, source_root_device=golden,
                                name=f"{NAME_PREFIX}img-2", size_mb=200)

    assert again == clone
    listed = {info.root_device: info for info in driver.list_volumes(storage)}
    assert set(listed) == {golden, clone}
    assert listed[clone].origin == golden
    assert listed[clone].size_mb >= 200


def test_a_clone_is_never_smaller_than_its_origin(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=0)
    golden = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=300)

    clone = driver.clone_volume(storage, source_root_device=golden,
                                name=f"{NAME_PREFIX}img-2", size_mb=100)

    sizes = {info.root_device: info.size_mb for info in driver.list_volumes(storage)}
    assert sizes[clone] >= 300


def test_snapshot_twice_by_name_makes_one_snapshot(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=0)
    golden = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=100)

    snapshot = driver.snapshot_volume(storage, source_root_device=golden,
                                      name=f"{NAME_PREFIX}snap-1")
    again = driver.snapshot_volume(storage, source_root_device=golden,
                                   name=f"{NAME_PREFIX}snap-1")

    assert again == snapshot
    origins = {info.root_device: info.origin for info in driver.list_volumes(storage)}
    assert origins == {golden: None, snapshot: golden}


def test_resize_grows_and_the_same_size_again_changes_nothing(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=1000)
    volume = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=100)

    driver.resize_volume(storage, root_device=volume, size_mb=900)
    driver.resize_volume(storage, root_device=volume, size_mb=900)

    assert [info.size_mb for info in driver.list_volumes(storage)] == [900]


def test_what_does_not_fit_raises_capacity_error_and_lists_nothing_new(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=1000)
    golden = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=600)

    with pytest.raises(CapacityError):
        driver.create_volume(storage, name=f"{NAME_PREFIX}img-2", size_mb=600)
    with pytest.raises(CapacityError):
        driver.clone_volume(storage, source_root_device=golden, name=f"{NAME_PREFIX}img-3",
                            size_mb=600)
    with pytest.raises(CapacityError):
        driver.resize_volume(storage, root_device=golden, size_mb=1200)

    assert [(info.root_device, info.size_mb) for info in driver.list_volumes(storage)] == [
        (golden, 600)]


def test_remove_volume_takes_it_off_the_list_and_removing_again_is_fine(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=1000)
    kept = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=100)
    removed = driver.create_volume(storage, name=f"{NAME_PREFIX}img-2", size_mb=900)

    driver.remove_volume(storage, root_device=removed)
    driver.remove_volume(storage, root_device=removed)

    assert [info.root_device for info in driver.list_volumes(storage)] == [kept]
    driver.create_volume(storage, name=f"{NAME_PREFIX}img-3", size_mb=900)  # room again


def test_authenticate_twice_for_the_same_machine_is_fine(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=0)
    volume = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=100)
    machine = MachineRef(id=1, mac=unique_mac(), name="box")

    driver.authenticate(storage, root_device=volume, machine=machine)
    driver.authenticate(storage, root_device=volume, machine=machine)
    driver.authenticate(storage, root_device=volume, machine=None)

    assert [info.root_device for info in driver.list_volumes(storage)] == [volume]


def test_an_unreachable_storage_raises_host_unreachable(storage_backend):
    driver, storage = storage_backend.driver, storage_backend.storage(capacity_mb=0)
    volume = driver.create_volume(storage, name=f"{NAME_PREFIX}img-1", size_mb=100)
    storage_backend.make_unreachable(storage)

    with pytest.raises(HostUnreachable):
        driver.list_volumes(storage)
    with pytest.raises(HostUnreachable):
        driver.create_volume(storage, name=f"{NAME_PREFIX}img-2", size_mb=100)
    with pytest.raises(HostUnreachable):
        driver.remove_volume(storage, root_device=volume)


def test_storages_do_not_see_each_others_volumes(storage_backend):
    driver = storage_backend.driver
    first, second = (storage_backend.storage(capacity_mb=0) for _ in range(2))

    driver.create_volume(first, name=f"{NAME_PREFIX}img-1", size_mb=100)

    assert driver.list_volumes(second) == []
