"""Outside work after the commit: every call to the simulated datacenter fails, or the process
dies, at each point of the protocol, and the engine still converges on exactly one VM and one
clone per appliance, nothing orphaned and nothing charged twice. The simulated datacenter keeps
its state outside our database (it does not roll back), and its fault switches do the failing;
nothing of ours is mocked."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from billing.models import LedgerEntry
from engine.cloud.models import CloudAppliance, CloudRequest, RequestStatus
from engine.cloud.provisioning import _advance_one, owner_of
from engine.datacenter import calls as outside
from engine.datacenter.models import (
    Appliance,
    ApplianceState,
    CallState,
    DriverCall,
    Image,
    Resource,
    Storage,
    VirtualizationKind,
)
from engine.datacenter.reconcile import REMOVE_ORPHANS_SETTING, reconcile
from engine.datacenter.refs import vm_name, volume_name
from engine.events.models import Event
from engine.scheduler.runner import run_in_transaction
from plugins.sim import faults, inventory
from tests.conftest import commit, run_jobs
from tests.unit.cloud.conftest import request_values

PROVISIONING_CALLS = ["create_vm", "clone_volume", "authenticate", "reboot_vm"]
TEARDOWN_CALLS = ["reboot_vm", "authenticate", "remove_volume", "remove_vm"]
JOBS = ("plugins.monitor", "cloud.sweep", "datacenter.calls", "billing.charge")


def db_of(cloud: Any) -> Any:
    return cloud.request.dbsession


def storage(cloud: Any) -> Storage:
    return db_of(cloud).scalar(select(Storage).order_by(Storage.id))


def settle(cloud: Any, rounds: int = 6) -> None:
    run_jobs(cloud.request.registry, *JOBS, rounds=rounds)
    db_of(cloud).expire_all()


def submit(cloud: Any, *, kick: bool = True, **overrides: Any) -> int:
    run_jobs(cloud.request.registry, "plugins.monitor", rounds=1)  # demo machines booted
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values(**overrides))
    cloud.requests.approve(cloud_request.id, actor=cloud.admin)
    if kick:
        commit(cloud.request)  # the after-commit kick provisions right away (inline in tests)
    return cloud_request.id


def request_row(cloud: Any, request_id: int) -> CloudRequest:
    db_of(cloud).expire_all()
    return db_of(cloud).get(CloudRequest, request_id)


def deprovision(cloud: Any, request_id: int) -> None:
    cloud.requests.deprovision(request_id, actor=cloud.user_actor)
    commit(cloud.request)


def engine_vms() -> list[str]:
    return sorted(vm.name for vm in inventory.vms())


def clones(cloud: Any) -> list[str]:
    return sorted(v.name for v in inventory.volumes(None, storage(cloud).name)
                  if v.kind == "clone")


def charges(cloud: Any) -> int:
    return db_of(cloud).scalar(select(func.count(LedgerEntry.id)).where(
        LedgerEntry.period_start.is_not(None)))


def assert_provisioned_once(cloud: Any, request_id: int) -> None:
    """Exactly one VM and one clone, both the appliance's, and one hour charged."""
    cloud_request = request_row(cloud, request_id)
    assert cloud_request.status is RequestStatus.ACTIVE, cloud_request.status_reason
    (ca,) = cloud_request.appliances
    assert engine_vms() == [vm_name(ca.created_vm_id)]
    assert clones(cloud) == [volume_name(ca.clone_image_id)]
    clone = db_of(cloud).get(Image, ca.clone_image_id)
    (volume,) = [v for v in inventory.volumes(None, storage(cloud).name)
                 if v.root_device == clone.root_device]
    assert volume.authorized_id == ca.resource_id  # exported to its machine only
    assert ca.appliance.state is ApplianceState.ACTIVE
    assert charges(cloud) == 1
    open_calls = db_of(cloud).scalar(select(func.count(DriverCall.id)).where(
        DriverCall.state != CallState.DONE))
    assert open_calls == 0


def assert_nothing_left(cloud: Any, request_id: int) -> None:
    cloud_request = request_row(cloud, request_id)
    assert cloud_request.status is RequestStatus.DONE, cloud_request.status_reason
    assert engine_vms() == []
    assert clones(cloud) == []
    db = db_of(cloud)
    assert db.scalar(select(func.count(Appliance.id))) == 0
    assert db.scalar(select(func.count(Resource.id)).where(
        Resource.kind == VirtualizationKind.VM)) == 0
    assert db.scalar(select(func.count(Image.id)).where(Image.is_master.is_(False))) == 0
    assert charges(cloud) == 1


def test_provisioning_makes_its_calls_after_the_commit_and_records_them(cloud):
    request_id = submit(cloud)
    settle(cloud)
    assert_provisioned_once(cloud, request_id)
    made = [call.op for call in faults.calls() if call.op.startswith(("create", "clone",
                                                                       "auth", "reboot"))]
    assert made == ["create_vm", "clone_volume", "authenticate", "reboot_vm"]
    keys = set(db_of(cloud).scalars(select(DriverCall.key)))
    ca = request_row(cloud, request_id).appliances[0]
    assert f"create-vm:resource:{ca.created_vm_id}" in keys
    assert f"clone-volume:image:{ca.clone_image_id}" in keys
    deprovision(cloud, request_id)
    settle(cloud)
    assert_nothing_left(cloud, request_id)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("operation", PROVISIONING_CALLS)
def test_a_failed_provisioning_call_is_made_again_without_a_duplicate(cloud, engine_clock,
                                                                       operation, when):
    faults.fail(operation, when=when)
    request_id = submit(cloud)
    settle(cloud)
    waiting = request_row(cloud, request_id)
    assert waiting.status is RequestStatus.APPROVED  # retried later, not at every sweep
    call = db_of(cloud).scalar(select(DriverCall).where(DriverCall.operation == operation))
    assert call.state is CallState.PENDING
    assert call.attempts == 1
    assert call.error
    assert waiting.failed_attempts == 1
    assert db_of(cloud).scalar(select(func.count(Event.id)).where(
        Event.name == "call.failed")) == 1
    engine_clock.advance(61)  # a minute later
    settle(cloud)
    assert_provisioned_once(cloud, request_id)
    assert [c.outcome for c in faults.calls(operation)][:2] == ["DriverError", "ok"]


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("operation", TEARDOWN_CALLS)
def test_a_failed_teardown_call_is_made_again_and_leaves_nothing(cloud, engine_clock,
                                                                  operation, when):
    request_id = submit(cloud)
    settle(cloud)
    assert_provisioned_once(cloud, request_id)
    faults.fail(operation, when=when)
    deprovision(cloud, request_id)
    settle(cloud)
    assert request_row(cloud, request_id).status is RequestStatus.DEPROVISION
    engine_clock.advance(61)
    settle(cloud)
    assert_nothing_left(cloud, request_id)


def _drive_until(cloud: Any, request_id: int, operation: str) -> int:
    """Run the sweep's steps and calls one by one, as the scheduler would, until ``operation``
    is the next call to make; return its id."""
    registry = cloud.request.registry
    for _ in range(60):
        run_jobs(registry, "plugins.monitor", "datacenter.calls", rounds=1)
        run_in_transaction(registry, _advance_one, request_id=request_id)
        for call_id in run_in_transaction(registry, outside.due_calls,
                                          owner=owner_of(request_id)):
            found = run_in_transaction(registry, lambda request, i=call_id: request.dbsession
                                       .get(DriverCall, i).operation)
            if found == operation:
                return call_id
            outside.perform(registry, call_id)
    raise AssertionError(f"no {operation} call came")


def _crash(cloud: Any, call_id: int, point: str) -> None:
    """The process dies at ``point`` of the protocol while making call ``call_id``."""
    registry = cloud.request.registry
    claimed = run_in_transaction(registry, outside._claim, call_id=call_id)
    assert claimed is not None
    if point == "after-claim":
        return
    result = outside._effect(registry, claimed)
    if point == "after-effect":
        return  # the outcome is never recorded
    # after-record: the outcome recorded as the protocol does it, and then nothing more
    run_in_transaction(registry, outside._record_done, call_id=call_id,
                       result=outside.as_json(result))


@pytest.fixture
def no_kicks(cloud):
    """Only the test drives the engine (no inline kick after its commits)."""
    cloud.request.registry["qrm.kicker"].running = True
    yield
    cloud.request.registry["qrm.kicker"].running = False


@pytest.mark.parametrize("point", ["after-claim", "after-effect", "after-record"])
@pytest.mark.parametrize("operation", PROVISIONING_CALLS)
def test_a_crash_at_any_point_of_a_provisioning_call_converges(cloud, engine_clock, no_kicks,
                                                                operation, point):
    request_id = submit(cloud)
    call_id = _drive_until(cloud, request_id, operation)
    _crash(cloud, call_id, point)
    # the process is restarted: its claim has run out meanwhile
    engine_clock.advance(outside.CLAIM_FOR.total_seconds() + 1)
    settle(cloud, rounds=8)
    assert_provisioned_once(cloud, request_id)
    made = [c for c in faults.calls(operation) if c.outcome == "ok"]
    # made again under its name only when the effect had happened and was not recorded
    assert len(made) == (2 if point == "after-effect" else 1)
    deprovision(cloud, request_id)
    settle(cloud)
    assert_nothing_left(cloud, request_id)


@pytest.mark.parametrize("point", ["after-claim", "after-effect", "after-record"])
@pytest.mark.parametrize("operation", ["remove_volume", "remove_vm"])
def test_a_crash_at_any_point_of_a_removal_converges(cloud, engine_clock, no_kicks, operation,
                                                      point):
    request_id = submit(cloud)
    settle(cloud)
    assert_provisioned_once(cloud, request_id)
    deprovision(cloud, request_id)
    call_id = _drive_until(cloud, request_id, operation)
    _crash(cloud, call_id, point)
    engine_clock.advance(outside.CLAIM_FOR.total_seconds() + 1)
    settle(cloud, rounds=8)
    assert_nothing_left(cloud, request_id)


def test_a_host_refusing_for_lack_of_room_ends_no_resources_with_nothing_left(cloud):
    db = db_of(cloud)
    for host in inventory.hosts():
        inventory.register_host(None, host.mac, 0, 0)  # the books say there is room
    request_id = submit(cloud)
    settle(cloud)
    cloud_request = request_row(cloud, request_id)
    assert cloud_request.status is RequestStatus.NO_RESOURCES
    assert "create_vm was refused" in cloud_request.status_reason
    assert engine_vms() == []
    assert clones(cloud) == []
    assert db.scalar(select(func.count(Resource.id)).where(
        Resource.kind == VirtualizationKind.VM)) == 0
    assert charges(cloud) == 0


# -- reconciliation -------------------------------------------------------------------------
def host_mac(cloud: Any) -> str:
    return inventory.hosts()[0].mac


def events(cloud: Any, name: str) -> list[str]:
    db_of(cloud).expire_all()
    return list(db_of(cloud).scalars(select(Event.message).where(Event.name == name)))


def test_reconciliation_reports_an_orphan_and_removes_it_only_when_told(cloud, monkeypatch):
    registry = cloud.request.registry
    inventory.plant_vm(None, host_mac(cloud), "qrm-vm-99999", macs=["02:00:00:00:99:99"])
    inventory.plant_vm(None, host_mac(cloud), "someone-elses-vm", macs=["02:00:00:00:99:98"])
    orphan_volume = inventory.plant_volume(None, storage(cloud).name, "qrm-img-99999",
                                           size_mb=10)
    findings = reconcile(registry)
    assert any("qrm-vm-99999" in what for what in findings.orphans)
    assert any(orphan_volume in what for what in findings.orphans)
    assert not any("someone-elses-vm" in what for what in findings.orphans)
    assert len(events(cloud, "reconcile.orphan")) == 2
    assert "qrm-vm-99999" in engine_vms()  # reported, left alone
    monkeypatch.setitem(registry.settings, REMOVE_ORPHANS_SETTING, "true")
    reconcile(registry)
    run_jobs(registry, "datacenter.calls", rounds=1)
    assert engine_vms() == ["someone-elses-vm"]
    assert inventory.volume(None, orphan_volume) is None


def test_reconciliation_marks_a_vanished_vm_and_its_appliance(cloud):
    request_id = submit(cloud)
    settle(cloud)
    ca = request_row(cloud, request_id).appliances[0]
    assert inventory.vanish_vm(None, vm_name(ca.created_vm_id)) == 1
    findings = reconcile(cloud.request.registry)
    assert findings.vanished == [f"VM {vm_name(ca.created_vm_id)} (resource "
                                 f"{ca.created_vm_id}) is gone from host "
                                 f"{db_of(cloud).get(Resource, ca.created_vm_id).host.label}"]
    db_of(cloud).expire_all()
    vm = db_of(cloud).get(Resource, ca.created_vm_id)
    assert vm.missing_since is not None
    assert db_of(cloud).get(CloudAppliance, ca.id).appliance.state is ApplianceState.ERROR
    assert events(cloud, "reconcile.vanished")
    assert reconcile(cloud.request.registry).vanished == []  # reported once


def test_reconciliation_skips_a_host_that_does_not_answer(cloud):
    request_id = submit(cloud)
    settle(cloud)
    ca = request_row(cloud, request_id).appliances[0]
    vm = db_of(cloud).get(Resource, ca.created_vm_id)
    faults.unreachable(vm.host.mac)
    findings = reconcile(cloud.request.registry)
    assert f"host {vm.host.label}" in findings.skipped
    assert findings.vanished == []
    db_of(cloud).expire_all()
    assert db_of(cloud).get(Resource, vm.id).missing_since is None
    assert events(cloud, "reconcile.skipped")


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_request_torn_down_does_not_wait_for_a_failing_call(cloud, when):
    """The hypervisor keeps failing; the user gives up: the request is done at once, and a
    VM the failing call may have made is removed by its name."""
    faults.fail("create_vm", when=when, times=5)
    request_id = submit(cloud)
    settle(cloud)
    assert request_row(cloud, request_id).status is RequestStatus.APPROVED
    deprovision(cloud, request_id)
    settle(cloud)
    cloud_request = request_row(cloud, request_id)
    assert cloud_request.status is RequestStatus.DONE
    assert engine_vms() == []
    assert charges(cloud) == 0
    assert events(cloud, "call.superseded")
    assert len(faults.calls("create_vm")) == 1  # not tried again for a request torn down
