"""The plugin's monitor: boots complete, machines and hosts report like real agents."""

from __future__ import annotations

import datetime as dt

from engine.datacenter.models import ApplianceState, ResourceState
from engine.datacenter.services import AppliancesService
from engine.db import utcnow
from engine.monitoring.services import ResourceReportService, plugins_monitor_job
from plugins.sim.demo import add_storage
from plugins.sim.models import SimMachine, SimVolume
from plugins.sim.monitor import run_monitor


def new_vm(datacenter, actor):
    return datacenter.create_vm(datacenter.virtualization_type("sim-vm"), name="vm", cpus=2,
                                memory_mb=2048, nics=1, disk_mb=0, actor=actor)


def test_monitor_moves_a_booting_vm_to_idle(sim, datacenter, make_host, admin_actor):
    make_host("host")
    vm = new_vm(datacenter, admin_actor)
    assert vm.state is ResourceState.BOOTING

    plugins_monitor_job(sim)

    assert vm.state is ResourceState.IDLE
    assert vm.last_report_at is not None
    assert sim.dbsession.get(SimMachine, vm.id).boot_ready_at is None


def test_monitor_waits_for_the_boot_delay(sim, datacenter, make_host, admin_actor,
                                          monkeypatch):
    monkeypatch.setitem(sim.registry.settings, "qrm.sim.boot_delay", "30")
    make_host("host")
    vm = new_vm(datacenter, admin_actor)

    run_monitor(sim)
    assert vm.state is ResourceState.BOOTING

    run_monitor(sim, now=utcnow() + dt.timedelta(seconds=31))
    assert vm.state is ResourceState.IDLE


def test_monitor_keeps_booted_machines_reporting(sim, datacenter, make_host, admin_actor):
    make_host("host")
    vm = new_vm(datacenter, admin_actor)
    run_monitor(sim)
    vm.last_report_at = utcnow() - dt.timedelta(seconds=230)  # nearly stale

    run_monitor(sim)

    assert vm.state is ResourceState.IDLE
    assert vm.load is not None
    assert vm.uptime_s >= 230
    assert vm.last_report_at > utcnow() - dt.timedelta(seconds=5)
    stale = sim.find_service(ResourceReportService).check_health(
        now=utcnow() + dt.timedelta(seconds=20))
    assert stale == []


def test_monitor_reports_hosts_active_with_their_vms_load(sim, datacenter, make_host,
                                                          admin_actor):
    host = make_host("host")
    new_vm(datacenter, admin_actor)

    run_monitor(sim)

    assert host.state is ResourceState.ACTIVE
    assert host.last_report_at is not None
    assert float(host.load) > 0


def test_monitor_ignores_powered_off_machines(sim, datacenter, vm_driver, make_host,
                                              admin_actor):
    make_host("host")
    vm = new_vm(datacenter, admin_actor)
    vm_driver.stop_vm(vm)

    run_monitor(sim)

    assert vm.state is ResourceState.BOOTING
    assert vm.last_report_at is None


def test_monitor_reports_a_rebooted_vm_with_an_image_active(sim, datacenter, storage,
                                                            make_host, admin_actor):
    make_host("host")
    vm = new_vm(datacenter, admin_actor)
    run_monitor(sim)
    vm.image = datacenter.create_image("golden", storage=storage,
                                       deployment_type="sim-deployment", size_mb=1000,
                                       actor=admin_actor)

    datacenter.reboot(vm, actor=admin_actor)
    assert vm.state is ResourceState.TRANSITION
    run_monitor(sim)

    assert vm.state is ResourceState.ACTIVE


def test_appliance_on_a_simulated_machine_starts_and_stops(sim, datacenter, make_physical,
                                                           admin_actor):
    storage = add_storage(sim, "appliance-storage", capacity_mb=0, actor=admin_actor)
    image = datacenter.create_image("golden", storage=storage,
                                    deployment_type="sim-deployment", size_mb=1000,
                                    actor=admin_actor)
    kernel = datacenter.add_kernel("test-kernel", actor=admin_actor)
    resource = make_physical()
    appliances = sim.find_service(AppliancesService)
    appliance = appliances.add("web", kernel=kernel, image=image, resource=resource,
                               virtualization_type=datacenter.virtualization_type("physical"),
                               actor=admin_actor)

    appliances.start(appliance, actor=admin_actor)
    volume = sim.dbsession.get(SimVolume, _volume_id(sim, image.root_device))
    assert volume.authorized_resource_id == resource.id
    run_monitor(sim)
    assert (resource.state, appliance.state) == (ResourceState.ACTIVE, ApplianceState.ACTIVE)

    appliances.stop(appliance, actor=admin_actor)
    run_monitor(sim)
    assert (resource.state, appliance.state) == (ResourceState.IDLE, ApplianceState.STOPPED)
    assert volume.authorized_resource_id is None


def _volume_id(request, root_device: str) -> int:
    from sqlalchemy import select

    return request.dbsession.scalar(select(SimVolume.id)
                                    .where(SimVolume.root_device == root_device))
