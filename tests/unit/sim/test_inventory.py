"""The sim's inventory: boxes registered, objects planted and vanished behind the engine's
back, and what the drivers then see."""

from __future__ import annotations

import pytest

from engine.errors import DriverError
from engine.plugins.drivers import HostRef, StorageRef
from plugins.sim import inventory
from tests.unit.sim.conftest import new_mac, spec

STORAGE = StorageRef(id=1, name="golden-store", storage_type="sim-storage")


def test_register_host_sets_its_capacity_and_ensure_host_does_not(settings):
    mac = new_mac()
    inventory.register_host(settings, mac.upper(), 8, 16384, name="h")

    assert inventory.ensure_host(settings, mac, 1, 1) is False
    assert [(h.mac, h.name, h.cpus, h.memory_mb) for h in inventory.hosts(settings)] == [
        (mac, "h", 8, 16384)]
    inventory.register_host(settings, mac, 4, 4096)
    assert (inventory.hosts(settings)[0].cpus, inventory.hosts(settings)[0].name) == (4, "h")
    assert inventory.ensure_host(settings, new_mac(), 2, 2048) is True


def test_register_physical_boots_it_unless_booted(settings, monkeypatch):
    monkeypatch.setitem(settings, "qrm.sim.boot_delay", "30")
    booting, up = new_mac(), new_mac()

    inventory.register_physical(settings, booting, name="a", cpus=4, memory_mb=8192, nics=2)
    inventory.register_physical(settings, up, name="b", booted=True)

    machines = {m.mac: m for m in inventory.physical_machines(settings)}
    assert machines[booting].powered
    assert not machines[booting].booted()
    assert machines[up].booted()
    assert (machines[booting].kind, machines[booting].nics) == ("physical", 2)


def test_machine_by_mac_finds_physical_machines_and_vms_by_any_nic(settings, vm_driver, host):
    box, first, second = new_mac(), new_mac(), new_mac()
    inventory.register_physical(settings, box, name="box")
    vm_driver.create_vm(host, spec(macs=(first, second)))

    assert inventory.machine_by_mac(settings, box).name == "box"
    found = inventory.machine_by_mac(settings, second)
    assert (found.kind, found.name, found.mac, found.host_mac) == ("vm", "qrm-vm-1", first,
                                                                   host.mac)
    assert inventory.machine_by_mac(settings, new_mac()) is None


def test_a_planted_vm_is_listed_by_the_driver(settings, vm_driver, host):
    inventory.plant_vm(settings, host.mac, "qrm-vm-404", macs=[new_mac()], powered=False)

    assert [(vm.name, vm.state) for vm in vm_driver.list_vms(host)] == [("qrm-vm-404",
                                                                         "stopped")]
    with pytest.raises(DriverError, match="not a simulated host"):
        inventory.plant_vm(settings, new_mac(), "x", macs=[new_mac()])


def test_a_vanished_vm_is_gone_for_the_driver(settings, vm_driver, host):
    vm_driver.create_vm(host, spec())

    assert inventory.vanish_vm(settings, "qrm-vm-1") == 1
    assert inventory.vanish_vm(settings, "qrm-vm-1") == 0

    assert vm_driver.list_vms(host) == []
    vm_driver.remove_vm(host, "qrm-vm-1")  # removing what vanished is fine


def test_vms_lists_per_host(settings, vm_driver, host):
    other = new_mac()
    inventory.register_host(settings, other, 2, 2048)
    vm_driver.create_vm(host, spec("qrm-vm-1", cpus=1))
    vm_driver.create_vm(HostRef(id=2, name="o", mac=other), spec("qrm-vm-2", cpus=1))

    assert [vm.name for vm in inventory.vms(settings, host_mac=other)] == ["qrm-vm-2"]
    assert [vm.name for vm in inventory.vms(settings)] == ["qrm-vm-1", "qrm-vm-2"]


def test_planted_volumes_and_clones_are_listed_and_idempotent(settings, storage_driver):
    golden = inventory.plant_volume(settings, STORAGE, "golden", size_mb=4000)
    clone = inventory.plant_volume(settings, "golden-store", "qrm-img-9", size_mb=10,
                                   origin=golden)

    assert inventory.plant_volume(settings, STORAGE, "golden", size_mb=1) == golden
    assert [(v.name, v.size_mb, v.origin) for v in storage_driver.list_volumes(STORAGE)] == [
        ("golden", 4000, None), ("qrm-img-9", 4000, golden)]
    assert inventory.volume(settings, clone).kind == "clone"
    with pytest.raises(DriverError):
        inventory.plant_volume(settings, STORAGE, "orphan", size_mb=1,
                               origin="sim:golden-store/none")


def test_a_vanished_volume_takes_its_clones_along(settings, storage_driver):
    golden = inventory.plant_volume(settings, STORAGE, "golden", size_mb=100)
    clone = storage_driver.clone_volume(STORAGE, source_root_device=golden, name="c",
                                        size_mb=100)
    storage_driver.snapshot_volume(STORAGE, source_root_device=clone, name="s")
    kept = inventory.plant_volume(settings, STORAGE, "kept", size_mb=1)

    assert inventory.vanish_volume(settings, golden) is True
    assert inventory.vanish_volume(settings, golden) is False

    assert [v.root_device for v in inventory.volumes(settings, STORAGE)] == [kept]


def test_set_power_switches_hosts_machines_and_vms(settings, vm_driver, host):
    box, nic = new_mac(), new_mac()
    inventory.register_physical(settings, box)
    vm_driver.create_vm(host, spec(macs=(nic,)))

    inventory.set_power(settings, box, on=False)
    inventory.set_power(settings, nic, on=False)
    inventory.set_power(settings, host.mac, on=False)

    assert inventory.machine_by_mac(settings, box).powered is False
    assert inventory.machine_by_mac(settings, nic).state == "stopped"
    assert inventory.hosts(settings)[0].powered is False
    with pytest.raises(DriverError):
        inventory.set_power(settings, new_mac(), on=True)
