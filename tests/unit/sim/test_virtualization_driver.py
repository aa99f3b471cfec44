"""The simulated hypervisor: VMs on hosts with limited CPUs and memory, power and boots."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.datacenter.models import Resource, VirtualizationKind
from engine.db import utcnow
from engine.errors import CapacityError, DriverError
from engine.plugins.drivers import VirtualizationDriver
from plugins.sim.models import SimMachine
from tests.unit.sim.conftest import count


def machine(request, resource: Resource) -> SimMachine:
    return request.dbsession.get(SimMachine, resource.id)


def vms(request) -> int:
    return count(request, Resource, Resource.kind == VirtualizationKind.VM)


def test_driver_implements_the_virtualization_driver_protocol(vm_driver):
    assert isinstance(vm_driver, VirtualizationDriver)
    assert vm_driver.vm_type == "sim-vm"


def test_create_vm_powers_on_a_booting_machine_on_the_host(sim, vm_driver, make_host,
                                                           make_vm_row):
    host = make_host("host")
    vm = make_vm_row(host)

    vm_driver.create_vm(host, vm, disk_mb=5000)

    created = machine(sim, vm)
    assert (created.host_id, created.powered, created.disk_mb) == (host.id, True, 5000)
    assert created.boot_ready_at <= utcnow()  # boot delay 0 in the tests


def test_create_vm_boot_takes_the_configured_delay(sim, vm_driver, make_host, make_vm_row,
                                                   monkeypatch):
    monkeypatch.setitem(sim.registry.settings, "qrm.sim.boot_delay", "60")
    host = make_host("host")
    vm = make_vm_row(host)

    vm_driver.create_vm(host, vm, disk_mb=0)

    remaining = machine(sim, vm).boot_ready_at - utcnow()
    assert dt.timedelta(seconds=58) < remaining <= dt.timedelta(seconds=60)


def test_create_vm_is_idempotent_per_vm(sim, vm_driver, make_host, make_vm_row):
    host = make_host("host", cpus=2, memory_mb=2048)
    vm = make_vm_row(host, cpus=2, memory_mb=2048)

    vm_driver.create_vm(host, vm, disk_mb=1000)
    vm_driver.create_vm(host, vm, disk_mb=1000)  # the VM's own share is not counted twice

    assert count(sim, SimMachine, SimMachine.host_id == host.id) == 1


def test_create_vm_beyond_host_cpus_raises_and_leaves_no_machine(sim, vm_driver, make_host,
                                                                 make_vm_row):
    host = make_host("host", cpus=4, memory_mb=8192)
    vm_driver.create_vm(host, make_vm_row(host, cpus=3, memory_mb=1024), disk_mb=0)
    too_big = make_vm_row(host, cpus=2, memory_mb=1024)

    with pytest.raises(CapacityError) as error:
        vm_driver.create_vm(host, too_big, disk_mb=0)

    assert "1 CPU(s)" in error.value.message
    assert machine(sim, too_big) is None
    assert vm_driver.used_capacity(host) == (3, 1024)


def test_create_vm_beyond_host_memory_raises(vm_driver, make_host, make_vm_row):
    host = make_host("host", cpus=16, memory_mb=4096)
    vm_driver.create_vm(host, make_vm_row(host, cpus=1, memory_mb=3072), disk_mb=0)

    with pytest.raises(CapacityError, match="1024 MB free"):
        vm_driver.create_vm(host, make_vm_row(host, cpus=1, memory_mb=2048), disk_mb=0)


def test_create_vm_on_a_host_without_sim_host_raises_driver_error(sim, vm_driver,
                                                                  make_physical, make_vm_row):
    not_a_host = make_physical()

    with pytest.raises(DriverError, match="not a simulated host"):
        vm_driver.create_vm(not_a_host, make_vm_row(not_a_host), disk_mb=0)


def test_stop_start_and_reboot_switch_power_and_boot(sim, vm_driver, make_host, make_vm_row):
    host = make_host("host")
    vm = make_vm_row(host)
    vm_driver.create_vm(host, vm, disk_mb=0)
    machine(sim, vm).boot_ready_at = None  # booted

    vm_driver.stop_vm(vm)
    assert (machine(sim, vm).powered, machine(sim, vm).boot_ready_at) == (False, None)

    vm_driver.start_vm(vm)
    assert machine(sim, vm).powered is True
    assert machine(sim, vm).boot_ready_at is not None

    machine(sim, vm).boot_ready_at = None
    vm_driver.reboot_vm(vm)
    assert machine(sim, vm).boot_ready_at is not None


def test_power_actions_on_an_unknown_vm_raise_driver_error(vm_driver, make_host,
                                                           make_vm_row):
    vm = make_vm_row(make_host("host"))

    for action in (vm_driver.start_vm, vm_driver.stop_vm, vm_driver.reboot_vm):
        with pytest.raises(DriverError):
            action(vm)


def test_remove_vm_deletes_the_machine_and_missing_is_fine(sim, vm_driver, make_host,
                                                           make_vm_row):
    host = make_host("host")
    vm = make_vm_row(host)
    vm_driver.create_vm(host, vm, disk_mb=0)

    vm_driver.remove_vm(vm)
    vm_driver.remove_vm(vm)

    assert machine(sim, vm) is None
    assert vm_driver.used_capacity(host) == (0, 0)


def test_datacenter_create_vm_picks_the_least_loaded_host(sim, datacenter, make_host,
                                                          admin_actor):
    big = make_host("big", cpus=16, memory_mb=32768)
    small = make_host("small", cpus=8, memory_mb=16384)
    vm_type = datacenter.virtualization_type("sim-vm")

    first = datacenter.create_vm(vm_type, name="vm-1", cpus=4, memory_mb=4096, nics=1,
                                 disk_mb=5000, actor=admin_actor)
    second = datacenter.create_vm(vm_type, name="vm-2", cpus=4, memory_mb=4096, nics=1,
                                  disk_mb=5000, actor=admin_actor)
    third = datacenter.create_vm(vm_type, name="vm-3", cpus=2, memory_mb=2048, nics=1,
                                 disk_mb=5000, actor=admin_actor)

    # empty hosts tie and the older one wins; then whichever has the smaller share in use
    assert (first.host_id, second.host_id, third.host_id) == (big.id, small.id, big.id)
    assert machine(sim, second).host_id == small.id


def test_datacenter_create_vm_raises_capacity_error_when_all_hosts_are_full(
        sim, datacenter, make_host, admin_actor):
    make_host("one", cpus=2, memory_mb=4096)
    make_host("two", cpus=2, memory_mb=4096)
    vm_type = datacenter.virtualization_type("sim-vm")
    for name in ("vm-1", "vm-2"):
        datacenter.create_vm(vm_type, name=name, cpus=2, memory_mb=2048, nics=1, disk_mb=0,
                             actor=admin_actor)

    with pytest.raises(CapacityError):
        datacenter.create_vm(vm_type, name="vm-3", cpus=1, memory_mb=512, nics=1, disk_mb=0,
                             actor=admin_actor)

    assert vms(sim) == 2
    assert count(sim, SimMachine) == 2


def test_datacenter_create_vm_moves_on_when_the_driver_finds_a_host_full(
        sim, datacenter, make_host, admin_actor):
    # The engine believes the first host is empty and huge; the simulated host knows better.
    crowded = make_host("crowded", cpus=64, memory_mb=65536, sim_cpus=1, sim_memory_mb=1024)
    roomy = make_host("roomy", cpus=8, memory_mb=16384)
    vm_type = datacenter.virtualization_type("sim-vm")

    vm = datacenter.create_vm(vm_type, name="vm", cpus=2, memory_mb=2048, nics=1, disk_mb=0,
                              actor=admin_actor)

    assert vm.host_id == roomy.id
    assert count(sim, SimMachine, SimMachine.host_id == crowded.id) == 0
    assert vms(sim) == 1


def test_datacenter_create_vm_fails_cleanly_when_only_the_driver_refuses(
        sim, datacenter, make_host, admin_actor):
    make_host("crowded", cpus=64, memory_mb=65536, sim_cpus=1, sim_memory_mb=1024)
    vm_type = datacenter.virtualization_type("sim-vm")

    with pytest.raises(CapacityError):
        datacenter.create_vm(vm_type, name="vm", cpus=2, memory_mb=2048, nics=1, disk_mb=0,
                             actor=admin_actor)

    assert vms(sim) == 0
    assert count(sim, SimMachine) == 0


def test_datacenter_remove_vm_frees_the_host(sim, datacenter, vm_driver, make_host,
                                             admin_actor):
    host = make_host("host")
    vm = datacenter.create_vm(datacenter.virtualization_type("sim-vm"), name="vm", cpus=2,
                              memory_mb=2048, nics=1, disk_mb=0, actor=admin_actor)

    datacenter.remove_vm(vm, actor=admin_actor)

    assert vms(sim) == 0
    assert vm_driver.used_capacity(host) == (0, 0)
