"""Fail-over: an appliance whose resource failed is moved to another, fenced, step by step.

``AppliancesService.fail_over`` opens an ``ApplianceFailOver`` row and records the fencing of
the failed machine; the ``datacenter.failover`` job then moves it one persisted step per
transaction (``FAILOVER_MOVES``), and makes the calls each step recorded after its commit
(``engine.datacenter.calls``):

* **fencing**: the failed machine is powered off (its VM stopped on its host, or its power
  switch cut: ``fence:resource:<id>:failover:<f>:<round>``) and the image's export is closed
  to every machine (``authenticate:image:<id>:<n>``). The two are made independently (one may
  go through while the other's host is down); the appliance is started elsewhere only once one
  of them went through, so two copies never run. While neither does, the fail-over waits,
  says so in an event, and tries again (a new round when both are given up);
* **placing**: an idle resource of the first allowed virtualization type that fits is claimed
  (row lock, unique key on the appliance's resource), or a VM is created on a host with room
  (never the failed machine's host); resources that failed recently are avoided. None: the
  fail-over waits and tries again;
* **placed**: a new VM boots and reports idle;
* **starting**: the appliance is started there (its image authorised for the new machine, the
  reboot), and the fail-over is **done** once it runs; an event and a notice for the admins
  (``Notice``, ready to be mailed) say what happened.

A crash at any point converges: a step is one transaction, repeated from the persisted row,
and every call's key derives from rows (the round, the image's authorisation sequence). The
appliance keeps its identity (its id, name, image, kernel); ``ApplianceMoved`` lets the cloud
keep its appliance's machine in step, so billing goes on without a gap.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.datacenter.calls import POWER, CallService, retry_delay, run_calls
from engine.datacenter.models import (
    Appliance,
    ApplianceFailOver,
    ApplianceState,
    CallState,
    DriverCall,
    FailOverStep,
    Resource,
    ResourceState,
    VirtualizationKind,
)
from engine.datacenter.refs import host_ref, machine_ref, vm_name
from engine.db import utcnow
from engine.errors import CapacityError, InvalidState, NotFound
from engine.events.models import EventLevel, Notice
from engine.events.services import EventService
from engine.i18n import _
from engine.scheduler.kick import kick_after_commit
from engine.security import Actor

log = logging.getLogger(__name__)

F = FailOverStep
#: every step a fail-over may take from each step
FAILOVER_MOVES: dict[FailOverStep, frozenset[FailOverStep]] = {
    F.FENCING: frozenset({F.PLACING, F.ABORTED}),
    F.STOPPING: frozenset({F.PLACING, F.ABORTED}),
    F.PLACING: frozenset({F.PLACED, F.ABORTED}),
    F.PLACED: frozenset({F.STARTING, F.PLACING, F.ABORTED}),
    F.STARTING: frozenset({F.DONE, F.ABORTED}),
    F.DONE: frozenset(),
    F.ABORTED: frozenset(),
}
OPEN_STEPS = (F.FENCING, F.STOPPING, F.PLACING, F.PLACED, F.STARTING)
CHANGE_TYPE = "change-type"
#: how often a waiting fail-over looks again (no resource free, a VM booting)
LOOK_AGAIN = dt.timedelta(seconds=30)


class ApplianceMoved:
    """Pyramid event: ``appliance`` was moved from resource ``old`` to ``new`` (None: it has
    none for now), in the transaction that moves it; ``created_vm_id`` is the VM made for it.
    A subscriber that owned ``old`` (a VM made for a cloud appliance) sets ``release_old`` so
    the mover removes it."""

    def __init__(self, request: Any, appliance: Appliance, old: Resource | None,
                 new: Resource | None, created_vm_id: int | None) -> None:
        self.request, self.appliance, self.old, self.new = request, appliance, old, new
        self.created_vm_id = created_vm_id
        self.release_old = False


def actor_of(label: str) -> Actor:
    role, _sep, name = label.partition(":")
    return Actor(role, name or role)


class FailOvers:
    """The steps of fail-overs (used by ``AppliancesService``)."""

    def __init__(self, db: Session, *, appliances: Any) -> None:
        self.db, self.appliances = db, appliances
        self.datacenter = appliances.datacenter
        self.calls: CallService = appliances.datacenter.calls
        self.events: EventService = appliances.events
        self.request = appliances.plugins.request

    # -- opening ----------------------------------------------------------------------------
    def open_for(self, appliance: Appliance) -> ApplianceFailOver | None:
        return self.db.scalar(select(ApplianceFailOver).where(
            ApplianceFailOver.open_appliance_id == appliance.id))

    def last_for(self, appliance: Appliance) -> ApplianceFailOver | None:
        return self.db.scalar(select(ApplianceFailOver).where(
            ApplianceFailOver.appliance_id == appliance.id)
            .order_by(ApplianceFailOver.id.desc()).limit(1))

    def start(self, appliance: Appliance, reason: str, *, actor: Actor,
              types: list[str] | None, create_vms: bool,
              avoid_failed_within: dt.timedelta | None) -> ApplianceFailOver:
        existing = self.open_for(appliance)
        if existing is not None:
            return existing  # one at a time: a second failure report joins the first
        failed = appliance.resource
        if failed is None or appliance.state in (ApplianceState.STOPPED,
                                                 ApplianceState.STOPPING):
            raise InvalidState(_("appliance ${name} is not running on a resource; there is "
                                 "nothing to fail over", mapping={"name": appliance.name}),
                               field="appliance")
        names = [appliance.virtualization_type.name]
        for name in types or ():
            self.datacenter.virtualization_type(name)  # refused now if unknown
            if name not in names:
                names.append(name)
        now = utcnow()
        avoid_since = now - avoid_failed_within if avoid_failed_within else None
        fo = ApplianceFailOver(
            appliance_id=appliance.id, open_appliance_id=appliance.id,
            failed_resource_id=failed.id, step=F.FENCING, reason=reason[:255],
            actor=actor.label, fence_round=1, fenced_by="", waiting="", due_at=now,
            options={"types": names, "create_vms": bool(create_vms),
                     "avoid_since": avoid_since.isoformat() if avoid_since else None})
        self.db.add(fo)
        self.db.flush()
        appliance.state = ApplianceState.ERROR
        self._fence(fo, appliance, failed, actor)
        self.events.log(source="datacenter", name="failover.started", actor=actor,
                        obj=appliance, level=EventLevel.WARNING,
                        message=f"appliance {appliance.name}: resource {failed.id} failed "
                        f"({reason}); fencing it before the appliance moves (fail-over "
                        f"{fo.id})")
        kick_after_commit(self.request, "datacenter.failover")
        return fo

    def change_type(self, appliance: Appliance, vtype: Any, *, actor: Actor,
                    create_vms: bool) -> ApplianceFailOver | None:
        """P2V, V2P, V2V (engine-behaviour §2.7): a stopped appliance just gets the new type
        (and loses a resource of the old one); an active one is stopped, placed on an idle
        resource (or a new VM) of the new type and started there, step by step."""
        if vtype.kind is VirtualizationKind.HOST:
            raise InvalidState(_("${type} is a host type; an appliance runs on a physical "
                                 "system or a VM", mapping={"type": vtype.name}),
                               field="virtualization")
        if self.open_for(appliance) is not None:
            raise InvalidState(_("appliance ${name} is being moved already",
                                 mapping={"name": appliance.name}), field="appliance")
        old_type = appliance.virtualization_type
        if appliance.state is ApplianceState.STOPPED:
            appliance.virtualization_type = vtype
            old = appliance.resource
            if old is not None and old.virtualization_type_id != vtype.id:
                appliance.resource = None
                self.db.flush()
                self.request.registry.notify(ApplianceMoved(self.request, appliance, old,
                                                            None, None))
            self.db.flush()
            self.events.log(source="datacenter", name="appliance.type-changed", actor=actor,
                            obj=appliance, message=f"appliance {appliance.name}: "
                            f"{old_type.name} -> {vtype.name}")
            return None
        if appliance.state is not ApplianceState.ACTIVE or appliance.resource is None:
            from engine.datacenter.services import appliance_state

            raise InvalidState(appliance_state(appliance))
        if vtype.id == old_type.id:
            raise InvalidState(_("appliance ${name} is of type ${type} already",
                                 mapping={"name": appliance.name, "type": vtype.name}),
                               field="virtualization")
        fo = ApplianceFailOver(
            appliance_id=appliance.id, open_appliance_id=appliance.id,
            failed_resource_id=appliance.resource_id, step=F.STOPPING,
            reason=f"change of type {old_type.name} -> {vtype.name}", actor=actor.label,
            fence_round=1, fenced_by="", waiting="", due_at=utcnow(),
            options={"kind": CHANGE_TYPE, "types": [vtype.name],
                     "create_vms": bool(create_vms), "avoid_since": None})
        self.db.add(fo)
        self.db.flush()
        with self.calls.owned_by(fo.owner):
            self.appliances.stop(appliance, actor=actor)
        self.events.log(source="datacenter", name="appliance.change-type", actor=actor,
                        obj=appliance, message=f"appliance {appliance.name}: stopping to "
                        f"change its type from {old_type.name} to {vtype.name}")
        kick_after_commit(self.request, "datacenter.failover")
        return fo

    def _step_stopping(self, fo: ApplianceFailOver, appliance: Appliance, actor: Actor,
                       now: dt.datetime) -> bool:
        """A change of type: the appliance stopped, and its export is closed (made before the
        export for the new machine is)."""
        if appliance.state is not ApplianceState.STOPPED \
                or self.calls.pending_about("image", appliance.image_id):
            fo.due_at = now + LOOK_AGAIN
            return False
        self._move(fo, F.PLACING)
        return True

    # -- fencing ----------------------------------------------------------------------------
    def _fence(self, fo: ApplianceFailOver, appliance: Appliance, failed: Resource | None,
               actor: Actor) -> None:
        """Record this round's fencing: the machine's power off, and the image's export
        closed to every machine."""
        if failed is not None:
            key = f"fence:resource:{failed.id}:failover:{fo.id}:{fo.fence_round}"
            with self.calls.owned_by(f"{fo.owner}:power"):
                if failed.kind is VirtualizationKind.VM and failed.host is not None:
                    self.calls.record(key, "stop_vm", driver=failed.virtualization_type.name,
                                      target=host_ref(failed.host),
                                      arguments={"name": vm_name(failed.id)}, actor=actor)
                else:
                    self.calls.record(key, POWER, driver=POWER, target=machine_ref(failed),
                                      arguments={"command": "halt"}, actor=actor)
        if appliance.image is not None and appliance.image.storage is not None:
            with self.calls.owned_by(f"{fo.owner}:storage"):
                self.datacenter.authorize_storage(appliance.image, None, actor=actor)

    def fence_calls(self, fo: ApplianceFailOver) -> list[DriverCall]:
        """This round's fencing calls (the power one first)."""
        calls = list(self.db.scalars(select(DriverCall).where(
            DriverCall.owner.in_([f"{fo.owner}:power", f"{fo.owner}:storage"]))
            .order_by(DriverCall.id)))
        marker = f":failover:{fo.id}:"
        power = [c for c in calls if marker in c.key and c.key.endswith(f":{fo.fence_round}")]
        storage = [c for c in calls if c.operation == "authenticate"]
        return power + storage[-1:]

    @staticmethod
    def fenced_by(call: DriverCall) -> str | None:
        if call.state is not CallState.DONE:
            return None
        if call.operation == "authenticate":
            return "storage"
        if call.operation == POWER and not (call.result or {}).get("value", {}).get("handled"):
            return None  # no power switch knows the machine: it is not off
        return "power"

    def _step_fencing(self, fo: ApplianceFailOver, appliance: Appliance, actor: Actor,
                      now: dt.datetime) -> bool:
        calls = self.fence_calls(fo)
        for call in calls:
            by = self.fenced_by(call)
            if by:
                # the other fencing call is no longer needed; one being made right now is
                # waited for (an export closed late would lock out the new machine)
                others = [c for c in calls if c.state is CallState.PENDING]
                in_flight = [c.claimed_until for c in others
                             if c.claimed_until is not None and c.claimed_until >= now]
                if in_flight:
                    fo.due_at = max(in_flight)
                    return False
                for other in others:
                    self.calls.give_up(other, reason=f"fail-over {fo.id}: fenced already")
                fo.fenced_by, fo.waiting = by, ""
                self._move(fo, F.PLACING)
                self.events.log(source="datacenter", name="failover.fenced", actor=actor,
                                obj=appliance, level=EventLevel.NOTICE,
                                message=f"appliance {appliance.name}: resource "
                                f"{fo.failed_resource_id} is fenced ("
                                + ("powered off" if by == "power" else "its export is closed")
                                + ")")
                return True
        errors = [f"{c.operation}: {c.error}" for c in calls if c.error]
        finished = all(c.state is not CallState.PENDING for c in calls)
        if finished:
            # every fencing call of this round was given up (or no switch knew the machine)
            fo.fence_round += 1
            fo.due_at = now + retry_delay(fo.fence_round - 1)
            fo.waiting = f"fence-round:{fo.fence_round}"
            self.events.log(source="datacenter", name="failover.fencing-failed", actor=actor,
                            obj=appliance, level=EventLevel.ERROR,
                            message=f"appliance {appliance.name}: resource "
                            f"{fo.failed_resource_id} could not be fenced ("
                            + ("; ".join(errors) or "no power switch knows it and its image "
                               "has no storage")
                            + "); the appliance is not started elsewhere; fencing again at "
                            f"{fo.due_at:%H:%M:%S} UTC")
            self._fence(fo, appliance, self.db.get(Resource, fo.failed_resource_id)
                        if fo.failed_resource_id else None, actor)
            return True
        attempts = max((c.attempts for c in calls if c.error), default=0)
        pending = [c.not_before for c in calls if c.state is CallState.PENDING]
        fo.due_at = max(now, min(pending)) if pending else now + LOOK_AGAIN
        if errors and fo.waiting != f"fence:{fo.fence_round}:{attempts}":
            fo.waiting = f"fence:{fo.fence_round}:{attempts}"
            self.events.log(source="datacenter", name="failover.fencing-failed", actor=actor,
                            obj=appliance, level=EventLevel.WARNING,
                            message=f"appliance {appliance.name}: fencing resource "
                            f"{fo.failed_resource_id} failed ({'; '.join(errors)}); the "
                            "appliance waits and is not started elsewhere until it is "
                            "fenced")
            return True
        return False

    # -- placing ----------------------------------------------------------------------------
    def _avoid(self, fo: ApplianceFailOver) -> tuple[int, ...]:
        """The failed machine, and machines that failed recently (a flapping machine)."""
        avoid = {fo.failed_resource_id} if fo.failed_resource_id else set()
        since = fo.options.get("avoid_since")
        if since:
            avoid |= set(self.db.scalars(select(ApplianceFailOver.failed_resource_id).where(
                ApplianceFailOver.created_at >= dt.datetime.fromisoformat(since),
                ApplianceFailOver.failed_resource_id.is_not(None))))
        return tuple(sorted(avoid))

    def _step_placing(self, fo: ApplianceFailOver, appliance: Appliance, actor: Actor,
                      now: dt.datetime) -> bool:
        failed = self.db.get(Resource, fo.failed_resource_id) if fo.failed_resource_id else None
        fits = {"cpus": appliance.cpus or 0, "memory_mb": appliance.memory_mb or 0,
                "nics": appliance.nics or 1}
        avoid = self._avoid(fo)
        chosen, vtype, created = None, None, False
        for name in fo.options.get("types") or [appliance.virtualization_type.name]:
            try:
                vtype = self.datacenter.virtualization_type(name)
            except NotFound:
                continue
            chosen = self.datacenter.claim_idle_resource(vtype, exclude=avoid, **fits)
            if chosen is not None:
                break
            if vtype.kind is VirtualizationKind.VM and fo.options.get("create_vms"):
                exclude_hosts = (failed.host_id,) if failed is not None and failed.host_id \
                    else ()
                try:
                    chosen = self.datacenter.create_vm(
                        vtype, name=f"{appliance.name}-fo{fo.id}", cpus=max(fits["cpus"], 1),
                        memory_mb=max(fits["memory_mb"], 256), nics=fits["nics"], disk_mb=0,
                        actor=actor, exclude_hosts=exclude_hosts)
                except (CapacityError, InvalidState, NotFound):
                    continue
                created = True
                break
        if chosen is None:
            fo.due_at = now + LOOK_AGAIN
            if fo.waiting != "no-resource":
                fo.waiting = "no-resource"
                self.events.log(source="datacenter", name="failover.no-resource", actor=actor,
                                obj=appliance, level=EventLevel.ERROR,
                                message=f"appliance {appliance.name}: no free resource of "
                                + ", ".join(fo.options.get("types") or [])
                                + " fits; the fail-over waits for one")
                return True
            return False
        if created:
            fo.created_vm_id = chosen.id
        self._move_appliance(fo, appliance, failed, chosen, vtype)
        fo.new_resource_id, fo.waiting = chosen.id, ""
        self._move(fo, F.PLACED)
        self.events.log(source="datacenter", name="failover.placed", actor=actor,
                        obj=appliance, level=EventLevel.NOTICE,
                        message=f"appliance {appliance.name} moves from resource "
                        f"{fo.failed_resource_id} to "
                        + (f"a new VM (resource {chosen.id})" if created
                           else f"idle resource {chosen.id}")
                        + f" ({vtype.name})")
        return True

    def _move_appliance(self, fo: ApplianceFailOver, appliance: Appliance,
                        old: Resource | None, new: Resource | None, vtype: Any) -> None:
        appliance.resource = new
        if vtype is not None:
            appliance.virtualization_type = vtype
        if old is not None:
            # when it comes back it boots the idle ramdisk and rejoins the pool
            old.kernel, old.image = None, None
        self.db.flush()
        event = ApplianceMoved(self.request, appliance, old, new,
                               fo.created_vm_id if new is not None else None)
        self.request.registry.notify(event)
        if old is not None and old.kind is VirtualizationKind.VM and old.host is not None \
                and (event.release_old or self._made_by_failover(old)):
            self.datacenter.remove_vm(old, actor=actor_of(fo.actor))

    def _made_by_failover(self, vm: Resource) -> bool:
        return self.db.scalar(select(ApplianceFailOver.id).where(
            ApplianceFailOver.created_vm_id == vm.id).limit(1)) is not None

    def _step_placed(self, fo: ApplianceFailOver, appliance: Appliance, actor: Actor,
                     now: dt.datetime) -> bool:
        new = appliance.resource
        if fo.created_vm_id is not None:
            create = self.calls.get(f"create-vm:resource:{fo.created_vm_id}")
            if create is not None and create.state is CallState.FAILED:
                self.calls.disown(create)
                self.events.log(source="datacenter", name="failover.vm-failed", actor=actor,
                                obj=appliance, level=EventLevel.WARNING,
                                message=f"appliance {appliance.name}: the new VM could not "
                                f"be made ({create.error}); looking again")
                self._move_appliance(fo, appliance, new, None, None)
                fo.created_vm_id = fo.new_resource_id = None
                self._move(fo, F.PLACING)
                return True
        if new is None or new.state is not ResourceState.IDLE:
            fo.due_at = now + LOOK_AGAIN
            return False  # the new VM boots; its report makes us due
        appliance.state = ApplianceState.STOPPED
        self.appliances.start(appliance, actor=actor)
        self._move(fo, F.STARTING)
        return True

    def _step_starting(self, fo: ApplianceFailOver, appliance: Appliance, actor: Actor,
                       now: dt.datetime) -> bool:
        if appliance.state is ApplianceState.STARTING:
            fo.due_at = now + LOOK_AGAIN
            return False
        self._finish(fo, F.DONE, now)
        if fo.options.get("kind") == CHANGE_TYPE:
            self.events.log(source="datacenter", name="appliance.type-changed", actor=actor,
                            obj=appliance, message=f"appliance {appliance.name} runs on "
                            f"resource {appliance.resource_id} ({fo.reason})")
            return True
        self.events.log(source="datacenter", name="failover.done", actor=actor,
                        obj=appliance, level=EventLevel.NOTICE,
                        message=f"appliance {appliance.name} runs on resource "
                        f"{appliance.resource_id} after resource {fo.failed_resource_id} "
                        f"failed ({fo.reason})")
        mapping = {"name": appliance.name, "failed": fo.failed_resource_id,
                   "new": appliance.resource_id, "reason": fo.reason,
                   "fenced": fo.fenced_by}
        subject = _("Appliance ${name} failed over", mapping=mapping)
        body = _("Resource ${failed} of appliance ${name} failed (${reason}). It was fenced "
                 "(${fenced}) and the appliance now runs on resource ${new}.", mapping=mapping)
        self.db.add(Notice(recipient="admins", name="ha.failover",
                           subject=subject.interpolate(), body=body.interpolate(),
                           msgid=str(body), mapping=mapping,
                           object_type="appliance", object_id=appliance.id))
        return True

    # -- moving on ----------------------------------------------------------------------------
    @staticmethod
    def _move(fo: ApplianceFailOver, to: FailOverStep) -> None:
        if to not in FAILOVER_MOVES.get(fo.step, frozenset()):
            raise AssertionError(f"fail-over {fo.id}: no step from {fo.step.value} to "
                                 f"{to.value}")
        fo.step = to

    def _finish(self, fo: ApplianceFailOver, step: FailOverStep, now: dt.datetime) -> None:
        self._move(fo, step)
        fo.open_appliance_id, fo.finished_at, fo.waiting = None, now, ""

    def _aborted(self, fo: ApplianceFailOver, appliance: Appliance | None,
                 now: dt.datetime) -> bool:
        """The appliance was stopped or removed meanwhile (a teardown): nothing to move."""
        if fo.options.get("kind") == CHANGE_TYPE:
            return self._change_aborted(fo, appliance)
        if fo.step is F.FENCING:
            return appliance is None or appliance.state is not ApplianceState.ERROR
        if fo.step is F.PLACING:
            return appliance is None or appliance.state is not ApplianceState.ERROR
        if fo.step is F.PLACED:
            return appliance is None or appliance.state is not ApplianceState.ERROR \
                or appliance.resource_id != fo.new_resource_id
        return appliance is None or appliance.resource_id != fo.new_resource_id \
            or appliance.state not in (ApplianceState.STARTING, ApplianceState.ACTIVE)

    @staticmethod
    def _change_aborted(fo: ApplianceFailOver, appliance: Appliance | None) -> bool:
        if appliance is None:
            return True
        if fo.step is F.STOPPING:
            return appliance.state not in (ApplianceState.STOPPING, ApplianceState.STOPPED) \
                or appliance.resource_id != fo.failed_resource_id
        if fo.step is F.PLACING:
            return appliance.state is not ApplianceState.STOPPED \
                or appliance.resource_id != fo.failed_resource_id
        if fo.step is F.PLACED:
            return appliance.state is not ApplianceState.STOPPED \
                or appliance.resource_id != fo.new_resource_id
        return appliance.resource_id != fo.new_resource_id \
            or appliance.state not in (ApplianceState.STARTING, ApplianceState.ACTIVE)

    def advance(self, fo_id: int, *, now: dt.datetime | None = None) -> bool:
        """Move fail-over ``fo_id`` on by one step (steps without outside work follow in the
        same transaction); True if anything changed."""
        from engine.datacenter.services import supports_row_locks

        now = now or utcnow()
        query = select(ApplianceFailOver).where(ApplianceFailOver.id == fo_id)
        if supports_row_locks(self.db):
            query = query.with_for_update(skip_locked=True)
        fo = self.db.scalar(query)
        if fo is None or fo.step not in OPEN_STEPS:
            return False
        appliance = self.db.get(Appliance, fo.appliance_id) if fo.appliance_id else None
        actor = actor_of(fo.actor)
        steps = {F.FENCING: self._step_fencing, F.STOPPING: self._step_stopping,
                 F.PLACING: self._step_placing,
                 F.PLACED: self._step_placed, F.STARTING: self._step_starting}
        progressed = False
        recorded = self.calls.recorded
        with self.calls.owned_by(fo.owner):
            while fo.step in OPEN_STEPS:
                if self._aborted(fo, appliance, now):
                    self._finish(fo, F.ABORTED, now)
                    self.events.log(source="datacenter", name="failover.aborted", actor=actor,
                                    obj=appliance, level=EventLevel.INFO,
                                    object_type="appliance", object_id=fo.appliance_id,
                                    message=f"fail-over {fo.id} ends: the appliance was "
                                    "stopped or removed meanwhile")
                    progressed = True
                    break
                if self.calls.open_for(fo.owner) and fo.step is not F.PLACED:
                    fo.due_at = now + LOOK_AGAIN  # its calls are made after this commit
                    break
                if not steps[fo.step](fo, appliance, actor, now):
                    break
                progressed = True
                if self.calls.recorded != recorded:
                    break  # its calls are made after the commit
        self.db.flush()
        return progressed


# -- the job --------------------------------------------------------------------------------
def owners(fo_id: int) -> tuple[str, ...]:
    owner = f"appliance_failover:{fo_id}"
    return (f"{owner}:power", f"{owner}:storage", owner)


def due_failovers(request: Any) -> list[int]:
    return list(request.dbsession.scalars(
        select(ApplianceFailOver.id).where(ApplianceFailOver.step.in_(OPEN_STEPS),
                                           ApplianceFailOver.due_at <= utcnow())
        .order_by(ApplianceFailOver.due_at, ApplianceFailOver.id)))


def advance_one(request: Any, fo_id: int) -> bool:
    from engine.datacenter.services import AppliancesService

    return request.find_service(AppliancesService).fail_overs.advance(fo_id)


def failover_job(request: Any) -> int:
    """``datacenter.failover``: move every due fail-over on, a step per transaction, and make
    the calls its steps recorded after their commits."""
    from engine.scheduler.runner import run_in_transaction

    registry, steps = request.registry, 0
    for fo_id in run_in_transaction(registry, due_failovers):
        for _round in range(20):
            try:
                progressed = run_in_transaction(registry, advance_one, fo_id=fo_id)
            except Exception:  # rolled back; the next run tries again
                log.exception("fail-over %s: step failed", fo_id)
                break
            made = sum(run_calls(registry, owner) for owner in owners(fo_id))
            if not progressed and not made:
                break
            steps += 1
    return steps


def _make_due(request: Any, *where: Any) -> None:
    if request.dbsession.execute(
            update(ApplianceFailOver).where(ApplianceFailOver.step.in_(OPEN_STEPS), *where)
            .values(due_at=utcnow()).execution_options(synchronize_session=False)).rowcount:
        kick_after_commit(request, "datacenter.failover")


def on_resource_changed(event: Any) -> None:
    """A machine reported: the fail-overs waiting for it are due (its new machine booted,
    or the machine of an appliance changing type went idle)."""
    resource_id = event.resource.id
    _make_due(event.request, (ApplianceFailOver.new_resource_id == resource_id)
              | ((ApplianceFailOver.step == F.STOPPING)
                 & (ApplianceFailOver.failed_resource_id == resource_id)))


def on_call_done(event: Any) -> None:
    """A call about an image was done (its export closed after a stop): a change of type
    waiting for it is due."""
    about = event.about
    if about is None or about[0] != "image" or event.call.owner is not None:
        return
    _make_due(event.request, ApplianceFailOver.step == F.STOPPING,
              ApplianceFailOver.appliance_id.in_(
                  select(Appliance.id).where(Appliance.image_id == about[1])))
