"""The plugin's life cycle, its hooks, and power commands for simulated physical machines."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine.commands.models import Command
from engine.datacenter.models import DeploymentType, VirtualizationKind, VirtualizationType
from engine.datacenter.services import DatacenterService
from engine.errors import DriverError, InvalidState
from engine.plugins.manager import PluginService
from plugins.sim.models import SimMachine
from tests.unit.sim.conftest import count


def sim_type_names(request) -> set[str]:
    vtypes = request.dbsession.scalars(
        select(VirtualizationType.name).where(VirtualizationType.plugin == "sim"))
    dtypes = request.dbsession.scalars(
        select(DeploymentType.name).where(DeploymentType.plugin == "sim"))
    return set(vtypes) | set(dtypes)


def test_plugin_is_listed_as_a_virtualization_plugin(pyramid_request):
    listed = {p["name"]: p for p in pyramid_request.find_service(PluginService).list()}

    assert listed["sim"]["type"] == "virtualization"
    assert "Simulated" in listed["sim"]["description"]


def test_enable_registers_the_host_vm_and_deployment_types(pyramid_request, admin_actor):
    pyramid_request.find_service(PluginService).act("sim", "enable", actor=admin_actor)

    datacenter = pyramid_request.find_service(DatacenterService)
    host_type = datacenter.virtualization_type("sim")
    vm_type = datacenter.virtualization_type("sim-vm")
    deployment = datacenter.deployment_type("sim-deployment")
    assert (host_type.label, host_type.kind) == ("Simulated Host", VirtualizationKind.HOST)
    assert (vm_type.label, vm_type.kind) == ("Simulated VM", VirtualizationKind.VM)
    assert vm_type.host_type_id == host_type.id
    assert (deployment.label, deployment.storage_type) == ("Simulated network storage",
                                                          "sim-storage")


def test_disable_removes_the_plugin_types(sim, admin_actor):
    plugins = sim.find_service(PluginService)
    plugins.act("sim", "stop", actor=admin_actor)

    plugins.act("sim", "disable", actor=admin_actor)

    assert sim_type_names(sim) == set()


def test_disable_is_refused_while_hosts_use_the_types(sim, make_host, admin_actor):
    make_host("host")
    plugins = sim.find_service(PluginService)
    plugins.act("sim", "stop", actor=admin_actor)

    with pytest.raises(InvalidState):
        plugins.act("sim", "disable", actor=admin_actor)


def test_drivers_are_offered_only_while_started(sim, admin_actor):
    plugins = sim.find_service(PluginService)
    assert plugins.storage_driver("sim-storage").storage_type == "sim-storage"

    plugins.act("sim", "stop", actor=admin_actor)

    with pytest.raises(DriverError):
        plugins.storage_driver("sim-storage")
    with pytest.raises(DriverError):
        plugins.virtualization_driver("sim-vm")


def test_reboot_of_a_simulated_physical_machine_uses_its_power_switch(sim, datacenter,
                                                                      make_physical,
                                                                      admin_actor):
    resource = make_physical()

    datacenter.reboot(resource, actor=admin_actor)

    machine = sim.dbsession.get(SimMachine, resource.id)
    assert machine.powered is True
    assert machine.boot_ready_at is not None
    assert count(sim, Command, Command.resource_id == resource.id) == 0


def test_halt_powers_a_simulated_physical_machine_off(sim, make_physical):
    resource = make_physical()
    hook = sim.find_service(PluginService).started_hook

    handled = hook.qrm_resource_command(request=sim, resource=resource, command="halt")

    assert handled is True
    assert sim.dbsession.get(SimMachine, resource.id).powered is False


def test_resource_command_leaves_vms_and_other_machines_to_the_engine(sim, datacenter,
                                                                      make_host, admin_actor):
    hook = sim.find_service(PluginService).started_hook
    host = make_host("host")  # a host has no SimMachine
    vm = datacenter.create_vm(datacenter.virtualization_type("sim-vm"), name="vm", cpus=1,
                              memory_mb=512, nics=1, disk_mb=0, actor=admin_actor)

    assert hook.qrm_resource_command(request=sim, resource=host, command="reboot") is None
    assert hook.qrm_resource_command(request=sim, resource=vm, command="reboot") is None
