"""The plugin's life cycle, its hooks, hosts registered when the engine adds them, and power
commands for simulated physical machines."""

from __future__ import annotations

import types

import pytest
from sqlalchemy import select

from engine.datacenter.models import DeploymentType, VirtualizationKind, VirtualizationType
from engine.datacenter.services import DatacenterService
from engine.errors import DriverError, InvalidState
from engine.plugins.drivers import HostRef, MachineRef, StorageRef
from engine.plugins.manager import PluginService
from plugins.sim import faults, hooks, inventory
from tests.unit.sim.conftest import machine_ref, new_mac, spec


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
    assert plugins.virtualization_driver("sim-vm").vm_type == "sim-vm"

    plugins.act("sim", "stop", actor=admin_actor)

    with pytest.raises(DriverError):
        plugins.storage_driver("sim-storage")
    with pytest.raises(DriverError):
        plugins.virtualization_driver("sim-vm")


class NoDatabase:
    """A request whose database session must not be touched."""

    def __init__(self, settings):
        self.registry = types.SimpleNamespace(settings=settings)

    @property
    def dbsession(self):
        raise AssertionError("a driver touched request.dbsession")


def test_drivers_work_without_the_engine_database(settings):
    request = NoDatabase(settings)
    [vm_driver] = hooks.qrm_virtualization_drivers(request=request)
    [storage_driver] = hooks.qrm_storage_drivers(request=request)
    mac = new_mac()
    inventory.register_host(settings, mac, 4, 4096)
    host = HostRef(id=1, name="h", mac=mac)
    storage = StorageRef(id=1, name="s", storage_type="sim-storage")

    vm_driver.create_vm(host, spec())
    vm_driver.reboot_vm(host, "qrm-vm-1")
    golden = storage_driver.create_volume(storage, name="golden", size_mb=10)
    storage_driver.clone_volume(storage, source_root_device=golden, name="c", size_mb=10)

    assert len(vm_driver.list_vms(host)) == 1
    assert len(storage_driver.list_volumes(storage)) == 2
    assert hooks.qrm_resource_command(request=request, resource=MachineRef(id=1, mac=mac),
                                      command="reboot") is None


def test_adding_a_sim_host_registers_the_box_with_its_capacity(sim, settings, datacenter,
                                                              admin_actor):
    mac = new_mac()

    host = datacenter.add_resource(mac=mac, kind=VirtualizationKind.HOST,
                                   virtualization_type="sim", actor=admin_actor, name="h1",
                                   cpus=12, memory_mb=24576)

    registered = inventory.hosts(settings)
    assert [(h.mac, h.name, h.cpus, h.memory_mb) for h in registered] == [
        (host.mac, "h1", 12, 24576)]


def test_adding_a_host_that_is_registered_already_keeps_the_box_as_it_is(
        sim, settings, datacenter, admin_actor):
    mac = new_mac()
    inventory.register_host(settings, mac, 2, 2048)

    datacenter.add_resource(mac=mac, kind=VirtualizationKind.HOST, virtualization_type="sim",
                            actor=admin_actor, name="h1", cpus=64, memory_mb=65536)

    assert [(h.cpus, h.memory_mb) for h in inventory.hosts(settings)] == [(2, 2048)]


def test_adding_other_resources_registers_nothing(sim, settings, datacenter, admin_actor):
    datacenter.add_resource(mac=new_mac(), kind=VirtualizationKind.PHYSICAL,
                            virtualization_type="physical", actor=admin_actor, cpus=4)

    assert inventory.hosts(settings) == []
    assert inventory.physical_machines(settings) == []


def test_reboot_of_a_simulated_physical_machine_uses_its_power_switch(sim, settings,
                                                                      make_physical,
                                                                      monkeypatch):
    resource = make_physical()
    monkeypatch.setitem(settings, "qrm.sim.boot_delay", "30")
    hook = sim.find_service(PluginService).started_hook

    handled = hook.qrm_resource_command(request=sim, resource=machine_ref(resource),
                                        command="reboot")

    assert handled is True
    machine = inventory.machine_by_mac(settings, resource.mac)
    assert machine.powered is True
    assert not machine.booted()


def test_halt_powers_a_simulated_physical_machine_off_and_reboot_on_again(sim, settings,
                                                                          make_physical):
    resource = make_physical()
    hook = sim.find_service(PluginService).started_hook

    assert hook.qrm_resource_command(request=sim, resource=machine_ref(resource),
                                     command="halt") is True
    assert inventory.machine_by_mac(settings, resource.mac).powered is False

    hook.qrm_resource_command(request=sim, resource=machine_ref(resource), command="reboot")
    assert inventory.machine_by_mac(settings, resource.mac).powered is True
    assert [call.op for call in faults.calls()] == [
        "halt_machine", "reboot_machine"]


def test_resource_command_leaves_vms_hosts_and_strangers_to_the_engine(sim, vm_driver, host,
                                                                       make_physical):
    hook = sim.find_service(PluginService).started_hook
    vm_spec = spec()
    vm_driver.create_vm(host, vm_spec)
    box = machine_ref(make_physical())

    for machine in (MachineRef(id=5, mac=vm_spec.macs[0], kind="vm"),
                    MachineRef(id=6, mac=host.mac, kind="host"),
                    MachineRef(id=7, mac=new_mac())):
        assert hook.qrm_resource_command(request=sim, resource=machine,
                                         command="reboot") is None
    assert hook.qrm_resource_command(request=sim, resource=box, command="wake") is None
