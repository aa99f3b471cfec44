"""Change of machine type (P2V, V2P) on the simulated datacenter: the appliance is stopped,
gets a resource of the new type and starts there, with the same id, name, kernel and image."""

from __future__ import annotations

from sqlalchemy import select

from engine.cloud.models import CloudRequest, RequestStatus
from engine.datacenter.models import (
    Appliance,
    ApplianceFailOver,
    ApplianceState,
    FailOverStep,
    VirtualizationKind,
)
from engine.datacenter.refs import vm_name
from engine.datacenter.services import AppliancesService
from engine.errors import InvalidState
from engine.security import Actor
from plugins.sim import inventory
from tests.conftest import commit
from tests.unit.cloud.test_outside_work import deprovision, engine_vms
from tests.unit.ha.test_failover import db_of, ha_request, resource, settle, volume_of

ADMIN = Actor.admin("admin")


def change(cloud, appliance_id, vtype):
    appliances = cloud.request.find_service(AppliancesService)
    fo = appliances.change_type(db_of(cloud).get(Appliance, appliance_id), vtype, actor=ADMIN)
    commit(cloud.request)
    settle(cloud, rounds=8)
    return fo


def identity(appliance):
    return (appliance.id, appliance.name, appliance.kernel_id, appliance.image_id)


def test_p2v_then_v2p_keep_the_image_and_the_appliance(cloud):
    ca = ha_request(cloud)  # physical
    request_id, appliance_id, physical = ca.request_id, ca.appliance_id, ca.resource_id
    before = identity(ca.appliance)

    change(cloud, appliance_id, "sim-vm")
    appliance = db_of(cloud).get(Appliance, appliance_id)
    assert identity(appliance) == before
    assert appliance.state is ApplianceState.ACTIVE
    assert appliance.virtualization_type.name == "sim-vm"
    vm = resource(cloud, appliance.resource_id)
    assert vm.kind is VirtualizationKind.VM
    assert volume_of(cloud, appliance.image_id).authorized_id == vm.id
    assert resource(cloud, physical).image_id is None  # back in the idle pool
    cloud_request = db_of(cloud).get(CloudRequest, request_id)
    assert cloud_request.status is RequestStatus.ACTIVE
    assert cloud_request.appliances[0].resource_id == vm.id
    assert cloud_request.appliances[0].created_vm_id == vm.id
    (step,) = db_of(cloud).scalars(select(ApplianceFailOver.step))
    assert step is FailOverStep.DONE

    change(cloud, appliance_id, "physical")  # V2P: the VM made for it is removed
    appliance = db_of(cloud).get(Appliance, appliance_id)
    assert identity(appliance) == before
    assert appliance.state is ApplianceState.ACTIVE
    assert resource(cloud, appliance.resource_id).kind is VirtualizationKind.PHYSICAL
    assert engine_vms() == []
    assert inventory.volume(None, volume_of(cloud, appliance.image_id).root_device)\
        .authorized_id == appliance.resource_id
    assert db_of(cloud).get(CloudRequest, request_id).appliances[0].created_vm_id is None

    deprovision(cloud, request_id)
    settle(cloud, rounds=8)
    assert db_of(cloud).get(CloudRequest, request_id).status is RequestStatus.DONE
    assert engine_vms() == []


def test_a_change_to_a_host_type_or_the_same_type_is_refused(cloud):
    ca = ha_request(cloud, virtualization="sim-vm")
    appliances = cloud.request.find_service(AppliancesService)
    appliance = db_of(cloud).get(Appliance, ca.appliance_id)
    for vtype in ("sim", "sim-vm"):
        try:
            appliances.change_type(appliance, vtype, actor=ADMIN)
        except InvalidState:
            continue
        raise AssertionError(f"a change to {vtype} was accepted")
    assert engine_vms() == [vm_name(ca.created_vm_id)]

