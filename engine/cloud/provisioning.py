"""The request life-cycle engine: provisioning and teardown, one idempotent step at a time.

``advance(request_id)`` locks the request, moves each of its cloud appliances at most one
persisted step on, and derives the request's status from its appliances. The ``cloud.sweep``
job runs ``advance`` for every request with something due, each in its own transaction, so a
crash loses at most the step in flight, and the next sweep resumes it. Long waits (a VM
booting, an appliance starting) end the step; the resource's report moves it on.

Provisioning of one appliance (``STEP_MOVES`` declares every move): NEW → APPLIANCE (engine
appliance created) → RESOURCE (idle resource claimed, or VM placed on the least-loaded host)
→ IMAGE (clone-on-deploy) → ADDRESSES (IPs from the pool) → STARTING (appliance started) →
RUNNING (resource up; first hour charged). Teardown, one persisted step each: STOPPING
(appliance stopping) → STOPPED → FREED (IPs back) → UNASSIGNED (engine appliance removed) →
VOLUME_REMOVED (clone removed) → RELEASED (VM removed). Whatever a step asks of a host or a
storage is a recorded call (``engine.datacenter.calls``), made right after the step's commit;
the request takes no further step until its calls are done. Any appliance that cannot get
resources fails the whole request: the others are torn down and the request ends
``no-resources`` with nothing left behind.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from engine.cloud.billing_port import BillingPort
from engine.cloud.config import CloudConfigService
from engine.cloud.models import (
    CloudAppliance,
    CloudApplianceState,
    CloudRequest,
    IpAddress,
    ProvisionStep,
    RequestStatus,
)
from engine.cloud.services import CloudRequestService, admin_only, lock_row
from engine.datacenter import calls as outside
from engine.datacenter.calls import MAX_ATTEMPTS, CallService, retry_delay
from engine.datacenter.models import (
    Appliance,
    ApplianceState,
    CallState,
    DriverCall,
    Image,
    Resource,
    ResourceState,
    VirtualizationKind,
)
from engine.datacenter.services import AppliancesService, DatacenterService, supports_row_locks
from engine.db import utcnow
from engine.errors import CapacityError, InsufficientCredit, InvalidState, ValidationError
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.i18n import _
from engine.scheduler.kick import kick_after_commit
from engine.security import Actor
from engine.types import plain

log = logging.getLogger(__name__)

ACTOR = Actor.system("provisioning")
#: statuses the engine works on
WORKING = (RequestStatus.APPROVED, RequestStatus.ACTIVE, RequestStatus.DEPROVISION,
           RequestStatus.NO_RESOURCES)
TEARDOWN = (RequestStatus.DEPROVISION, RequestStatus.NO_RESOURCES)


S = ProvisionStep
#: the steps of provisioning, in order (each one persisted, one per transaction)
PROVISIONING_STEPS = (S.NEW, S.APPLIANCE, S.RESOURCE, S.IMAGE, S.ADDRESSES)
#: every step a cloud appliance may take from each step: provisioning (NEW … RUNNING),
#: pause and resume (RUNNING → PAUSING → PAUSED → APPLIANCE …, or PAUSED when a resume finds
#: no room), and teardown (STOPPING → STOPPED → FREED → UNASSIGNED → VOLUME_REMOVED →
#: RELEASED), which begins at STOPPED from any step that never started the appliance
STEP_MOVES: dict[ProvisionStep, frozenset[ProvisionStep]] = {
    S.NEW: frozenset({S.APPLIANCE, S.STOPPED}),
    S.APPLIANCE: frozenset({S.RESOURCE, S.PAUSED, S.STOPPED}),
    S.RESOURCE: frozenset({S.IMAGE, S.PAUSED, S.STOPPED}),
    S.IMAGE: frozenset({S.ADDRESSES, S.PAUSED, S.STOPPED}),
    S.ADDRESSES: frozenset({S.STARTING, S.PAUSED, S.STOPPED}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING}),
    S.RUNNING: frozenset({S.PAUSING, S.STOPPING}),
    S.PAUSING: frozenset({S.PAUSED, S.STOPPED}),
    S.PAUSED: frozenset({S.APPLIANCE, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset({S.FREED}),
    S.FREED: frozenset({S.UNASSIGNED}),
    S.UNASSIGNED: frozenset({S.VOLUME_REMOVED}),
    S.VOLUME_REMOVED: frozenset({S.RELEASED}),
    S.RELEASED: frozenset(),
}


#: provisioning calls a teardown makes moot: what they may have made is removed by name
#: (power actions and exports are not: a machine must leave its image, an export must close)
SUPERSEDED_BY_TEARDOWN = frozenset({"create_vm", "clone_volume"})


#: a request waiting for a report (a machine booting, an appliance stopping) is made due by
#: that report (``mark_due``); this is only the backstop for a report that never comes
WAIT_BACKSTOP = dt.timedelta(seconds=30)
#: the length of a charged hour: one charged for a run covers a resume before it ends
HOUR = dt.timedelta(hours=1)


def waiting_until(now: Any, progressed: bool) -> Any:
    """When to look at a request again: at once after a step, else when a report (or a
    done call) makes it due, at the latest after ``WAIT_BACKSTOP``."""
    return now if progressed else now + WAIT_BACKSTOP


def mark_due(db: Session, *, resource_id: int | None = None, image_id: int | None = None,
             idle_machine: bool = False) -> int:
    """Make the requests due whose appliances wait for ``resource_id`` or ``image_id``
    (a machine reported, a call about it was done); ``idle_machine``: also those still
    looking for a machine. Returns how many requests were made due."""
    now = utcnow()
    waits = []
    if resource_id is not None:
        waits.append((CloudAppliance.resource_id == resource_id)
                     | (CloudAppliance.created_vm_id == resource_id))
    if image_id is not None:
        waits.append(CloudAppliance.clone_image_id == image_id)
    if idle_machine:
        waits.append(CloudAppliance.step == ProvisionStep.APPLIANCE)
    if not waits:
        return 0
    waiting = select(CloudAppliance.request_id).where(or_(*waits))
    return db.execute(
        update(CloudRequest)
        .where(CloudRequest.id.in_(waiting), CloudRequest.status.in_(WORKING),
               CloudRequest.next_step_at > now)
        .values(next_step_at=now)
        .execution_options(synchronize_session=False)).rowcount


def on_resource_changed(event: Any) -> None:
    """A machine reported a new state: the requests waiting for it are due (and an idle
    machine may be what a request waiting for one needs)."""
    mark_due(event.request.dbsession, resource_id=event.resource.id,
             idle_machine=event.resource.state is ResourceState.IDLE)


def on_call_done(event: Any) -> None:
    """A call that no request owns was done (an export closed after a machine stopped):
    the requests whose teardown waits for it are due."""
    about = event.about
    if event.call.owner is not None or about is None:
        return  # a request's own calls are followed by its next step anyway
    kind, row_id = about
    if mark_due(event.request.dbsession, **{f"{kind}_id": row_id}):
        kick_after_commit(event.request, "cloud.sweep")


def on_appliance_moved(event: Any) -> None:
    """An engine appliance moved to another machine (a fail-over, a change of type): its
    cloud appliance follows, so teardown releases the new machine. The run and its hours
    are unchanged: billing goes on without a gap. A VM made for the cloud appliance that it
    left is given back (``release_old``)."""
    ca = event.request.dbsession.scalar(select(CloudAppliance).where(
        CloudAppliance.appliance_id == event.appliance.id))
    if ca is None:
        return
    if event.old is not None and ca.created_vm_id == event.old.id:
        event.release_old = True
        ca.created_vm_id = None
    ca.resource_id = event.new.id if event.new is not None else None
    if event.created_vm_id is not None:
        ca.created_vm_id = event.created_vm_id


def owner_of(request_id: int) -> str:
    """The owner of the driver calls a request's steps record."""
    return f"cloud_request:{request_id}"


class NoResources(Exception):
    """This appliance cannot be placed; the request ends no-resources."""


class ProvisioningService:
    def __init__(self, db: Session, *, requests: CloudRequestService,
                 datacenter: DatacenterService, appliances: AppliancesService,
                 config: CloudConfigService, billing: BillingPort,
                 events: EventService, calls: CallService, request: Any = None) -> None:
        self.db, self.requests, self.datacenter = db, requests, datacenter
        self.appliances, self.config, self.billing, self.events = (appliances, config,
                                                                   billing, events)
        self.calls, self.request = calls, request

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> ProvisioningService:
        return cls(request.dbsession, requests=request.find_service(CloudRequestService),
                   datacenter=request.find_service(DatacenterService),
                   appliances=request.find_service(AppliancesService),
                   config=request.find_service(CloudConfigService),
                   billing=request.find_service(BillingPort),
                   events=request.find_service(EventService),
                   calls=request.find_service(CallService), request=request)

    # -- what is due ------------------------------------------------------------------------
    def due_request_ids(self, *, now: Any = None) -> list[int]:
        now = now or utcnow()
        return list(self.db.scalars(
            select(CloudRequest.id).where(CloudRequest.status.in_(WORKING),
                                          CloudRequest.next_step_at <= now)
            .order_by(CloudRequest.next_step_at, CloudRequest.id)))

    def _lock(self, request_id: int) -> CloudRequest | None:
        query = select(CloudRequest).where(CloudRequest.id == request_id)
        if supports_row_locks(self.db):
            # another scheduler holds it: skip, it is making progress on it
            query = query.with_for_update(skip_locked=True)
        return self.db.execute(query).scalar_one_or_none()

    # -- one step ---------------------------------------------------------------------------
    def advance(self, request_id: int, *, now: Any = None) -> bool:
        """Move request ``request_id`` on by at most one step per appliance; True if anything
        changed (the caller commits and calls again)."""
        now = now or utcnow()
        cloud_request = self._lock(request_id)
        if cloud_request is None or cloud_request.status not in WORKING:
            return False
        # The calls this step records are made after the commit, by the sweep, in order;
        # the request waits for them before its next step.
        with self.calls.owned_by(owner_of(cloud_request.id)):
            waiting = self._wait_for_calls(cloud_request, now)
            if waiting is not None:
                return waiting
            if cloud_request.status is RequestStatus.APPROVED:
                return self._advance_provisioning(cloud_request, now)
            if cloud_request.status is RequestStatus.ACTIVE:
                return self._advance_active(cloud_request, now)
            return self._advance_teardown(cloud_request, now)

    def _wait_for_calls(self, cloud_request: CloudRequest, now: Any) -> bool | None:
        """None when no call of the request is open; otherwise whether anything changed
        (a refused call dealt with) while the request waits."""
        open_calls = self.calls.open_for(owner_of(cloud_request.id))
        if not open_calls:
            return None
        if cloud_request.status in TEARDOWN:
            open_calls = self._supersede(cloud_request, open_calls, now)
        for call in open_calls:
            if call.state is not CallState.FAILED:
                continue
            if call.error_kind == "capacity":
                self.calls.disown(call)  # dealt with here, once
                if cloud_request.status in TEARDOWN:
                    continue
                self._refused(cloud_request, call, now)
                return True
            # given up after repeated failures: an admin's Retry makes it pending again
            cloud_request.failed_attempts = max(cloud_request.failed_attempts, call.attempts)
            cloud_request.next_step_at = None
            return False
        pending = [call for call in open_calls if call.state is CallState.PENDING]
        if not pending:
            return None
        failing = [call.attempts for call in pending if call.error]
        cloud_request.failed_attempts = max(failing, default=0)
        cloud_request.next_step_at = max(now, min(call.not_before for call in pending))
        return False

    def _supersede(self, cloud_request: CloudRequest, open_calls: list[DriverCall],
                   now: Any) -> list[DriverCall]:
        """A request being torn down does not wait hours for a failing provisioning call:
        one that failed and is not being made right now is given up (teardown removes
        whatever it may have made, by name). The calls still open are returned."""
        still_open = []
        for call in open_calls:
            in_flight = call.claimed_until is not None and call.claimed_until >= now
            if (call.operation in SUPERSEDED_BY_TEARDOWN and call.state is CallState.PENDING
                    and call.error and not in_flight):
                self.calls.give_up(call, reason="the request is being torn down")
                self.events.log(source="cloud", name="call.superseded", actor=ACTOR,
                                obj=cloud_request, level=EventLevel.INFO,
                                message=f"request {cloud_request.id}: {call.operation} "
                                f"({call.key}) is no longer made: the request is being "
                                "torn down")
                continue
            still_open.append(call)
        return still_open

    def _refused(self, cloud_request: CloudRequest, call: DriverCall, now: Any) -> None:
        """A host or storage refused for lack of room what the books said would fit."""
        reason = f"{call.operation} was refused: {call.error}"
        if cloud_request.status is RequestStatus.APPROVED:
            self._fail(cloud_request, reason)
            return
        for ca in cloud_request.appliances:  # being started again after a pause
            if ca.step in (ProvisionStep.RUNNING, ProvisionStep.PAUSED):
                continue
            if ca.appliance is not None and ca.appliance.state is not ApplianceState.STOPPED:
                continue
            if ca.resource_id is not None and ca.appliance is not None:
                self._release_resource(ca)
            self._move(ca, ProvisionStep.PAUSED)
            ca.state, ca.error = CloudApplianceState.PAUSED, reason
            self.events.log(source="cloud", name="appliance.start-failed", actor=ACTOR,
                            obj=ca, level=EventLevel.WARNING,
                            message=f"appliance {ca.name} stays paused: {reason}")
        cloud_request.next_step_at = now

    def _advance_active(self, cloud_request: CloudRequest, now: Any) -> bool:
        if cloud_request.stop <= now:
            self.requests.transition(cloud_request, RequestStatus.DEPROVISION, actor=ACTOR,
                                     reason="stop time reached")
            return True
        progressed = False
        for ca in cloud_request.appliances:
            if self._pause_or_resume_step(cloud_request, ca, now):
                progressed = True
                break  # one appliance per transaction
        busy = any(ca.step not in (ProvisionStep.RUNNING, ProvisionStep.PAUSED)
                   for ca in cloud_request.appliances)
        cloud_request.next_step_at = (waiting_until(now, progressed) if busy
                                      else cloud_request.stop)
        return progressed

    def _pause_or_resume_step(self, cloud_request: CloudRequest, ca: CloudAppliance,
                              now: Any) -> bool:
        if ca.step is ProvisionStep.PAUSING:
            if ca.appliance.state is not ApplianceState.STOPPED:
                return False  # the resource is rebooting into idle
            self._release_resource(ca)
            self._move(ca, ProvisionStep.PAUSED)
            self.events.log(source="cloud", name="appliance.paused", actor=ACTOR, obj=ca,
                            message=f"appliance {ca.name} is paused; its disk is kept")
            return True
        if ca.step in (ProvisionStep.RUNNING, ProvisionStep.PAUSED):
            return False
        try:  # being started again: the provisioning steps from placing it on
            return self._provision_step(cloud_request, ca, now)
        except NoResources as error:
            self._move(ca, ProvisionStep.PAUSED)
            ca.state, ca.error = CloudApplianceState.PAUSED, str(error)
            self.events.log(source="cloud", name="appliance.start-failed", actor=ACTOR,
                            obj=ca, level=EventLevel.WARNING,
                            message=f"appliance {ca.name} stays paused: {error}")
            return True

    def retry(self, request_id: Any, *, actor: Actor) -> CloudRequest:
        """Let the engine try a request again that it stopped trying after repeated failed
        steps (admins only)."""
        admin_only(actor)
        cloud_request = self.requests.get(request_id, actor=actor, for_update=True)
        if "retry" not in self.requests.allowed_actions(cloud_request, actor=actor):
            raise InvalidState(_("request ${id} is not waiting for a retry",
                                 mapping={"id": cloud_request.id}), field="request_id")
        cloud_request.failed_attempts = 0
        cloud_request.next_step_at = utcnow()
        for call in self.calls.open_for(owner_of(cloud_request.id)):
            self.calls.retry(call)
        self.events.log(source="cloud", name="request.retry", actor=actor, obj=cloud_request,
                        message=f"request {cloud_request.id}: retried by {actor.label}")
        kick_after_commit(self.request, "cloud.sweep")
        return cloud_request

    # -- commands of the appliance's user ---------------------------------------------------
    def command(self, appliance_id: Any, command: str, *, actor: Actor) -> CloudAppliance:
        """``stop`` (pause: not billed, resources released, disk kept), ``start`` (resume),
        or ``restart`` (reboot) one cloud appliance of an active request."""
        ca = self.requests.appliance(appliance_id, actor=actor)
        lock_row(self.db, CloudRequest, ca.request_id)  # against a concurrent teardown
        command = (command or "").strip().lower()
        actions = {"stop": self._pause, "start": self._resume, "restart": self._restart}
        if command not in actions:
            raise ValidationError(_("command must be start, stop or restart"), field="command")
        if ca.request.status is not RequestStatus.ACTIVE:
            raise InvalidState(_("appliance ${id} belongs to a request that is ${status}",
                                 mapping={"id": ca.id, "status": ca.request.status.value}),
                               field="appliance_id")
        actions[command](ca, actor=actor)
        ca.request.next_step_at = utcnow()
        self.db.flush()
        kick_after_commit(self.request, "cloud.sweep")
        return ca

    @staticmethod
    def allowed_commands(ca: CloudAppliance) -> frozenset[str]:
        """The commands ``command`` accepts for ``ca`` now (for offering only those)."""
        if ca.request.status is not RequestStatus.ACTIVE:
            return frozenset()
        return {ProvisionStep.RUNNING: frozenset({"stop", "restart"}),
                ProvisionStep.PAUSED: frozenset({"start"})}.get(ca.step, frozenset())

    def _require(self, ca: CloudAppliance, step: ProvisionStep, command: str) -> None:
        if ca.step is not step:
            raise InvalidState(_("appliance ${id} is ${state}; it cannot ${command} now",
                                 mapping={"id": ca.id, "state": ca.state.value,
                                          "command": command}), field="appliance_id")

    def _pause(self, ca: CloudAppliance, *, actor: Actor) -> None:
        self._require(ca, ProvisionStep.RUNNING, "stop")
        self._close_run(ca, utcnow())
        self.appliances.stop(ca.appliance, actor=actor)
        self._move(ca, ProvisionStep.PAUSING)
        ca.state = CloudApplianceState.PAUSED
        self.events.log(source="cloud", name="appliance.pause", actor=actor, obj=ca,
                        message=f"appliance {ca.name} pausing")

    def _resume(self, ca: CloudAppliance, *, actor: Actor) -> None:
        self._require(ca, ProvisionStep.PAUSED, "start")
        if not self.config["cloud_enabled"]:
            raise InvalidState(_("the cloud is in maintenance; paused systems cannot be "
                                 "started now"))
        user, price = ca.request.user, ca.request.price_per_hour
        if self.config["cloud_billing_enabled"] and self.billing.balance(user) < max(
                price, Decimal("0.0001")):
            raise InsufficientCredit(_("starting costs ${price} CCUs for the first hour but "
                                       "${name} has ${balance}",
                                       mapping={"price": plain(price), "name": user.name,
                                                "balance": plain(self.billing.balance(user))}),
                                     field="appliance_id")
        self._move(ca, ProvisionStep.APPLIANCE)
        ca.state, ca.error = CloudApplianceState.PROVISIONING, ""
        self.events.log(source="cloud", name="appliance.resume", actor=actor, obj=ca,
                        message=f"appliance {ca.name} starting again")

    def _restart(self, ca: CloudAppliance, *, actor: Actor) -> None:
        self._require(ca, ProvisionStep.RUNNING, "restart")
        self.appliances.restart(ca.appliance, actor=actor)

    def _advance_provisioning(self, cloud_request: CloudRequest, now: Any) -> bool:
        if cloud_request.start > now:
            cloud_request.next_step_at = cloud_request.start
            return False
        if cloud_request.stop <= now:
            self.requests.transition(cloud_request, RequestStatus.DEPROVISION, actor=ACTOR,
                                     reason="stop time reached before provisioning")
            return True
        progressed = False
        if not cloud_request.appliances:
            self._create_cloud_appliances(cloud_request)
            progressed = True
        recorded = self.calls.recorded
        try:
            for cloud_appliance in cloud_request.appliances:
                if self._provision_step(cloud_request, cloud_appliance, now):
                    progressed = True
                    # Steps without outside work follow in this transaction; a step that
                    # recorded a call ends it (the call is made after the commit).
                    while (self.calls.recorded == recorded
                           and self._provision_step(cloud_request, cloud_appliance, now)):
                        pass
                    break  # one appliance per transaction
        except NoResources as error:
            self._fail(cloud_request, str(error))
            return True
        if all(ca.step is ProvisionStep.RUNNING for ca in cloud_request.appliances):
            self.requests.transition(cloud_request, RequestStatus.ACTIVE, actor=ACTOR,
                                     reason="all appliances are active")
            return True
        # waiting for boots: the machines' reports make the request due again
        cloud_request.next_step_at = waiting_until(now, progressed)
        return progressed

    def _create_cloud_appliances(self, cloud_request: CloudRequest) -> None:
        for index in range(1, cloud_request.quantity + 1):
            self.db.add(CloudAppliance(
                request=cloud_request, index=index, name=f"cloud-{cloud_request.id}-{index}",
                disk_mb=cloud_request.disk_mb, state=CloudApplianceState.PROVISIONING,
                step=ProvisionStep.NEW))
        self.db.flush()
        self.db.refresh(cloud_request, ["appliances"])
        self.events.log(source="cloud", name="request.provisioning", actor=ACTOR,
                        obj=cloud_request, message=f"request {cloud_request.id}: provisioning "
                        f"{cloud_request.quantity} appliance(s)")

    def _provision_step(self, cloud_request: CloudRequest, ca: CloudAppliance,
                        now: Any) -> bool:
        step = ca.step
        if step is ProvisionStep.NEW:
            master = cloud_request.image
            appliance = self.appliances.add(
                ca.name, kernel=cloud_request.kernel, image=master,
                virtualization_type=cloud_request.virtualization_type, actor=ACTOR,
                cpus=cloud_request.cpus, memory_mb=cloud_request.memory_mb,
                nics=cloud_request.network_cards, ha=cloud_request.ha,
                comment=f"request {cloud_request.id} of {cloud_request.user.name}")
            ca.appliance = appliance
            self._move(ca, ProvisionStep.APPLIANCE)
        elif step is ProvisionStep.APPLIANCE:
            resource = self._place(cloud_request, ca)
            if resource is None:
                return False  # a fitting machine is still booting: wait for its report
            self.appliances.assign_resource(ca.appliance, resource, actor=ACTOR)
            ca.resource_id = resource.id
            self._move(ca, ProvisionStep.RESOURCE)
        elif step is ProvisionStep.RESOURCE:
            resource = self.db.get(Resource, ca.resource_id)
            if resource.state is not ResourceState.IDLE:
                return False  # the VM is still booting; its report moves us on
            ca.appliance.image = self._image_for(cloud_request, ca)
            self._move(ca, ProvisionStep.IMAGE)
        elif step is ProvisionStep.IMAGE:
            self._assign_addresses(cloud_request, ca)
            self._move(ca, ProvisionStep.ADDRESSES)
        elif step is ProvisionStep.ADDRESSES:
            self.appliances.start(ca.appliance, actor=ACTOR)
            self._move(ca, ProvisionStep.STARTING)
        elif step is ProvisionStep.STARTING:
            if ca.appliance.state is not ApplianceState.ACTIVE:
                return False
            self._move(ca, ProvisionStep.RUNNING)
            ca.state = CloudApplianceState.ACTIVE
            self._open_run(ca, now)
            self.events.log(source="cloud", name="appliance.active", actor=ACTOR, obj=ca,
                            message=f"appliance {ca.name} of request {cloud_request.id} is "
                            f"active on resource {ca.resource_id}")
            self.billing.charge_appliance(ca, now=now, actor=ACTOR)
        else:
            return False
        self.db.flush()
        return True

    def _place(self, cloud_request: CloudRequest, ca: CloudAppliance) -> Resource | None:
        vtype = cloud_request.virtualization_type
        fits = {"cpus": cloud_request.cpus, "memory_mb": cloud_request.memory_mb,
                "nics": cloud_request.network_cards}
        resource = self.datacenter.claim_idle_resource(vtype, **fits)
        if resource is not None:
            return resource
        if self.datacenter.booting_fits(vtype, **fits):
            return None
        if vtype.kind is VirtualizationKind.PHYSICAL:
            raise NoResources(f"no idle physical system with {cloud_request.cpus} CPU(s), "
                              f"{cloud_request.memory_mb} MB and {cloud_request.network_cards}"
                              " NIC(s) is free")
        if not self.config["auto_create_vms"]:
            raise NoResources(f"no idle {vtype.label} fits and auto_create_vms is off")
        try:
            vm = self.datacenter.create_vm(
                vtype, name=ca.name, cpus=cloud_request.cpus,
                memory_mb=cloud_request.memory_mb, nics=cloud_request.network_cards,
                disk_mb=cloud_request.disk_mb, actor=ACTOR)
        except CapacityError as error:
            raise NoResources(str(error)) from None
        ca.created_vm_id = vm.id
        return vm

    def _image_for(self, cloud_request: CloudRequest, ca: CloudAppliance) -> Image:
        master = cloud_request.image
        if not cloud_request.clone_on_deploy:
            return master
        try:
            clone = self.datacenter.clone_image(master, name=f"{ca.name}-{master.name}",
                                                size_mb=cloud_request.disk_mb, actor=ACTOR)
        except CapacityError as error:
            raise NoResources(f"the image cannot be cloned: {error}") from None
        ca.clone_image_id = clone.id
        return clone

    def _assign_addresses(self, cloud_request: CloudRequest, ca: CloudAppliance) -> None:
        query = (select(IpAddress).where(IpAddress.enabled.is_(True),
                                         IpAddress.cloud_appliance_id.is_(None))
                 .order_by(IpAddress.id).limit(cloud_request.network_cards))
        if supports_row_locks(self.db):
            query = query.with_for_update(skip_locked=True)
        addresses = list(self.db.scalars(query))
        for address in addresses:
            address.cloud_appliance_id = ca.id
        if addresses:
            self.events.log(source="cloud", name="appliance.addresses", actor=ACTOR, obj=ca,
                            level=EventLevel.INFO, message=f"appliance {ca.name}: "
                            + ", ".join(a.address for a in addresses))

    def _fail(self, cloud_request: CloudRequest, reason: str) -> None:
        self.events.log(source="cloud", name="request.no-resources", actor=ACTOR,
                        obj=cloud_request, level=EventLevel.WARNING,
                        message=f"request {cloud_request.id}: {reason}")
        self.requests.transition(cloud_request, RequestStatus.NO_RESOURCES, actor=ACTOR,
                                 reason=reason)

    # -- teardown ---------------------------------------------------------------------------
    def _advance_teardown(self, cloud_request: CloudRequest, now: Any) -> bool:
        progressed = False
        for ca in cloud_request.appliances:
            if self._teardown_step(ca, now):
                progressed = True
                break  # one appliance per transaction
        removed = all(ca.state is CloudApplianceState.REMOVED for ca in cloud_request.appliances)
        if removed and self.calls.open_for(owner_of(cloud_request.id)):
            cloud_request.next_step_at = now  # the removals are made after this commit
            return True
        if removed:
            if cloud_request.status is RequestStatus.DEPROVISION:
                self.requests.transition(cloud_request, RequestStatus.DONE, actor=ACTOR,
                                         reason="all appliances removed")
            cloud_request.next_step_at = None
            return True
        cloud_request.next_step_at = waiting_until(now, progressed)
        return progressed

    def _teardown_step(self, ca: CloudAppliance, now: Any) -> bool:
        """Move ``ca`` one teardown step on (``STEP_MOVES``); False while it waits."""
        if ca.state is CloudApplianceState.REMOVED:
            return False
        step = ca.step
        if step in (ProvisionStep.STARTING, ProvisionStep.RUNNING):
            self._close_run(ca, now)
            if ca.appliance is not None:
                self.appliances.stop(ca.appliance, actor=ACTOR)
            ca.state = CloudApplianceState.DEPROVISIONING
            to = ProvisionStep.STOPPING
        elif step in (ProvisionStep.STOPPING, ProvisionStep.PAUSING):
            if ca.appliance is not None and ca.appliance.state is not ApplianceState.STOPPED:
                return False  # the resource is rebooting into idle; its report moves us on
            to = ProvisionStep.STOPPED
        elif step in PROVISIONING_STEPS or step is ProvisionStep.PAUSED:
            ca.state = CloudApplianceState.DEPROVISIONING
            to = ProvisionStep.STOPPED  # never started, or stopped already
        elif step in (ProvisionStep.STOPPED, ProvisionStep.FREED, ProvisionStep.UNASSIGNED,
                      ProvisionStep.VOLUME_REMOVED):
            released = self._release_step(ca)
            if released is None:
                return False
            to = released
        else:
            return False
        self._move(ca, to)
        return True

    def _release_step(self, ca: CloudAppliance) -> ProvisionStep | None:
        """Give back one more thing provisioning made for a stopped ``ca``; the step it
        reaches, or None while a call about the object is still to be made."""
        step = ca.step
        if step is ProvisionStep.STOPPED:
            self._release_addresses(ca)
            return ProvisionStep.FREED
        if step is ProvisionStep.FREED:
            self._remove_appliance(ca)
            return ProvisionStep.UNASSIGNED
        if step is ProvisionStep.UNASSIGNED:
            if ca.clone_image_id and self.calls.pending_about("image", ca.clone_image_id):
                return None  # its export is being locked: then it goes
            self._remove_clone(ca)
            return ProvisionStep.VOLUME_REMOVED
        if ca.created_vm_id and self.calls.pending_about("resource", ca.created_vm_id):
            return None  # a power action on it is still to be made
        self._remove_created_vm(ca)
        ca.state = CloudApplianceState.REMOVED
        self.events.log(source="cloud", name="appliance.removed", actor=ACTOR, obj=ca,
                        message=f"appliance {ca.name} removed; its resources are released")
        return ProvisionStep.RELEASED

    @staticmethod
    def _move(ca: CloudAppliance, to: ProvisionStep) -> None:
        """Take one step of the declared tables (anything else is a bug, never data)."""
        allowed = STEP_MOVES.get(ca.step, frozenset())
        if to not in allowed:
            raise AssertionError(f"appliance {ca.id}: no step from {ca.step.value} to "
                                 f"{to.value}")
        ca.step = to

    def _remove_appliance(self, ca: CloudAppliance) -> None:
        appliance = ca.appliance
        if appliance is None:
            return
        if appliance.state is not ApplianceState.STOPPED:
            self.appliances.stop(appliance, actor=ACTOR)
            appliance.state = ApplianceState.STOPPED
        self.appliances.release(appliance, actor=ACTOR)
        ca.appliance = None
        self.db.flush()
        self.appliances.remove(appliance, actor=ACTOR)

    def _remove_clone(self, ca: CloudAppliance) -> None:
        if ca.clone_image_id is None:
            return
        clone = self.db.get(Image, ca.clone_image_id)
        ca.clone_image_id = None
        self.db.flush()
        if clone is not None:
            self.datacenter.remove_image(clone, actor=ACTOR)

    def _remove_created_vm(self, ca: CloudAppliance) -> None:
        ca.resource_id = None
        if ca.created_vm_id is None:
            return
        vm = self.db.get(Resource, ca.created_vm_id)
        ca.created_vm_id = None
        self.db.flush()
        if vm is not None:
            self.datacenter.remove_vm(vm, actor=ACTOR)

    @staticmethod
    def _open_run(ca: CloudAppliance, now: Any) -> None:
        """Start the meter. Started again after a pause: if the last hour charged for the
        paused run has not ended by ``now``, that hour covers the resume and the run goes on
        (same run, same hours, nothing more charged before its next hour starts); otherwise
        a new run starts at ``now`` and its first hour is charged."""
        if ca.active_since is not None:
            if now < ca.active_since + ca.hours_charged * HOUR:
                ca.active_until = None
                return
            ca.run, ca.hours_charged, ca.active_until = ca.run + 1, 0, None
        ca.active_since = now

    def _close_run(self, ca: CloudAppliance, now: Any) -> None:
        """Bill every hour of the running run that started by ``now``, then stop the meter."""
        if ca.active_since is not None and ca.active_until is None:
            self.billing.charge_appliance(ca, now=now, actor=ACTOR)
            ca.active_until = now

    def _release_resource(self, ca: CloudAppliance) -> None:
        """A paused appliance gives back its resource (the VM made for it is removed) and
        its IP addresses; its disk stays."""
        self._release_addresses(ca)
        self.appliances.release(ca.appliance, actor=ACTOR)
        ca.resource_id = None
        self.db.flush()
        if ca.created_vm_id is not None:
            vm = self.db.get(Resource, ca.created_vm_id)
            ca.created_vm_id = None
            self.db.flush()
            if vm is not None:
                self.datacenter.remove_vm(vm, actor=ACTOR)

    def _release_addresses(self, ca: CloudAppliance) -> None:
        for address in list(self.db.scalars(select(IpAddress).where(
                IpAddress.cloud_appliance_id == ca.id))):
            address.cloud_appliance_id = None


MAX_STEPS_PER_SWEEP = 50


def sweep_job(request: Any) -> int:
    """``cloud.sweep``: advance every request with something due, each step in its own
    transaction. Returns the number of steps taken.

    A step's transaction also claims the first call it recorded, and the next transaction
    records that call's outcome before the request's next step: a call costs no
    transaction of its own (intent and claim commit together, outcome and next step
    too), and the effect is made between them with no transaction open."""
    from engine.scheduler.runner import run_in_transaction, transactions

    # This job's own request never touches the database: on SQLite an open transaction here
    # would hold the write lock that every step below needs.
    registry = request.registry
    ids = run_in_transaction(registry, _due_ids)
    steps = 0
    with transactions(registry) as run:
        for request_id in ids:
            outcome: outside.Outcome | None = None
            try:
                for _ in range(MAX_STEPS_PER_SWEEP):
                    progressed, claimed = run(_step, request_id=request_id, outcome=outcome)
                    outcome = None
                    if claimed is not None:
                        # the step's outside work, after its commit (engine.datacenter.calls)
                        outcome = outside.make(registry, claimed)
                    elif not progressed:
                        break
                    steps += 1
                if outcome is not None:  # the last step's call: its outcome still counts
                    run(outside.record_outcome, outcome=outcome)
            except Exception as error:  # a step failed: it is rolled back and retried
                log.exception("request %s: step failed", request_id)
                run(_record_failure, request_id=request_id, error=error, outcome=outcome)
    return steps


#: failed steps (or calls) in a row after which the engine waits for an admin to retry the
#: request; they back off like calls do (``retry_delay``: 1, 2, 4 … minutes)
MAX_FAILED_ATTEMPTS = MAX_ATTEMPTS


def _record_failure(request: Any, request_id: int, error: Exception,
                    outcome: outside.Outcome | None = None) -> None:
    if outcome is not None:  # the call was made: that is recorded whatever the step did
        outside.record_outcome(request, outcome)
    cloud_request = request.dbsession.get(CloudRequest, request_id)
    if cloud_request is None:
        return
    cloud_request.failed_attempts += 1
    attempts = cloud_request.failed_attempts
    message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    if attempts >= MAX_FAILED_ATTEMPTS:
        cloud_request.next_step_at = None
        outcome = (f"it failed {attempts} times in a row; the engine waits for an admin to "
                   "retry it")
    else:
        delay = retry_delay(attempts)
        cloud_request.next_step_at = utcnow() + delay
        outcome = f"retried in {int(delay.total_seconds() // 60)} minute(s)"
    request.find_service(EventService).log(
        source="cloud", name="request.step-failed", actor=ACTOR, level=EventLevel.ERROR,
        object_type="cloud_request", object_id=request_id,
        message=f"request {request_id}: a provisioning step failed ({message}); {outcome}")


def _due_ids(request: Any) -> list[int]:
    return request.find_service(ProvisioningService).due_request_ids()


def _advance_one(request: Any, request_id: int) -> bool:
    progressed = request.find_service(ProvisioningService).advance(request_id)
    if progressed:
        cloud_request = request.dbsession.get(CloudRequest, request_id)
        cloud_request.failed_attempts = 0  # a step went through: the streak is over
    return progressed


def _step(request: Any, request_id: int, outcome: outside.Outcome | None = None,
          ) -> tuple[bool, outside.Claimed | None]:
    """Record the outcome of the request's last call (if any), take its next step, and
    claim its next call due (made after this commit). Returns whether the step changed
    anything, and the claimed call."""
    if outcome is not None:
        outside.record_outcome(request, outcome)
    progressed = _advance_one(request, request_id)
    return progressed, outside.claim_next(request, owner_of(request_id))


__all__ = ["Appliance", "ProvisioningService", "sweep_job"]
