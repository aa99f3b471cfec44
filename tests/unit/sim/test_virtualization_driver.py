"""The simulated hypervisor: VMs by name on registered hosts with limited CPUs and memory,
power and boots, all in the sim's own state."""

from __future__ import annotations

import pytest

from engine.errors import CapacityError, DriverError, ValidationError
from engine.plugins.drivers import (
    HostRef,
    HostUnreachable,
    VirtualizationDriver,
    VmInfo,
    VmSpec,
)
from plugins.sim import inventory
from plugins.sim.store import now
from tests.unit.sim.conftest import new_mac, spec


def the_vm(settings, name="qrm-vm-1"):
    return inventory.vm(settings, name)


def test_driver_implements_the_virtualization_driver_protocol(vm_driver):
    assert isinstance(vm_driver, VirtualizationDriver)
    assert vm_driver.vm_type == "sim-vm"


def test_create_vm_powers_on_a_booting_vm_on_the_host(settings, vm_driver, host):
    macs = (new_mac(), new_mac())

    vm_driver.create_vm(host, spec(cpus=2, memory_mb=2048, macs=macs, disk_mb=5000))

    created = the_vm(settings)
    assert (created.host_mac, created.powered, created.macs, created.disk_mb) == (
        host.mac, True, macs, 5000)
    assert created.booted()  # boot delay 0 in the tests


def test_create_vm_boot_takes_the_configured_delay(settings, vm_driver, host, monkeypatch):
    monkeypatch.setitem(settings, "qrm.sim.boot_delay", "60")

    vm_driver.create_vm(host, spec())

    created = the_vm(settings)
    assert not created.booted()
    assert 58 < created.boot_ready_at - now() <= 60
    assert created.booted(now() + 61)


def test_create_vm_is_idempotent_by_name(settings, vm_driver):
    mac = new_mac()
    inventory.register_host(settings, mac, 2, 2048)
    full_host = HostRef(id=7, name="small", mac=mac)

    vm_driver.create_vm(full_host, spec(cpus=2, memory_mb=2048))
    vm_driver.create_vm(full_host, spec(cpus=2, memory_mb=2048))  # not counted twice

    assert [vm.name for vm in inventory.vms(settings)] == ["qrm-vm-1"]


def test_create_vm_of_a_stopped_vm_leaves_it_stopped(settings, vm_driver, host):
    vm_driver.create_vm(host, spec())
    vm_driver.stop_vm(host, "qrm-vm-1")

    vm_driver.create_vm(host, spec())

    assert the_vm(settings).powered is False


def test_create_vm_beyond_host_cpus_raises_and_leaves_no_vm(settings, vm_driver):
    mac = new_mac()
    inventory.register_host(settings, mac, 4, 8192)
    small = HostRef(id=1, name="small", mac=mac)
    vm_driver.create_vm(small, spec("qrm-vm-1", cpus=3, memory_mb=1024))

    with pytest.raises(CapacityError) as error:
        vm_driver.create_vm(small, spec("qrm-vm-2", cpus=2, memory_mb=1024))

    assert "host small has 1 CPU(s)" in error.value.message
    assert the_vm(settings, "qrm-vm-2") is None
    assert vm_driver.used_capacity(small) == (3, 1024)


def test_create_vm_beyond_host_memory_raises(settings, vm_driver):
    mac = new_mac()
    inventory.register_host(settings, mac, 16, 4096)
    small = HostRef(id=1, name="small", mac=mac)
    vm_driver.create_vm(small, spec("qrm-vm-1", cpus=1, memory_mb=3072))

    with pytest.raises(CapacityError, match="1024 MB free"):
        vm_driver.create_vm(small, spec("qrm-vm-2", cpus=1, memory_mb=2048))


def test_stopped_vms_keep_their_share_of_the_host(settings, vm_driver):
    mac = new_mac()
    inventory.register_host(settings, mac, 2, 4096)
    small = HostRef(id=1, name="small", mac=mac)
    vm_driver.create_vm(small, spec("qrm-vm-1", cpus=2, memory_mb=1024))
    vm_driver.stop_vm(small, "qrm-vm-1")

    with pytest.raises(CapacityError):
        vm_driver.create_vm(small, spec("qrm-vm-2", cpus=1, memory_mb=1024))


def test_create_vm_on_an_unregistered_host_raises_driver_error(settings, vm_driver):
    stranger = HostRef(id=3, name="stranger", mac=new_mac())

    with pytest.raises(DriverError, match=r"stranger .* is not a simulated host"):
        vm_driver.create_vm(stranger, spec())
    with pytest.raises(DriverError, match="is not a simulated host"):
        vm_driver.list_vms(stranger)
    assert inventory.vms(settings) == []


def test_a_switched_off_host_does_not_answer(settings, vm_driver, host):
    inventory.set_power(settings, host.mac, on=False)

    with pytest.raises(HostUnreachable):
        vm_driver.create_vm(host, spec())
    with pytest.raises(HostUnreachable):
        vm_driver.list_vms(host)


def test_create_vm_refuses_a_mac_in_use(settings, vm_driver, host):
    mac = new_mac()
    vm_driver.create_vm(host, spec("qrm-vm-1", macs=(mac,)))

    with pytest.raises(DriverError, match="used by VM qrm-vm-1"):
        vm_driver.create_vm(host, spec("qrm-vm-2", macs=(mac.upper(),)))
    with pytest.raises(ValidationError):
        vm_driver.create_vm(host, VmSpec(name="qrm-vm-3", cpus=1, memory_mb=512, macs=()))
    with pytest.raises(ValidationError):
        vm_driver.create_vm(host, spec("../etc"))


def test_stop_start_and_reboot_switch_power_and_boot(settings, vm_driver, host, monkeypatch):
    vm_driver.create_vm(host, spec())

    vm_driver.stop_vm(host, "qrm-vm-1")
    assert (the_vm(settings).powered, the_vm(settings).boot_ready_at) == (False, None)
    assert [vm.state for vm in vm_driver.list_vms(host)] == ["stopped"]

    monkeypatch.setitem(settings, "qrm.sim.boot_delay", "30")
    vm_driver.start_vm(host, "qrm-vm-1")
    started = the_vm(settings)
    assert started.powered
    assert not started.booted()
    assert [vm.state for vm in vm_driver.list_vms(host)] == ["running"]

    monkeypatch.setitem(settings, "qrm.sim.boot_delay", "60")
    vm_driver.start_vm(host, "qrm-vm-1")  # running already: no new boot
    assert the_vm(settings).boot_ready_at == started.boot_ready_at
    vm_driver.reboot_vm(host, "qrm-vm-1")
    assert the_vm(settings).boot_ready_at > started.boot_ready_at + 20


def test_reboot_powers_a_stopped_vm_on(settings, vm_driver, host):
    vm_driver.create_vm(host, spec())
    vm_driver.stop_vm(host, "qrm-vm-1")

    vm_driver.reboot_vm(host, "qrm-vm-1")

    assert the_vm(settings).powered is True


def test_start_and_reboot_of_a_missing_vm_raise_but_stop_does_not(vm_driver, host):
    for action in (vm_driver.start_vm, vm_driver.reboot_vm):
        with pytest.raises(DriverError, match="no VM qrm-vm-9 on host host"):
            action(host, "qrm-vm-9")

    vm_driver.stop_vm(host, "qrm-vm-9")


def test_remove_vm_frees_the_host_and_missing_is_fine(settings, vm_driver, host):
    vm_driver.create_vm(host, spec(cpus=4, memory_mb=4096))

    vm_driver.remove_vm(host, "qrm-vm-1")
    vm_driver.remove_vm(host, "qrm-vm-1")

    assert the_vm(settings) is None
    assert vm_driver.list_vms(host) == []
    assert vm_driver.used_capacity(host) == (0, 0)


def test_list_vms_reports_the_vms_of_that_host_only(settings, vm_driver, host):
    other_mac = new_mac()
    inventory.register_host(settings, other_mac, 4, 4096)
    other = HostRef(id=2, name="other", mac=other_mac)
    first = spec("qrm-vm-1", cpus=1, memory_mb=512)
    vm_driver.create_vm(host, first)
    vm_driver.create_vm(other, spec("qrm-vm-2"))
    vm_driver.create_vm(host, spec("qrm-vm-3"))
    vm_driver.stop_vm(host, "qrm-vm-3")

    listed = vm_driver.list_vms(host)

    assert listed[0] == VmInfo(name="qrm-vm-1", state="running", macs=first.macs, cpus=1,
                               memory_mb=512)
    assert [(vm.name, vm.state) for vm in listed] == [("qrm-vm-1", "running"),
                                                      ("qrm-vm-3", "stopped")]


def test_same_name_on_two_hosts_is_two_vms(settings, vm_driver, host):
    other_mac = new_mac()
    inventory.register_host(settings, other_mac, 4, 4096)

    vm_driver.create_vm(host, spec())
    vm_driver.create_vm(HostRef(id=2, name="other", mac=other_mac), spec())

    assert len(inventory.vms(settings)) == 2


def test_hosts_are_known_by_mac_whatever_its_spelling(settings, vm_driver, host):
    shouting = HostRef(id=host.id, name="renamed", mac=host.mac.upper().replace(":", "-"))

    vm_driver.create_vm(shouting, spec())

    assert [vm.name for vm in vm_driver.list_vms(host)] == ["qrm-vm-1"]


def test_vms_survive_the_engine_transaction(sim, settings, vm_driver, host):
    # A hypervisor does not roll back: the VM stays when the caller's transaction aborts.
    vm_driver.create_vm(host, spec())

    sim.tm.abort()
    sim.tm.begin()

    assert [vm.name for vm in vm_driver.list_vms(host)] == ["qrm-vm-1"]
