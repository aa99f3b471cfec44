"""The plugin's monitor: booted machines and running hosts in the sim's state report through
the engine like real agents; what the engine does not know is skipped."""

from __future__ import annotations

import datetime as dt

from engine.datacenter.models import Image, ResourceState, VirtualizationKind
from engine.db import utcnow
from engine.monitoring.services import ResourceReportService, plugins_monitor_job
from plugins.sim import inventory
from plugins.sim.monitor import run_monitor
from tests.unit.sim.conftest import host_ref, new_mac, spec


def test_monitor_moves_a_booted_vm_to_idle(sim, make_host, make_vm):
    vm = make_vm(make_host())
    assert vm.state is ResourceState.BOOTING

    plugins_monitor_job(sim)

    assert vm.state is ResourceState.IDLE
    assert vm.last_report_at is not None


def test_monitor_waits_for_the_boot_delay(sim, settings, make_host, make_vm, monkeypatch):
    monkeypatch.setitem(settings, "qrm.sim.boot_delay", "30")
    vm = make_vm(make_host())

    run_monitor(sim)
    assert vm.state is ResourceState.BOOTING
    assert vm.last_report_at is None

    run_monitor(sim, now=utcnow() + dt.timedelta(seconds=31))
    assert vm.state is ResourceState.IDLE
    assert vm.uptime_s in (0, 1)


def test_monitor_keeps_booted_machines_reporting_their_uptime(sim, make_host, make_vm):
    vm = make_vm(make_host())
    run_monitor(sim)

    run_monitor(sim, now=utcnow() + dt.timedelta(seconds=230))

    assert vm.state is ResourceState.IDLE
    assert vm.load is not None
    assert 229 <= vm.uptime_s <= 231
    assert vm.last_report_at > utcnow() - dt.timedelta(seconds=5)
    stale = sim.find_service(ResourceReportService).check_health(
        now=utcnow() + dt.timedelta(seconds=20))
    assert stale == []


def test_monitor_reports_hosts_active_with_their_vms_load(sim, make_host, make_vm):
    host = make_host()
    make_vm(host, cpus=4, memory_mb=1024)

    run_monitor(sim)

    assert host.state is ResourceState.ACTIVE
    assert host.last_report_at is not None
    assert float(host.load) == 0.1 + 0.25 * 4


def test_monitor_leaves_switched_off_hosts_silent(sim, settings, make_host):
    off_by_engine = make_host("one", state=ResourceState.OFF)
    off_in_the_rack = make_host("two")
    inventory.set_power(settings, off_in_the_rack.mac, on=False)

    run_monitor(sim)

    assert (off_by_engine.last_report_at, off_in_the_rack.last_report_at) == (None, None)


def test_monitor_ignores_powered_off_machines(sim, vm_driver, make_host, make_vm,
                                              make_physical):
    host = make_host()
    vm = make_vm(host, name="qrm-vm-1")
    box = make_physical(booting=True)
    vm_driver.stop_vm(host_ref(host), "qrm-vm-1")
    inventory.set_power(sim.registry.settings, box.mac, on=False)

    run_monitor(sim)

    assert (vm.state, box.state) == (ResourceState.BOOTING, ResourceState.BOOTING)
    assert (vm.last_report_at, box.last_report_at) == (None, None)


def test_monitor_reports_a_machine_told_to_boot_an_image_active(sim, datacenter, make_host,
                                                                make_vm, admin_actor):
    vm = make_vm(make_host())
    run_monitor(sim)
    storage = datacenter.add_storage("s", storage_type="sim-storage", actor=admin_actor)
    image: Image = datacenter.add_image("golden", storage=storage,
                                        deployment_type="sim-deployment",
                                        root_device="sim:s/golden", actor=admin_actor)
    vm.image = image
    sim.dbsession.flush()

    run_monitor(sim)

    assert vm.state is ResourceState.ACTIVE


def test_monitor_reports_physical_machines_after_their_boot(sim, settings, make_physical,
                                                            monkeypatch):
    monkeypatch.setitem(settings, "qrm.sim.boot_delay", "30")
    box = make_physical(booting=True)

    run_monitor(sim)
    assert box.state is ResourceState.BOOTING
    run_monitor(sim, now=utcnow() + dt.timedelta(seconds=31))
    assert box.state is ResourceState.IDLE


def test_monitor_skips_machines_the_engine_does_not_know(sim, settings, make_host):
    host = make_host()
    inventory.plant_vm(settings, host.mac, "qrm-vm-77", macs=[new_mac()])
    inventory.register_physical(settings, new_mac(), booted=True)
    inventory.register_host(settings, new_mac(), 4, 4096)

    run_monitor(sim)

    assert host.state is ResourceState.ACTIVE
    assert float(host.load) == 0.1 + 0.25 * 1  # the stranger VM still loads the host


def test_monitor_finds_a_vm_by_any_of_its_macs(sim, datacenter, make_host, vm_driver,
                                               admin_actor):
    host = make_host()
    second = datacenter.add_resource(mac=new_mac(), kind=VirtualizationKind.VM,
                                     virtualization_type="sim-vm", actor=admin_actor, host=host,
                                     cpus=1, memory_mb=512, state=ResourceState.BOOTING)
    vm_driver.create_vm(host_ref(host), spec(macs=(new_mac(), second.mac)))

    run_monitor(sim)

    assert second.state is ResourceState.IDLE
