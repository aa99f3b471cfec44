"""The request life-cycle on the simulated datacenter, driven like the scheduler drives it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing.models import LedgerEntry
from billing.services import BillingService, LedgerService
from engine.cloud.models import (
    CloudAppliance,
    CloudApplianceState,
    CloudRequest,
    IpAddress,
    ProvisionStep,
    RequestStatus,
)
from engine.cloud.provisioning import ProvisioningService
from engine.datacenter.models import (
    Appliance,
    ApplianceState,
    Image,
    Resource,
    ResourceState,
    Storage,
    VirtualizationKind,
)
from plugins.sim import faults, inventory
from tests.conftest import commit, run_jobs
from tests.unit.cloud.conftest import request_values


def count(db, model, *where) -> int:
    return db.scalar(select(func.count()).select_from(model).where(*where))


def volumes(cloud) -> list:
    storage = cloud.request.dbsession.scalar(select(Storage).order_by(Storage.id))
    return inventory.volumes(None, storage.name)


def provision(cloud, **overrides):
    run_jobs(cloud.request.registry, "plugins.monitor", rounds=1)  # demo machines booted
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values(**overrides))
    cloud.requests.approve(cloud_request.id, actor=cloud.admin)
    commit(cloud.request)  # the after-commit kick provisions right away (inline in tests)
    run_jobs(cloud.request.registry)
    cloud.request.dbsession.expire_all()
    return cloud.request.dbsession.get(CloudRequest, cloud_request.id)


def test_whole_life_cycle_provisions_charges_and_releases_everything(cloud):
    db = cloud.request.dbsession
    balance = cloud.users.billing.balance(cloud.demo)
    vms_before = count(db, Resource, Resource.kind == VirtualizationKind.VM)
    images_before = count(db, Image)
    volumes_before = len(volumes(cloud))

    cloud_request = provision(cloud, network_cards=2)

    assert cloud_request.status is RequestStatus.ACTIVE
    (cloud_appliance,) = cloud_request.appliances
    assert cloud_appliance.state is CloudApplianceState.ACTIVE
    assert cloud_appliance.step is ProvisionStep.RUNNING
    appliance = cloud_appliance.appliance
    assert appliance.state is ApplianceState.ACTIVE
    assert appliance.resource.state is ResourceState.ACTIVE
    assert appliance.resource.kind is VirtualizationKind.VM  # no idle sim-vm: one was made
    assert appliance.image.origin_id == cloud_request.image_id  # clone-on-deploy
    assert [a.address for a in cloud_appliance.addresses] == ["192.0.2.10", "192.0.2.11"]
    (volume,) = [v for v in volumes(cloud) if v.root_device == appliance.image.root_device]
    assert volume.authorized_id == appliance.resource.id
    (vm,) = inventory.vms()
    assert vm.macs == (appliance.resource.mac, vm.macs[1])  # one MAC per network card
    # the first hour is charged when the appliance becomes active
    ledger = cloud.request.find_service(LedgerService)
    (charge,) = [e for e in ledger.transactions(cloud.demo) if e.period_start is not None]
    assert charge.amount == -cloud_request.price_per_hour
    assert cloud.users.billing.balance(cloud.demo) == balance - cloud_request.price_per_hour
    assert ledger.ledger_sum(cloud.demo) == cloud.users.billing.balance(cloud.demo)

    cloud.requests.deprovision(cloud_request.id, actor=cloud.user_actor)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()

    cloud_request = db.get(CloudRequest, cloud_request.id)
    assert cloud_request.status is RequestStatus.DONE
    assert cloud_request.appliances[0].state is CloudApplianceState.REMOVED
    assert count(db, Appliance) == 0
    assert count(db, Resource, Resource.kind == VirtualizationKind.VM) == vms_before
    assert count(db, Image) == images_before
    assert len(volumes(cloud)) == volumes_before
    assert inventory.vms() == []
    assert count(db, IpAddress, IpAddress.cloud_appliance_id.is_not(None)) == 0
    assert cloud.users.usage(cloud.demo)["resources"] == 0
    # nothing more was charged for the deprovisioned hour
    assert len([e for e in ledger.transactions(cloud.demo) if e.period_start]) == 1


def test_idle_physical_resource_is_used_and_returned(cloud):
    db = cloud.request.dbsession
    cloud_request = provision(cloud, virtualization="physical", cpus=4, memory_mb=2048)
    resource = cloud_request.appliances[0].appliance.resource
    assert resource.kind is VirtualizationKind.PHYSICAL
    assert cloud_request.appliances[0].created_vm_id is None
    cloud.requests.deprovision(cloud_request.id, actor=cloud.admin)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()
    resource = db.get(Resource, resource.id)
    assert resource.state is ResourceState.IDLE
    assert resource.image_id is None
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.DONE


def test_capacity_exhaustion_ends_no_resources_with_nothing_leaked(cloud):
    db = cloud.request.dbsession
    vms_before = count(db, Resource, Resource.kind == VirtualizationKind.VM)
    volumes_before = len(volumes(cloud))
    for host in db.scalars(select(Resource).where(Resource.kind == VirtualizationKind.HOST)):
        host.cpus = 8  # two hosts of 8 CPUs: four 4-CPU VMs fit, the fifth does not
        inventory.register_host(None, host.mac, 8, host.memory_mb)
    cloud_request = provision(cloud, cpus=4, memory_mb=2048, quantity=5)
    assert cloud_request.status is RequestStatus.NO_RESOURCES
    assert "room" in cloud_request.status_reason
    assert all(ca.state is CloudApplianceState.REMOVED for ca in cloud_request.appliances)
    assert count(db, Resource, Resource.kind == VirtualizationKind.VM) == vms_before
    assert len(volumes(cloud)) == volumes_before
    assert inventory.vms() == []
    assert count(db, Appliance) == 0
    assert cloud.users.usage(cloud.demo)["resources"] == 0


def test_no_idle_physical_system_ends_no_resources(cloud):
    cloud_request = provision(cloud, virtualization="physical", cpus=4, quantity=3)
    assert cloud_request.status is RequestStatus.NO_RESOURCES
    assert count(cloud.request.dbsession, Appliance) == 0


def test_interrupted_step_is_resumed_without_duplicates(cloud, engine_clock):
    db = cloud.request.dbsession
    # the storage makes the clone, and then the connection to it is lost
    faults.fail("clone_volume", when="after")
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    cloud.requests.approve(cloud_request.id, actor=cloud.admin)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()
    failed = db.get(CloudRequest, cloud_request.id)
    assert failed.status is RequestStatus.APPROVED  # retried later, not at every sweep
    assert failed.next_step_at > engine_clock.now()
    engine_clock.advance(61)  # a minute later
    run_jobs(cloud.request.registry)
    db.expire_all()
    cloud_request = db.get(CloudRequest, cloud_request.id)
    assert cloud_request.status is RequestStatus.ACTIVE
    assert len(faults.calls("clone_volume")) == 2  # the failed call was made again
    assert count(db, Resource, Resource.kind == VirtualizationKind.VM) == 1
    assert count(db, Image, Image.is_master.is_(False)) == 1
    assert len([v for v in volumes(cloud) if v.kind == "clone"]) == 1
    assert count(db, CloudAppliance) == 1
    assert count(db, LedgerEntry, LedgerEntry.period_start.is_not(None)) == 1


def test_step_resumes_from_persisted_step_after_restart(cloud):
    """Each step commits on its own; a new process continues where the last one stopped."""
    db = cloud.request.dbsession
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    cloud.requests.approve(cloud_request.id, actor=cloud.admin)
    cloud.request.registry["qrm.kicker"].running = True  # no inline kick: we drive it
    try:
        commit(cloud.request)
        service = cloud.request.find_service(ProvisioningService)
        # the cloud appliance rows, the engine appliance and the VM's placement: steps with
        # no outside work follow each other in one transaction, up to the VM's creation,
        # which is recorded and made only after the commit
        assert service.advance(cloud_request.id)
        assert not service.advance(cloud_request.id)  # the request waits for that call
        commit(cloud.request)
    finally:
        cloud.request.registry["qrm.kicker"].running = False
    db.expire_all()
    (cloud_appliance,) = db.get(CloudRequest, cloud_request.id).appliances
    assert cloud_appliance.step is ProvisionStep.RESOURCE
    run_jobs(cloud.request.registry)  # "after the restart"
    db.expire_all()
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.ACTIVE
    assert count(db, Resource, Resource.kind == VirtualizationKind.VM) == 1


def test_stop_time_deprovisions(cloud):
    db = cloud.request.dbsession
    cloud_request = provision(cloud)
    service = cloud.request.find_service(ProvisioningService)
    assert service.advance(cloud_request.id, now=cloud_request.stop + dt.timedelta(seconds=1))
    assert cloud_request.status is RequestStatus.DEPROVISION
    assert cloud_request.status_reason == "stop time reached"
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.DONE


def test_missed_hours_are_charged_late_exactly_once(cloud):
    db = cloud.request.dbsession
    cloud_request = provision(cloud)
    cloud_appliance = cloud_request.appliances[0]
    # the scheduler was down: the appliance has been active for 3 h 10 min
    cloud_appliance.active_since -= dt.timedelta(hours=3, minutes=10)
    commit(cloud.request)
    billing = cloud.request.find_service(BillingService)
    balance = billing.balance(cloud.demo)
    assert billing.charge_due_hours() == 3
    assert billing.charge_due_hours() == 0
    commit(cloud.request)
    run_jobs(cloud.request.registry, "billing.charge")
    charges = list(db.scalars(select(LedgerEntry).where(
        LedgerEntry.cloud_appliance_id == cloud_appliance.id).order_by(LedgerEntry.id)))
    assert len(charges) == 4
    assert len({c.idempotency_key for c in charges}) == 4
    assert [c.period_start for c in charges[1:]] == [
        cloud_appliance.active_since + dt.timedelta(hours=k) for k in range(1, 4)]
    assert billing.balance(cloud.demo) == balance - 3 * cloud_request.price_per_hour
    ledger = cloud.request.find_service(LedgerService)
    assert ledger.ledger_sum(cloud.demo) == billing.balance(cloud.demo)


def test_exhausted_credit_deprovisions_the_request(cloud):
    db = cloud.request.dbsession
    cloud_request = provision(cloud)
    billing = cloud.request.find_service(BillingService)
    billing.set_balance(cloud.demo, Decimal(5), comment="test", actor=cloud.admin)
    cloud_request.appliances[0].active_since -= dt.timedelta(hours=1)
    commit(cloud.request)
    billing.charge_due_hours()
    assert billing.balance(cloud.demo) < 0
    cloud_request = db.get(CloudRequest, cloud_request.id)
    assert cloud_request.status is RequestStatus.DEPROVISION
    assert cloud_request.status_reason == "credit exhausted"
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.DONE


def test_denied_and_new_requests_are_never_provisioned(cloud):
    db = cloud.request.dbsession
    denied = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    cloud.requests.deny(denied.id, actor=cloud.admin)
    waiting = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    assert count(db, CloudAppliance) == 0
    assert cloud.users.usage(cloud.demo)["resources"] == 1  # only the waiting one holds quota
    cloud.requests.deprovision(waiting.id, actor=cloud.user_actor)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()
    assert db.get(CloudRequest, waiting.id).status is RequestStatus.DONE


@pytest.mark.parametrize("status", ["done", "no-resources"])
def test_terminal_requests_release_quota(cloud, status):
    if status == "done":
        cloud_request = provision(cloud)
        cloud.requests.deprovision(cloud_request.id, actor=cloud.admin)
        commit(cloud.request)
        run_jobs(cloud.request.registry)
    else:
        provision(cloud, virtualization="physical", cpus=4, quantity=3)
    assert cloud.users.usage(cloud.demo) == {"resources": 0, "memory_mb": 0, "disk_mb": 0,
                                             "cpus": 0, "network_cards": 0}
