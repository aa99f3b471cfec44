"""The sim's fault switches and call log: failures before or after the effect, unreachable
hosts and storages, across threads and processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.errors import CapacityError, DriverError
from engine.plugins.drivers import HostUnreachable, MachineRef
from plugins.sim import faults, inventory
from tests.unit.sim.conftest import new_mac, spec


def test_a_failure_before_the_effect_changes_nothing(settings, vm_driver, host):
    faults.fail("create_vm")

    with pytest.raises(DriverError, match="simulated driver failure of create_vm"):
        vm_driver.create_vm(host, spec())

    assert vm_driver.list_vms(host) == []
    vm_driver.create_vm(host, spec())  # the fault was for the first call only
    assert len(vm_driver.list_vms(host)) == 1


def test_a_failure_after_the_effect_leaves_the_effect(settings, vm_driver, host):
    faults.fail("create_vm", when="after")

    with pytest.raises(DriverError, match="after its effect"):
        vm_driver.create_vm(host, spec())
    vm_driver.create_vm(host, spec())  # the engine's retry finds the VM by its name

    assert len(vm_driver.list_vms(host)) == 1
    assert [call.outcome for call in faults.calls("create_vm")] == ["DriverError", "ok"]


def test_fail_counts_calls_from_nth_for_times(storage, storage_driver):
    faults.fail("create_volume", nth=2, times=2, error="capacity")
    outcomes = []
    for number in range(1, 5):
        try:
            storage_driver.create_volume(storage, name=f"v{number}", size_mb=10)
            outcomes.append("ok")
        except CapacityError:
            outcomes.append("refused")

    assert outcomes == ["ok", "refused", "refused", "ok"]
    assert [info.name for info in storage_driver.list_volumes(storage)] == ["v1", "v4"]


def test_fail_on_one_target_spares_the_others(settings, vm_driver, host):
    other_mac = new_mac()
    inventory.register_host(settings, other_mac, 4, 4096)
    other = type(host)(id=2, name="other", mac=other_mac)
    faults.fail("list_vms", times=5, error="unreachable", target=other)

    assert vm_driver.list_vms(host) == []
    with pytest.raises(HostUnreachable):
        vm_driver.list_vms(other)


def test_an_unreachable_host_refuses_every_call_until_reachable(settings, vm_driver, host):
    vm_driver.create_vm(host, spec())
    faults.unreachable(host.mac.upper())

    for call in (lambda: vm_driver.list_vms(host),
                 lambda: vm_driver.create_vm(host, spec("qrm-vm-2")),
                 lambda: vm_driver.stop_vm(host, "qrm-vm-1"),
                 lambda: vm_driver.remove_vm(host, "qrm-vm-1")):
        with pytest.raises(HostUnreachable):
            call()
    assert [vm.name for vm in inventory.vms(settings)] == ["qrm-vm-1"]

    faults.reachable(host)
    assert [vm.state for vm in vm_driver.list_vms(host)] == ["running"]


def test_an_unreachable_storage_refuses_every_call(storage, storage_driver):
    root_device = storage_driver.create_volume(storage, name="data", size_mb=10)
    faults.unreachable(storage)

    with pytest.raises(HostUnreachable):
        storage_driver.list_volumes(storage)
    with pytest.raises(HostUnreachable):
        storage_driver.remove_volume(storage, root_device=root_device)

    faults.reachable("test-sim-storage")
    assert len(storage_driver.list_volumes(storage)) == 1


def test_calls_log_every_driver_call_with_its_arguments_and_outcome(vm_driver, host):
    vm_driver.create_vm(host, spec())
    vm_driver.create_vm(host, spec())
    with pytest.raises(DriverError):
        vm_driver.start_vm(host, "qrm-vm-7")

    logged = faults.calls()

    assert [(call.op, call.outcome) for call in logged] == [
        ("create_vm", "ok"), ("create_vm", "ok"), ("start_vm", "DriverError")]
    assert logged[0].target == host.mac
    assert logged[0].args["spec"]["name"] == "qrm-vm-1"
    assert logged[2].args == {"host": "host", "name": "qrm-vm-7"}


def test_clear_removes_faults_unreachable_marks_and_the_log(vm_driver, host):
    faults.fail("list_vms")
    faults.unreachable(host)
    faults.clear()

    assert vm_driver.list_vms(host) == []
    assert [call.op for call in faults.calls()] == ["list_vms"]


def test_the_physical_power_switch_obeys_the_switches(sim, settings, make_physical):
    box = make_physical()
    ref = MachineRef(id=box.id, mac=box.mac, name=box.name)
    from plugins.sim.drivers import SimPowerSwitch

    faults.fail("halt_machine", when="after")
    with pytest.raises(DriverError):
        SimPowerSwitch(sim).halt(ref)
    assert inventory.machine_by_mac(settings, box.mac).powered is False

    faults.unreachable(box.mac)
    with pytest.raises(HostUnreachable):
        SimPowerSwitch(sim).reboot(ref)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"op": "create_vms"}, "no simulated operation"),
    ({"op": "create_vm", "when": "during"}, "when must be"),
    ({"op": "create_vm", "error": "boom"}, "error must be"),
    ({"op": "create_vm", "nth": 0}, "count from 1"),
])
def test_fail_refuses_what_it_cannot_simulate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        faults.fail(**kwargs)


def test_faults_reach_other_processes_through_the_state_file(vm_driver, host, sim_state):
    # Another process (a scheduler, a web worker) sets the switch; this one hits it.
    subprocess.run(
        [sys.executable, "-c", "from plugins.sim import faults; faults.fail('create_vm')"],
        check=True, env=dict(os.environ, QRM_SIM_STATE=str(sim_state)))

    with pytest.raises(DriverError):
        vm_driver.create_vm(host, spec())


def test_the_call_log_keeps_the_newest_calls(vm_driver, host, monkeypatch):
    monkeypatch.setattr(faults, "CALL_LOG_SIZE", 3)
    for name in ("a", "b", "c", "d", "e"):
        vm_driver.stop_vm(host, name)

    assert [call.args["name"] for call in faults.calls()] == ["c", "d", "e"]


def test_a_locked_state_file_is_a_driver_error(vm_driver, host, sim_state, monkeypatch):
    import sqlite3

    from plugins.sim import store

    monkeypatch.setattr(store, "BUSY_TIMEOUT", 0.05)
    locker = sqlite3.connect(sim_state, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DriverError, match="database is locked"):
            vm_driver.list_vms(host)
    finally:
        locker.close()
    assert vm_driver.list_vms(host) == []
