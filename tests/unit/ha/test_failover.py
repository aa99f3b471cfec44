"""Fail-over on the simulated datacenter: a machine of a highly available appliance stops
reporting, and after the monitoring timeout the appliance runs on a standby, fenced first,
with its request active and billed once per hour. The simulated datacenter keeps its state
outside our transaction and its fault switches do the failing; nothing of ours is mocked."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from billing.models import LedgerEntry
from engine.cloud.models import CloudRequest, RequestStatus
from engine.datacenter import calls as outside
from engine.datacenter.failover import advance_one, owners
from engine.datacenter.models import (
    Appliance,
    ApplianceFailOver,
    ApplianceState,
    DriverCall,
    FailOverStep,
    Image,
    Resource,
    VirtualizationKind,
)
from engine.events.models import Event, Notice
from engine.monitoring.services import stale_after
from engine.plugins.manager import PluginService
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from plugins.sim import faults, inventory
from plugins.sim.demo import add_physical_machine
from tests.conftest import commit, run_jobs
from tests.unit.cloud.test_outside_work import _crash, db_of, submit
from tests.unit.ha.conftest import set_setting

JOBS = ("plugins.monitor", "monitoring.health", "datacenter.failover", "datacenter.calls",
        "cloud.sweep", "billing.charge")


def settle(cloud: Any, rounds: int = 6) -> None:
    run_jobs(cloud.request.registry, *JOBS, rounds=rounds)
    db_of(cloud).expire_all()


def ha_request(cloud: Any, *, ha: bool = True, virtualization: str = "physical") -> Any:
    request_id = submit(cloud, ha=ha, virtualization=virtualization)
    settle(cloud)
    cloud_request = db_of(cloud).get(CloudRequest, request_id)
    assert cloud_request.status is RequestStatus.ACTIVE, cloud_request.status_reason
    (ca,) = cloud_request.appliances
    assert ca.appliance.state is ApplianceState.ACTIVE
    return ca


def resource(cloud: Any, resource_id: int) -> Resource:
    return db_of(cloud).get(Resource, resource_id)


def fail(cloud: Any, engine_clock: Any, *resource_ids: int) -> None:
    """The machines stop reporting (their power is cut); the monitoring timeout passes."""
    for resource_id in resource_ids:
        inventory.set_power(None, resource(cloud, resource_id).mac, on=False)
    engine_clock.advance(stale_after(cloud.request.registry.settings).total_seconds() + 1)


def idle_physical(cloud: Any) -> list[int]:
    claimed = select(Appliance.resource_id).where(Appliance.resource_id.is_not(None))
    return list(db_of(cloud).scalars(select(Resource.id).where(
        Resource.kind == VirtualizationKind.PHYSICAL, Resource.id.not_in(claimed))
        .order_by(Resource.id)))


def charge_keys(cloud: Any) -> list[str]:
    return sorted(db_of(cloud).scalars(select(LedgerEntry.idempotency_key).where(
        LedgerEntry.period_start.is_not(None))))


def events(cloud: Any, name: str) -> list[Event]:
    return list(db_of(cloud).scalars(select(Event).where(Event.name == name)
                                     .order_by(Event.id)))


def failovers(cloud: Any) -> list[ApplianceFailOver]:
    return list(db_of(cloud).scalars(select(ApplianceFailOver).order_by(ApplianceFailOver.id)))


def volume_of(cloud: Any, image_id: int) -> Any:
    return inventory.volume(None, db_of(cloud).get(Image, image_id).root_device)


def add_standby(cloud: Any, name: str) -> None:
    add_physical_machine(cloud.request, name, cpus=4, memory_mb=8192, nics=2,
                         actor=Actor.admin("admin"), booting=True)
    commit(cloud.request)


def test_a_silent_machine_fails_over_to_the_standby_and_billing_goes_on(ha, engine_clock):
    ca = ha_request(ha)
    appliance_id, failed_id, image_id = ca.appliance_id, ca.resource_id, ca.appliance.image_id
    (standby,) = idle_physical(ha)
    assert charge_keys(ha) == [f"charge:appliance:{ca.id}:run:0:hour:0"]

    fail(ha, engine_clock, failed_id)
    settle(ha)

    appliance = db_of(ha).get(Appliance, appliance_id)
    assert appliance.resource_id == standby
    assert appliance.state is ApplianceState.ACTIVE
    assert appliance.image_id == image_id  # the same appliance, the same disk
    cloud_request = db_of(ha).get(CloudRequest, ca.request_id)
    assert cloud_request.status is RequestStatus.ACTIVE
    assert cloud_request.appliances[0].resource_id == standby
    # fenced: the failed machine is off and the export is the standby's alone
    assert not inventory.machine_by_mac(None, resource(ha, failed_id).mac).powered
    assert volume_of(ha, image_id).authorized_id == standby
    (fo,) = failovers(ha)
    assert fo.step is FailOverStep.DONE
    assert fo.fenced_by in ("power", "storage")
    assert fo.open_appliance_id is None
    assert [e.actor for e in events(ha, "ha.failover")] == ["plugin:highavailability"]
    assert [e.actor for e in events(ha, "failover.done")] == ["plugin:highavailability"]
    (notice,) = db_of(ha).scalars(select(Notice))
    assert notice.recipient == "admins"
    assert notice.sent_at is None
    assert str(standby) in notice.body
    assert appliance.name in notice.subject
    # the failed machine idles when it comes back: it joins the pool
    assert resource(ha, failed_id).image_id is None

    # billing: exactly one charge per hour across the switch
    assert charge_keys(ha) == [f"charge:appliance:{ca.id}:run:0:hour:0"]
    for hour in (1, 2):
        engine_clock.advance(3600)
        settle(ha, rounds=2)
        assert charge_keys(ha) == sorted(f"charge:appliance:{ca.id}:run:0:hour:{k}"
                                         for k in range(hour + 1))


def test_two_appliances_fail_at_once_onto_one_standby_pool(ha, engine_clock, monkeypatch):
    set_setting(ha, monkeypatch, "fallback_types", "sim-vm")  # physical → virtual allowed
    add_standby(ha, "sim-physical-3")
    first, second = ha_request(ha), ha_request(ha)
    (standby,) = idle_physical(ha)  # one machine protects both
    ids = [first.appliance_id, second.appliance_id]

    fail(ha, engine_clock, first.resource_id, second.resource_id)
    settle(ha, rounds=8)

    moved = [db_of(ha).get(Appliance, appliance_id) for appliance_id in ids]
    assert all(a.state is ApplianceState.ACTIVE for a in moved)
    new = {a.resource_id for a in moved}
    assert len(new) == 2
    assert standby in new
    (vm,) = [resource(ha, rid) for rid in new if rid != standby]
    assert vm.kind is VirtualizationKind.VM  # the second went to a new VM (P2V)
    assert {a.virtualization_type.name for a in moved} == {"physical", "sim-vm"}
    for ca in (first, second):
        cloud_request = db_of(ha).get(CloudRequest, ca.request_id)
        assert cloud_request.status is RequestStatus.ACTIVE
        assert cloud_request.appliances[0].resource_id in new
    assert [fo.step for fo in failovers(ha)] == [FailOverStep.DONE] * 2


def test_a_flapping_machine_does_not_bounce_its_appliance(ha, engine_clock, monkeypatch):
    set_setting(ha, monkeypatch, "hold_down", "3600")
    ca = ha_request(ha)
    appliance_id, first_machine = ca.appliance_id, ca.resource_id
    (standby,) = idle_physical(ha)
    fail(ha, engine_clock, first_machine)
    settle(ha)
    assert db_of(ha).get(Appliance, appliance_id).resource_id == standby

    # the first machine comes back and goes again, twice: the appliance stays
    for _ in range(2):
        inventory.set_power(None, resource(ha, first_machine).mac, on=True, booted=True)
        settle(ha, rounds=2)
        assert resource(ha, first_machine).state.value == "idle"
        fail(ha, engine_clock, first_machine)
        settle(ha, rounds=2)
        assert db_of(ha).get(Appliance, appliance_id).resource_id == standby
    inventory.set_power(None, resource(ha, first_machine).mac, on=True, booted=True)
    settle(ha, rounds=2)

    # the standby fails within the hold-down: the appliance is not moved back
    fail(ha, engine_clock, standby)
    settle(ha, rounds=3)
    appliance = db_of(ha).get(Appliance, appliance_id)
    assert appliance.resource_id == standby
    assert len(failovers(ha)) == 1
    assert events(ha, "ha.held-down")
    assert db_of(ha).scalar(select(Appliance.id).where(
        Appliance.resource_id == first_machine)) is None

    # after the hold-down it is failed over once more (the machine is no longer flapping)
    engine_clock.advance(3600)
    settle(ha, rounds=6)
    appliance = db_of(ha).get(Appliance, appliance_id)
    assert appliance.state is ApplianceState.ACTIVE
    assert appliance.resource_id != standby
    assert [fo.step for fo in failovers(ha)] == [FailOverStep.DONE] * 2


def test_without_ha_nothing_moves(ha, engine_clock):
    ca = ha_request(ha, ha=False)
    (standby,) = idle_physical(ha)
    fail(ha, engine_clock, ca.resource_id)
    settle(ha)
    appliance = db_of(ha).get(Appliance, ca.appliance_id)
    assert appliance.resource_id == ca.resource_id
    assert failovers(ha) == []
    assert idle_physical(ha) == [standby]
    assert events(ha, "ha.not-handled")


def test_with_the_plugin_disabled_nothing_moves(ha, engine_clock):
    ca = ha_request(ha)
    plugins = ha.request.find_service(PluginService)
    for action in ("stop", "disable"):
        plugins.act("highavailability", action, actor=Actor.admin("admin"))
    commit(ha.request)
    fail(ha, engine_clock, ca.resource_id)
    settle(ha)
    assert db_of(ha).get(Appliance, ca.appliance_id).resource_id == ca.resource_id
    assert failovers(ha) == []


def test_fencing_fails_and_no_second_copy_starts(ha, engine_clock):
    ca = ha_request(ha)
    appliance_id, image_id = ca.appliance_id, ca.appliance.image_id
    (standby,) = idle_physical(ha)
    standby_mac = resource(ha, standby).mac
    faults.fail("halt_machine", times=1000)
    faults.fail("authenticate", times=1000)
    fail(ha, engine_clock, ca.resource_id)
    for _ in range(4):
        settle(ha, rounds=2)
        engine_clock.advance(300)
    (fo,) = failovers(ha)
    assert fo.step is FailOverStep.FENCING
    assert db_of(ha).get(Appliance, appliance_id).resource_id == ca.resource_id
    assert idle_physical(ha) == [standby]  # the standby was not touched
    assert not [c for c in faults.calls("reboot_machine") if c.target == standby_mac]
    assert volume_of(ha, image_id).authorized_id != standby
    warned = events(ha, "failover.fencing-failed")
    assert warned
    assert "not started elsewhere" in warned[-1].message

    faults.clear()  # the storage answers again
    for _ in range(4):
        engine_clock.advance(600)
        settle(ha, rounds=3)
    appliance = db_of(ha).get(Appliance, appliance_id)
    assert appliance.resource_id == standby
    assert appliance.state is ApplianceState.ACTIVE
    assert db_of(ha).get(CloudRequest, ca.request_id).status is RequestStatus.ACTIVE


def _drive_failover_until(cloud: Any, operation: str) -> int:
    registry = cloud.request.registry
    for _ in range(40):
        run_jobs(registry, "plugins.monitor", "monitoring.health", rounds=1)
        fo_ids = run_in_transaction(registry, lambda request: list(request.dbsession.scalars(
            select(ApplianceFailOver.id))))
        for fo_id in fo_ids:
            run_in_transaction(registry, advance_one, fo_id=fo_id)
            for owner in owners(fo_id):
                for call_id in run_in_transaction(registry, outside.due_calls, owner=owner):
                    found = run_in_transaction(registry, lambda request, i=call_id: request
                                               .dbsession.get(DriverCall, i).operation)
                    if found == operation:
                        return call_id
                    outside.perform(registry, call_id)
    raise AssertionError(f"no {operation} call came")


@pytest.mark.parametrize("point", ["after-claim", "after-effect", "after-record"])
@pytest.mark.parametrize("operation", ["power", "authenticate"])
def test_a_crash_at_any_point_of_a_failover_converges(ha, engine_clock, no_kicks, operation,
                                                      point):
    ca = ha_request(ha)
    appliance_id, image_id = ca.appliance_id, ca.appliance.image_id
    (standby,) = idle_physical(ha)
    fail(ha, engine_clock, ca.resource_id)
    call_id = _drive_failover_until(ha, operation)
    _crash(ha, call_id, point)
    engine_clock.advance(outside.CLAIM_FOR.total_seconds() + 1)
    settle(ha, rounds=8)
    appliance = db_of(ha).get(Appliance, appliance_id)
    assert appliance.resource_id == standby
    assert appliance.state is ApplianceState.ACTIVE
    assert volume_of(ha, image_id).authorized_id == standby
    (fo,) = failovers(ha)
    assert fo.step is FailOverStep.DONE
    assert db_of(ha).scalar(select(func.count(DriverCall.id)).where(
        DriverCall.owner.like(f"appliance_failover:{fo.id}%"),
        DriverCall.state != outside.CallState.DONE)) == 0
    assert db_of(ha).get(CloudRequest, ca.request_id).status is RequestStatus.ACTIVE


def test_a_vm_gone_in_reconciliation_fails_over_to_a_new_vm(ha, engine_clock):
    from engine.datacenter.reconcile import reconcile
    from engine.datacenter.refs import vm_name
    from tests.unit.cloud.test_outside_work import deprovision, engine_vms

    ca = ha_request(ha, virtualization="sim-vm")
    appliance_id, gone, request_id = ca.appliance_id, ca.created_vm_id, ca.request_id
    assert inventory.vanish_vm(None, vm_name(gone)) == 1
    reconcile(ha.request.registry)
    settle(ha, rounds=8)
    appliance = db_of(ha).get(Appliance, appliance_id)
    assert appliance.state is ApplianceState.ACTIVE
    assert appliance.resource_id != gone
    cloud_request = db_of(ha).get(CloudRequest, request_id)
    assert cloud_request.status is RequestStatus.ACTIVE
    assert cloud_request.appliances[0].created_vm_id == appliance.resource_id
    assert db_of(ha).get(Resource, gone) is None  # the vanished VM's row is given back
    assert engine_vms() == [vm_name(appliance.resource_id)]
    # the request's teardown removes the new VM: nothing is left behind
    deprovision(ha, request_id)
    settle(ha, rounds=8)
    assert engine_vms() == []
    assert db_of(ha).get(CloudRequest, request_id).status is RequestStatus.DONE


def test_a_failed_host_moves_its_vm_appliance_to_another_host(ha, engine_clock):
    ca = ha_request(ha, virtualization="sim-vm")
    appliance_id, old_vm = ca.appliance_id, ca.created_vm_id
    failed_host = resource(ha, old_vm).host
    inventory.set_power(None, failed_host.mac, on=False)
    engine_clock.advance(stale_after(ha.request.registry.settings).total_seconds() + 1)
    settle(ha, rounds=8)
    assert resource(ha, failed_host.id).state.value == "error"
    appliance = db_of(ha).get(Appliance, appliance_id)
    assert appliance.state is ApplianceState.ACTIVE
    new_vm = resource(ha, appliance.resource_id)
    assert new_vm.id != old_vm
    assert new_vm.host_id != failed_host.id
    (fo,) = failovers(ha)
    assert fo.fenced_by == "storage"  # the host does not answer: its export was closed
    assert db_of(ha).get(CloudRequest, ca.request_id).status is RequestStatus.ACTIVE
