"""Outside work: calls that change the world outside our database, made after the commit.

A hypervisor or a storage host does not roll back with our transaction. So a service never
calls a driver itself; it records the call it wants (``CallService.record``: a
``driver_call`` row whose unique key is derived from persisted rows, such as
``create-vm:resource:42``), and the transaction commits. Then:

1. **claim** (own transaction): the call is marked as being made until ``claimed_until`` and
   its attempt counted; the plugins that serve it are looked up;
2. **effect** (no transaction open): the driver is called with plain values (``HostRef``,
   ``StorageRef``, ``VmSpec``) stored with the call, under the name stored with the call;
3. **outcome** (own transaction): ``done`` with the driver's result, and the rows that
   depend on it updated (a clone's root device, a removed VM's resource row); or the error:
   capacity errors fail the call at once, other errors retry it with back-off (1, 2, 4 …
   minutes) and fail it after ``MAX_ATTEMPTS``.

A crash between any two of these converges: an unfinished claim runs out and the call is
made again under the same name, and drivers are idempotent by name (see
``engine.plugins.drivers``), so nothing is made twice. Calls with an ``owner``
(``cloud_request:7``) are made by the job that owns the step, in the order they were
recorded, and the step waits until they are done; calls without one are made by the
``datacenter.calls`` job (kicked after the commit that records them). For an owner's calls
the phases share the owner's step transactions (``claim_next`` in the step that recorded the
call, ``record_outcome`` before the next step): the protocol is the same, with fewer commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Any

from pyramid.scripting import prepare
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.datacenter.models import CallState, DriverCall
from engine.db import utcnow
from engine.errors import CapacityError, DriverError
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.plugins.drivers import HostRef, HostUnreachable, MachineRef, StorageRef, VmSpec
from engine.security import Actor

log = logging.getLogger(__name__)

#: failed attempts after which a call is given up (an admin's Retry makes it pending again)
MAX_ATTEMPTS = 8
#: how long a claim lasts: a worker that crashed while making the call loses it after this
CLAIM_FOR = dt.timedelta(minutes=5)
RETRY_AFTER = dt.timedelta(minutes=1)

VM_OPERATIONS = ("create_vm", "start_vm", "stop_vm", "reboot_vm", "remove_vm")
STORAGE_OPERATIONS = ("create_volume", "clone_volume", "snapshot_volume", "resize_volume",
                      "remove_volume", "authenticate")
#: the power switch of a machine (``qrm_resource_command`` hooks)
POWER = "power"
#: calls after which a machine boots
BOOTS = frozenset({"create_vm", "start_vm", "reboot_vm", POWER})


def retry_delay(attempts: int) -> dt.timedelta:
    """1, 2, 4, … minutes after the 1st, 2nd, 3rd … failure in a row."""
    return RETRY_AFTER * 2 ** max(attempts - 1, 0)


def error_kind(error: Exception) -> str:
    if isinstance(error, CapacityError):
        return "capacity"
    if isinstance(error, HostUnreachable):
        return "unreachable"
    return "driver"


def as_json(value: Any) -> Any:
    """A driver value (dataclass) as JSON-able data."""
    if dataclasses.is_dataclass(value):
        return {key: as_json(item) for key, item in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A claimed call, detached from the database: what the effect phase needs."""

    id: int
    key: str
    operation: str
    driver: str
    target: dict
    arguments: dict
    attempts: int
    plugins: tuple[str, ...]


class CallDone:
    """Pyramid event: a call was made and its outcome recorded (in that transaction)."""

    def __init__(self, request: Any, call: DriverCall) -> None:
        self.request, self.call = request, call

    @property
    def about(self) -> tuple[str, int] | None:
        """The row the call is about, from its key: (``resource``/``image``, id)."""
        parts = self.call.key.split(":")
        if len(parts) >= 3 and parts[1] in ("resource", "image") and parts[2].isdigit():
            return parts[1], int(parts[2])
        return None


#: what the outcome of an operation changes in the database: ``handler(request, call)``,
#: run in the outcome's transaction once the call is done (registered by the services)
DoneHandler = Callable[[Any, DriverCall], None]
DONE_HANDLERS: dict[str, DoneHandler] = {}


def on_done(operation: str) -> Callable[[DoneHandler], DoneHandler]:
    def register(handler: DoneHandler) -> DoneHandler:
        DONE_HANDLERS[operation] = handler
        return handler

    return register


class CallService:
    """Record calls, ask for their state, record their outcome (request-scoped)."""

    def __init__(self, db: Session, *, events: EventService, request: Any = None) -> None:
        self.db, self.events, self.request = db, events, request
        self.owner: str | None = None
        #: how many new calls this service recorded (a step that records one ends there)
        self.recorded = 0

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> CallService:
        return cls(request.dbsession, events=request.find_service(EventService),
                   request=request)

    @contextlib.contextmanager
    def owned_by(self, owner: str | None) -> Iterator[None]:
        """Calls recorded inside belong to ``owner`` (its job makes them, its step waits)."""
        previous, self.owner = self.owner, owner
        try:
            yield
        finally:
            self.owner = previous

    def record(self, key: str, operation: str, *, driver: str, target: Any,
               arguments: dict[str, Any], actor: Actor) -> DriverCall:
        """Record the intent to make a call; the same key again returns the first record."""
        existing = self.get(key)
        if existing is not None:
            return existing
        call = DriverCall(key=key, operation=operation, driver=driver, owner=self.owner,
                          target=as_json(target), arguments=as_json(arguments),
                          state=CallState.PENDING, attempts=0, not_before=utcnow(),
                          actor=actor.label, error="")
        self.db.add(call)
        self.db.flush()
        self.recorded += 1
        if self.owner is None and self.request is not None:
            from engine.scheduler.kick import kick_after_commit

            kick_after_commit(self.request, "datacenter.calls")
        return call

    def get(self, key: str) -> DriverCall | None:
        return self.db.scalar(select(DriverCall).where(DriverCall.key == key))

    def open_for(self, owner: str) -> list[DriverCall]:
        """``owner``'s calls that are not done yet (pending or failed), oldest first."""
        return list(self.db.scalars(
            select(DriverCall).where(DriverCall.owner == owner,
                                     DriverCall.state != CallState.DONE)
            .order_by(DriverCall.id)))

    def pending_about(self, kind: str, row_id: int) -> list[DriverCall]:
        """Pending calls about row ``row_id`` of ``kind`` (``image``, ``resource``), whoever
        owns them: what must be done before the row's object is removed."""
        marker = f":{kind}:{row_id}"
        return list(self.db.scalars(
            select(DriverCall).where(DriverCall.state == CallState.PENDING,
                                     DriverCall.key.like(f"%{marker}")
                                     | DriverCall.key.like(f"%{marker}:%"))
            .order_by(DriverCall.id)))

    def retry(self, call: DriverCall) -> None:
        """A failed call is made again (an admin's Retry)."""
        if call.state is CallState.FAILED:
            call.state, call.attempts, call.not_before = CallState.PENDING, 0, utcnow()
            call.claimed_until = None

    def listing(self, *, done_limit: int = 50) -> list[DriverCall]:
        """For the console: every call not done (failed first, then pending), then the
        latest ``done_limit`` done ones."""
        open_calls = list(self.db.scalars(
            select(DriverCall).where(DriverCall.state != CallState.DONE)
            .order_by(DriverCall.state, DriverCall.id.desc())))
        done = list(self.db.scalars(
            select(DriverCall).where(DriverCall.state == CallState.DONE)
            .order_by(DriverCall.id.desc()).limit(done_limit)))
        return sorted(open_calls, key=lambda call: call.state is not CallState.FAILED) + done

    def page(self, *, state: CallState | None = None, after: str | None = None,
             before: str | None = None, size: int | None = None) -> Any:
        """For the console: one page of the calls, newest first, only those in ``state``
        if given."""
        from engine.paging import DEFAULT_SIZE, KeysetPager

        query = select(DriverCall)
        if state is not None:
            query = query.where(DriverCall.state == state)
        return KeysetPager(DriverCall.id, descending=True).page(
            self.db, query, after=after, before=before, size=size or DEFAULT_SIZE)

    def counts(self) -> dict[CallState, int]:
        """How many calls are in each state (one grouped query)."""
        counts = dict.fromkeys(CallState, 0)
        counts.update(self.db.execute(select(DriverCall.state, func.count(DriverCall.id))
                                      .group_by(DriverCall.state)).all())
        return counts

    def retry_failed(self, call_id: Any, *, actor: Actor) -> DriverCall:
        """An admin has a failed call made again (its owner waits for it again)."""
        from engine.errors import InvalidState, NotFound, PermissionDenied
        from engine.i18n import _

        if not actor.is_admin:
            raise PermissionDenied(_("only an admin may do this"))
        call = self.db.get(DriverCall, int(call_id)) if str(call_id).isdigit() else None
        if call is None:
            raise NotFound(_("no call ${id}", mapping={"id": call_id}), field="call_id")
        if call.state is not CallState.FAILED:
            raise InvalidState(_("call ${id} has not failed", mapping={"id": call.id}),
                               field="call_id")
        if call.owner is not None:
            raise InvalidState(_("call ${id} belongs to ${owner}: retry that instead",
                                 mapping={"id": call.id, "owner": call.owner}),
                               field="call_id")
        self.retry(call)
        self.events.log(source="datacenter", name="call.retry", actor=actor,
                        object_type="driver_call", object_id=call.id,
                        message=f"{call.operation} ({call.key}) is made again, by "
                        f"{actor.label}")
        if self.request is not None:
            from engine.scheduler.kick import kick_after_commit

            kick_after_commit(self.request, "datacenter.calls")
        return call

    def give_up(self, call: DriverCall, *, reason: str) -> None:
        """Stop trying a pending call (``superseded``); its owner no longer waits for it."""
        call.state, call.error_kind, call.owner = CallState.FAILED, "superseded", None
        call.error = f"{call.error}; given up: {reason}" if call.error else f"given up: {reason}"

    def disown(self, call: DriverCall) -> None:
        """Its owner no longer waits for it (a refused placement it has dealt with)."""
        call.owner = None


# -- making calls (jobs) --------------------------------------------------------------------
def due_calls(request: Any, owner: str | None, limit: int = 50) -> list[int]:
    now = utcnow()
    query = (select(DriverCall.id)
             .where(DriverCall.state == CallState.PENDING, DriverCall.not_before <= now,
                    (DriverCall.claimed_until.is_(None)) | (DriverCall.claimed_until < now))
             .order_by(DriverCall.id).limit(limit))
    query = query.where(DriverCall.owner.is_(None) if owner is None
                        else DriverCall.owner == owner)
    return list(request.dbsession.scalars(query))


def _due(call: DriverCall, now: Any) -> bool:
    """Pending, due, and claimed by no one (or their claim ran out)."""
    return (call.state is CallState.PENDING and call.not_before <= now
            and (call.claimed_until is None or call.claimed_until < now))


def _claim(request: Any, call_id: int) -> Claimed | None:
    from engine.datacenter.services import supports_row_locks

    db = request.dbsession
    now = utcnow()
    query = select(DriverCall).where(DriverCall.id == call_id)
    if supports_row_locks(db):
        query = query.with_for_update(skip_locked=True)
    call = db.scalar(query)
    if call is None or not _due(call, now):
        return None
    if call.owner is not None:
        # the owner's calls are made in the order they were recorded
        earlier = db.scalar(select(DriverCall.id).where(
            DriverCall.owner == call.owner, DriverCall.id < call.id,
            DriverCall.state != CallState.DONE).limit(1))
        if earlier is not None:
            return None
    return _take(request, call, now)


def _take(request: Any, call: DriverCall, now: Any) -> Claimed:
    """Claim ``call`` (due, and first of its owner's): count the attempt, hold it for
    ``CLAIM_FOR``, and say what the effect needs."""
    from engine.plugins.manager import PluginService
    from engine.plugins.models import PluginState

    call.attempts += 1
    call.claimed_until = now + CLAIM_FOR
    names = tuple(request.find_service(PluginService).names_in(PluginState.STARTED))
    return Claimed(id=call.id, key=call.key, operation=call.operation, driver=call.driver,
                   target=dict(call.target), arguments=dict(call.arguments),
                   attempts=call.attempts, plugins=names)


def _driver(relay: Any, request: Any, claimed: Claimed) -> Any:
    if claimed.operation in VM_OPERATIONS:
        for drivers in relay.qrm_virtualization_drivers(request=request):
            for driver in drivers:
                if driver.vm_type == claimed.driver:
                    return driver
        raise DriverError(f"no started plugin provides virtualization type "
                          f"{claimed.driver!r}")
    for drivers in relay.qrm_storage_drivers(request=request):
        for driver in drivers:
            if driver.storage_type == claimed.driver:
                return driver
    raise DriverError(f"no started plugin provides storage type {claimed.driver!r}")


def _effect(registry: Any, claimed: Claimed) -> Any:
    """Make the call. No database transaction is open here, and none may be."""
    env = prepare(registry=registry)
    try:
        request = env["request"]
        relay = registry["plugins"].relay(claimed.plugins)
        args = dict(claimed.arguments)
        if claimed.operation == POWER:
            handled = relay.qrm_resource_command(
                request=request, resource=MachineRef(**claimed.target), command=args["command"])
            return {"handled": bool(handled)}  # firstresult: the first plugin that did it
        driver = _driver(relay, request, claimed)
        if claimed.operation in VM_OPERATIONS:
            host = HostRef(**claimed.target)
            if claimed.operation == "create_vm":
                spec = dict(args["spec"])
                spec["macs"] = tuple(spec.get("macs") or ())
                driver.create_vm(host, VmSpec(**spec))
                return None
            getattr(driver, claimed.operation)(host, args["name"])
            return None
        storage = StorageRef(**claimed.target)
        if claimed.operation == "authenticate":
            machine = args.get("machine")
            driver.authenticate(storage, root_device=args["root_device"],
                                machine=MachineRef(**machine) if machine else None)
            return None
        return getattr(driver, claimed.operation)(storage, **args)
    finally:
        env["closer"]()


def _record_done(request: Any, call_id: int, result: Any) -> DriverCall:
    call = request.dbsession.get(DriverCall, call_id)
    call.state, call.result, call.done_at = CallState.DONE, {"value": result}, utcnow()
    call.claimed_until, call.error, call.error_kind = None, "", None
    handler = DONE_HANDLERS.get(call.operation)
    if handler is not None:
        handler(request, call)
    request.registry.notify(CallDone(request, call))
    if call.operation in BOOTS:
        # a machine is booting: its report may come soon (the simulated agents report
        # through the monitor job, real ones on their own)
        from engine.scheduler.kick import kick_after_commit

        kick_after_commit(request, "plugins.monitor")
    return call


def _record_error(request: Any, call_id: int, error: Exception) -> DriverCall:
    call = request.dbsession.get(DriverCall, call_id)
    kind = error_kind(error)
    message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    call.claimed_until, call.error, call.error_kind = None, message, kind
    if kind == "capacity" or call.attempts >= MAX_ATTEMPTS:
        call.state = CallState.FAILED
        outcome = ("given up" if kind != "capacity" else "refused for lack of room")
    else:
        delay = retry_delay(call.attempts)
        call.not_before = utcnow() + delay
        outcome = f"retried in {int(delay.total_seconds() // 60)} minute(s)"
    owner_type, _sep, owner_id = (call.owner or "").partition(":")
    request.find_service(EventService).log(
        source="datacenter", name="call.failed", actor=Actor.system("outside-work"),
        level=EventLevel.ERROR if call.state is CallState.FAILED else EventLevel.WARNING,
        object_type=owner_type or "driver_call",
        object_id=int(owner_id) if owner_id.isdigit() else call.id,
        message=f"{call.operation} ({call.key}) failed, attempt {call.attempts}: {message}; "
        f"{outcome}")
    return call


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What making a claimed call came to: its result, or the error it raised."""

    call_id: int
    result: Any = None
    error: Exception | None = None


def claim_next(request: Any, owner: str) -> Claimed | None:
    """Claim ``owner``'s next call if it is due, in the caller's transaction (the one that
    recorded it, typically: the claim commits with the intent). Only the owner's first
    open call may be made (they are made in order)."""
    from engine.datacenter.services import supports_row_locks

    db = request.dbsession
    now = utcnow()
    first = db.scalar(select(DriverCall).where(DriverCall.owner == owner,
                                               DriverCall.state != CallState.DONE)
                      .order_by(DriverCall.id).limit(1))
    if first is None or not _due(first, now):
        return None
    if supports_row_locks(db):  # against a worker claiming it meanwhile
        first = db.scalar(select(DriverCall).where(DriverCall.id == first.id)
                          .with_for_update(skip_locked=True)
                          .execution_options(populate_existing=True))
        if first is None or not _due(first, now):
            return None
    return _take(request, first, now)


def make(registry: Any, claimed: Claimed) -> Outcome:
    """The effect of a claimed call (no transaction open); every failure of the outside
    world becomes the outcome's error."""
    try:
        result = _effect(registry, claimed)
    except Exception as error:
        if not isinstance(error, DriverError):
            log.exception("call %s (%s) failed", claimed.key, claimed.operation)
        return Outcome(claimed.id, error=error)
    return Outcome(claimed.id, result=as_json(result))


def record_outcome(request: Any, outcome: Outcome) -> DriverCall:
    """Record ``outcome`` in the caller's transaction (the owner's next step may follow in
    it: it sees the call done)."""
    if outcome.error is not None:
        return _record_error(request, outcome.call_id, outcome.error)
    return _record_done(request, outcome.call_id, outcome.result)


def perform(registry: Any, call_id: int) -> str | None:
    """Claim, make and record call ``call_id``, each in its own transaction; return its
    state afterwards, or None when it was not due or someone else holds it."""
    from engine.scheduler.runner import run_in_transaction

    claimed = run_in_transaction(registry, _claim, call_id=call_id)
    if claimed is None:
        return None
    outcome = make(registry, claimed)
    return run_in_transaction(registry, lambda request: record_outcome(
        request, outcome).state.value)


def run_calls(registry: Any, owner: str | None) -> int:
    """Make every due call of ``owner`` (None: calls without one), in order; an owner's
    calls stop at the first that does not go through. Returns how many were done."""
    from engine.scheduler.runner import run_in_transaction

    done = 0
    for call_id in run_in_transaction(registry, due_calls, owner=owner):
        state = perform(registry, call_id)
        if state == CallState.DONE.value:
            done += 1
        elif owner is not None:
            break
    return done


def calls_job(request: Any) -> int:
    """``datacenter.calls``: make the due calls that no request's step owns."""
    done, registry = 0, request.registry
    while True:
        made = run_calls(registry, None)
        done += made
        if not made:
            return done
