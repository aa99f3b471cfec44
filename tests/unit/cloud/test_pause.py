"""Pausing, resuming and restarting appliances of an active request."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from billing.models import LedgerEntry
from billing.services import BillingService
from engine.cloud.models import (
    CloudAppliance,
    CloudApplianceState,
    CloudRequest,
    IpAddress,
    ProvisionStep,
    RequestStatus,
)
from engine.cloud.provisioning import ProvisioningService
from engine.datacenter.models import ApplianceState, Image, Resource, VirtualizationKind
from engine.db import utcnow
from engine.errors import InvalidState, NotFound, ValidationError
from engine.security import Actor
from tests.conftest import commit, run_jobs
from tests.unit.cloud.test_lifecycle import provision


def vms(db) -> int:
    return db.scalar(select(func.count(Resource.id)).where(
        Resource.kind == VirtualizationKind.VM))


def charges(db, appliance_id) -> list[LedgerEntry]:
    return list(db.scalars(select(LedgerEntry).where(
        LedgerEntry.cloud_appliance_id == appliance_id).order_by(LedgerEntry.id)))


def command(cloud, appliance_id, what, actor=None):
    service = cloud.request.find_service(ProvisioningService)
    result = service.command(appliance_id, what, actor=actor or cloud.user_actor)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db = cloud.request.dbsession
    db.expire_all()
    return result.id, db


def test_pause_releases_the_machine_keeps_the_disk_and_stops_billing(cloud):
    db = cloud.request.dbsession
    cloud_request = provision(cloud)
    ca = cloud_request.appliances[0]
    clone_id = ca.clone_image_id
    assert vms(db) == 1

    ca_id, db = command(cloud, ca.id, "stop")
    ca = db.get(CloudAppliance, ca_id)
    assert (ca.state, ca.step) == (CloudApplianceState.PAUSED, ProvisionStep.PAUSED)
    assert ca.appliance.state is ApplianceState.STOPPED
    assert ca.appliance.resource is None
    assert vms(db) == 0  # the VM made for it is gone
    assert db.get(Image, clone_id) is not None  # its disk is kept
    assert db.scalar(select(func.count(IpAddress.id)).where(
        IpAddress.cloud_appliance_id == ca.id)) == 0
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.ACTIVE
    # hours while paused are not charged
    billing = cloud.request.find_service(BillingService)
    ca.active_since -= dt.timedelta(hours=5)
    ca.active_until -= dt.timedelta(hours=5) - dt.timedelta(minutes=1)
    assert billing.charge_due_hours() == 0


def back(cloud, appliance_id, delta):
    """The appliance's run began (and, if closed, ended) ``delta`` earlier."""
    db = cloud.request.dbsession
    ca = db.get(CloudAppliance, appliance_id)
    ca.active_since -= delta
    if ca.active_until is not None:
        ca.active_until -= delta
    commit(cloud.request)
    db.expire_all()


def test_resume_after_the_charged_hour_starts_the_same_disk_on_a_new_machine_and_a_new_run(
        cloud):
    db = cloud.request.dbsession
    cloud_request = provision(cloud)
    ca = cloud_request.appliances[0]
    clone_id = ca.clone_image_id
    command(cloud, ca.id, "stop")
    back(cloud, ca.id, dt.timedelta(minutes=61))  # paused for the charged hour's end
    ca_id, db = command(cloud, ca.id, "start")
    ca = db.get(CloudAppliance, ca_id)
    assert (ca.state, ca.step, ca.run) == (CloudApplianceState.ACTIVE, ProvisionStep.RUNNING, 1)
    assert ca.appliance.image_id == clone_id
    assert ca.appliance.state is ApplianceState.ACTIVE
    assert vms(db) == 1
    keys = [entry.idempotency_key for entry in charges(db, ca.id)]
    assert keys == [f"charge:appliance:{ca.id}:run:0:hour:0",
                    f"charge:appliance:{ca.id}:run:1:hour:0"]


def test_restart_reboots_and_keeps_billing(cloud):
    cloud_request = provision(cloud)
    ca = cloud_request.appliances[0]
    service = cloud.request.find_service(ProvisioningService)
    service.command(ca.id, "restart", actor=cloud.user_actor)
    assert ca.appliance.state is ApplianceState.STARTING
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db = cloud.request.dbsession
    db.expire_all()
    ca = db.get(CloudAppliance, ca.id)
    assert ca.appliance.state is ApplianceState.ACTIVE
    assert ca.state is CloudApplianceState.ACTIVE
    assert len(charges(db, ca.id)) == 1


def test_deprovisioning_a_paused_appliance_removes_its_disk(cloud):
    cloud_request = provision(cloud)
    ca = cloud_request.appliances[0]
    clone_id = ca.clone_image_id
    command(cloud, ca.id, "stop")
    cloud.requests.deprovision(cloud_request.id, actor=cloud.user_actor)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db = cloud.request.dbsession
    db.expire_all()
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.DONE
    assert db.get(Image, clone_id) is None
    assert len(charges(db, ca.id)) == 1


def test_commands_are_checked(cloud):
    cloud_request = provision(cloud)
    ca = cloud_request.appliances[0]
    service = cloud.request.find_service(ProvisioningService)
    with pytest.raises(InvalidState):
        service.command(ca.id, "start", actor=cloud.user_actor)  # it runs already
    with pytest.raises(ValidationError) as raised:
        service.command(ca.id, "explode", actor=cloud.user_actor)
    assert raised.value.field == "command"
    other = cloud.users.create("other", "password-2", "o@example.org", actor=cloud.admin)
    with pytest.raises(NotFound):
        service.command(ca.id, "stop", actor=Actor.cloud_user("other", other.id))


def test_resume_within_the_charged_hour_charges_nothing_more(cloud):
    """Ran 4 minutes, paused, resumed: the hour charged at the start covers the resume; the
    run goes on, and its next hour is charged when it starts, on the same clock."""
    cloud_request = provision(cloud)
    ca_id = cloud_request.appliances[0].id
    back(cloud, ca_id, dt.timedelta(minutes=4))
    command(cloud, ca_id, "stop")
    ca_id, db = command(cloud, ca_id, "start")
    ca = db.get(CloudAppliance, ca_id)
    assert (ca.state, ca.step, ca.run, ca.hours_charged) == (
        CloudApplianceState.ACTIVE, ProvisionStep.RUNNING, 0, 1)
    assert ca.active_until is None
    assert [entry.idempotency_key for entry in charges(db, ca_id)] == [
        f"charge:appliance:{ca_id}:run:0:hour:0"]
    assert len(charges(db, ca_id)) == 1
    billing = cloud.request.find_service(BillingService)
    assert billing.charge_due_hours() == 0  # the hour has not ended yet
    since = ca.active_since
    assert billing.charge_due_hours(now=since + dt.timedelta(minutes=59, seconds=59)) == 0
    assert billing.charge_due_hours(now=since + dt.timedelta(hours=1)) == 1
    entries = charges(db, ca_id)
    assert [entry.idempotency_key for entry in entries] == [
        f"charge:appliance:{ca_id}:run:0:hour:0", f"charge:appliance:{ca_id}:run:0:hour:1"]
    assert entries[1].period_start == since + dt.timedelta(hours=1)


def test_several_pauses_within_one_charged_hour_charge_it_once(cloud):
    cloud_request = provision(cloud)
    ca_id = cloud_request.appliances[0].id
    for _cycle in range(3):
        back(cloud, ca_id, dt.timedelta(minutes=5))
        command(cloud, ca_id, "stop")
        back(cloud, ca_id, dt.timedelta(minutes=5))
        ca_id, db = command(cloud, ca_id, "start")
    ca = db.get(CloudAppliance, ca_id)
    assert (ca.step, ca.run, ca.hours_charged) == (ProvisionStep.RUNNING, 0, 1)
    assert len(charges(db, ca_id)) == 1  # 30 minutes in three pieces: one hour
    # the next pause outlasts the hour: the resume is charged as a new run
    command(cloud, ca_id, "stop")
    back(cloud, ca_id, dt.timedelta(minutes=31))
    ca_id, db = command(cloud, ca_id, "start")
    assert [entry.idempotency_key for entry in charges(db, ca_id)] == [
        f"charge:appliance:{ca_id}:run:0:hour:0", f"charge:appliance:{ca_id}:run:1:hour:0"]


def test_a_paused_run_of_several_hours_covers_a_resume_in_its_last_hour(cloud):
    cloud_request = provision(cloud)
    ca_id = cloud_request.appliances[0].id
    back(cloud, ca_id, dt.timedelta(hours=2, minutes=10))
    command(cloud, ca_id, "stop")  # hours 0, 1 and 2 charged
    back(cloud, ca_id, dt.timedelta(minutes=45))  # resumed 5 minutes before hour 3
    ca_id, db = command(cloud, ca_id, "start")
    assert len(charges(db, ca_id)) == 3
    assert db.get(CloudAppliance, ca_id).run == 0
    billing = cloud.request.find_service(BillingService)
    assert billing.charge_due_hours(now=utcnow() + dt.timedelta(minutes=6)) == 1
    assert [entry.idempotency_key for entry in charges(db, ca_id)][-1] == \
        f"charge:appliance:{ca_id}:run:0:hour:3"


def test_the_batch_run_and_the_appliance_path_agree_after_resumes(cloud):
    """One appliance resumed within its charged hour (run 0 goes on), one after it (run 1):
    the batch run writes the rows ``charge_appliance`` writes, hours later too."""
    cloud_request = provision(cloud, quantity=2)
    within, after = (ca.id for ca in cloud_request.appliances)
    for ca_id, paused_for in ((within, dt.timedelta(minutes=20)),
                              (after, dt.timedelta(minutes=61))):
        command(cloud, ca_id, "stop")
        back(cloud, ca_id, paused_for)
        command(cloud, ca_id, "start")
    db = cloud.request.dbsession
    assert [db.get(CloudAppliance, ca_id).run for ca_id in (within, after)] == [0, 1]
    billing = cloud.request.find_service(BillingService)
    later = utcnow() + dt.timedelta(hours=2, minutes=5)

    def rows() -> list[tuple]:
        return [(e.idempotency_key, e.amount, e.balance_after, e.period_start, e.comment)
                for e in db.scalars(select(LedgerEntry).where(
                    LedgerEntry.period_start.is_not(None)).order_by(LedgerEntry.id))]

    savepoint = db.begin_nested()
    for ca_id in billing.running_appliance_ids():
        billing.charge_appliance(db.get(CloudAppliance, ca_id), now=later)
    db.flush()
    one_by_one = rows()
    savepoint.rollback()
    db.expire_all()
    assert billing.charge_due_hours(now=later) == 4  # hours 1, 2 of run 0; 1, 2 of run 1
    assert rows() == one_by_one
    assert [key for key, *_rest in one_by_one[-4:]] == [
        f"charge:appliance:{within}:run:0:hour:1", f"charge:appliance:{within}:run:0:hour:2",
        f"charge:appliance:{after}:run:1:hour:1", f"charge:appliance:{after}:run:1:hour:2"]
    assert billing.charge_due_hours(now=later) == 0


def test_a_batch_found_before_a_pause_and_resume_in_the_hour_charges_nothing_twice(cloud):
    """The batch run found hour 1 due; before it locks, the appliance is paused (hour 1
    charged as the run closes) and resumed within hour 1: the batch finds nothing left."""
    cloud_request = provision(cloud)
    ca_id = cloud_request.appliances[0].id
    back(cloud, ca_id, dt.timedelta(minutes=70))
    billing = cloud.request.find_service(BillingService)
    now = utcnow()
    (batch,) = billing.due_batches(now)
    assert batch.appliance_ids == [ca_id]
    command(cloud, ca_id, "stop")
    ca_id, db = command(cloud, ca_id, "start")
    assert (db.get(CloudAppliance, ca_id).run, db.get(CloudAppliance, ca_id).hours_charged) \
        == (0, 2)
    assert billing.charge_batch(batch, now=now) == 0
    assert [entry.idempotency_key for entry in charges(db, ca_id)] == [
        f"charge:appliance:{ca_id}:run:0:hour:0", f"charge:appliance:{ca_id}:run:0:hour:1"]
    assert billing.charge_due_hours(now=now + dt.timedelta(hours=1)) == 1
