"""The CCU ledger and the hourly charge.

Ledger-first accounting: every movement is one ``ledger_entry`` row with a unique
idempotency key, written in the same transaction as the cached balance on the user row. A
charge for hour *k* of run *r* of appliance *a* has the key ``charge:appliance:a:run:r:hour:k``
(a run starts when the appliance becomes active, and again when it is resumed after the
last hour charged for its run has ended: a resume within that hour continues the run, so the
hour covers it), so two
schedulers, a retry or a restart can never charge it twice, and an hour the scheduler missed
is charged late instead of never.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from zope.sqlalchemy import mark_changed

from billing.models import LedgerEntry
from billing.prices import PriceService
from engine.cloud.billing_port import MoneyValue, Quote, RequestSpec
from engine.cloud.config import CloudConfigService
from engine.cloud.models import (
    CloudAppliance,
    CloudRequest,
    CloudUser,
    RequestStatus,
)
from engine.datacenter.services import supports_row_locks
from engine.db import utcnow
from engine.errors import NotFound, PermissionDenied, ValidationError
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.i18n import _
from engine.plugins.manager import PluginService
from engine.security import Actor
from engine.types import plain, quantize_ccus
from engine.validation import check_text

log = logging.getLogger(__name__)

HOUR = dt.timedelta(hours=1)
BILLING_ACTOR = Actor.system("billing")
#: appliances charged in one transaction of the ``billing.charge`` job
BATCH_SIZE = 1000
#: idempotency keys looked up per query
KEY_CHUNK = 500


def due_hours(active_since: dt.datetime, active_until: dt.datetime | None,
              now: dt.datetime) -> int:
    """How many hours are due: hour *k* (starting at ``active_since + k h``) once it has
    started by ``now``, and only if it started before ``active_until``."""
    if now < active_since:
        return 0
    started = (now - active_since) // HOUR + 1
    if active_until is None:
        return started
    ran = -((active_since - active_until) // HOUR)  # ceil((until - since) / 1 h)
    return min(started, max(ran, 0))


@dataclasses.dataclass(frozen=True)
class Movement:
    """One ledger movement to post: amount > 0 credits, < 0 charges."""

    key: str
    amount: Decimal
    reason: str
    comment: str
    actor: Actor
    request_id: int | None = None
    cloud_appliance_id: int | None = None
    period_start: dt.datetime | None = None


def hour_movement(*, appliance_id: int, name: str, run: int, hour: int,
                  period_start: dt.datetime, request_id: int, price_per_hour: Decimal,
                  components: list[dict], replaced: Any, actor: Actor) -> Movement:
    """The charge of hour ``hour`` of run ``run`` of an appliance: the request's price per
    hour, or what a plugin's ``qrm_billing_charge`` replaced it with."""
    amount = (quantize_ccus(Decimal(str(replaced))) if replaced is not None
              else quantize_ccus(price_per_hour))
    detail = ", ".join(f"{c['label']} {c['price']}" for c in components
                       if Decimal(c["price"]))
    return Movement(
        key=f"charge:appliance:{appliance_id}:run:{run}:hour:{hour}",
        amount=-amount,
        reason="Cloud Billing",
        comment=f"{plain(amount)} CCUs for appliance {name} (request "
        f"{request_id}), hour from {period_start:%Y-%m-%d %H:%M} UTC"
        + (f": {detail}" if detail and replaced is None else ""),
        actor=actor, request_id=request_id, cloud_appliance_id=appliance_id,
        period_start=period_start)


@dataclasses.dataclass
class Batch:
    """Appliances charged together, and their users (each appears in one batch only,
    unless its appliances alone fill more than one)."""

    user_ids: list[int] = dataclasses.field(default_factory=list)
    appliance_ids: list[int] = dataclasses.field(default_factory=list)
    #: appliance id -> (start, number) of the open run the query found
    runs: dict[int, tuple[dt.datetime, int]] = dataclasses.field(default_factory=dict)


class LedgerService:
    """Posts to the ledger and reads it. The only writer of ``CloudUser.ccus``."""

    def __init__(self, db: Session, *, events: EventService) -> None:
        self.db, self.events = db, events

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> LedgerService:
        return cls(request.dbsession, events=request.find_service(EventService))

    def post(self, user: CloudUser, amount: Decimal, *, key: str, reason: str, comment: str,
             actor: Actor, request_id: int | None = None,
             cloud_appliance_id: int | None = None,
             period_start: dt.datetime | None = None) -> LedgerEntry | None:
        """Write one movement and update the balance, atomically. Returns None (and changes
        nothing) if a movement with ``key`` exists already."""
        entries = self.post_many(user, [Movement(
            key=key, amount=amount, reason=reason, comment=comment, actor=actor,
            request_id=request_id, cloud_appliance_id=cloud_appliance_id,
            period_start=period_start)])
        return entries[0] if entries else None

    def post_many(self, user: CloudUser, movements: list[Movement]) -> list[LedgerEntry]:
        """Write several movements of one user and update the balance once, atomically;
        movements whose key exists already are left out."""
        keys = [movement.key for movement in movements]
        existing = set(self.db.scalars(select(LedgerEntry.idempotency_key).where(
            LedgerEntry.idempotency_key.in_(keys))))
        todo = [movement for movement in movements if movement.key not in existing]
        if not todo:
            return []
        try:
            with self.db.begin_nested():
                balance = self._locked_balance(user)
                entries = []
                now = utcnow()
                for movement in todo:
                    balance = quantize_ccus(balance + quantize_ccus(movement.amount))
                    entries.append(LedgerEntry(
                        idempotency_key=movement.key, user_id=user.id,
                        request_id=movement.request_id,
                        cloud_appliance_id=movement.cloud_appliance_id,
                        amount=quantize_ccus(movement.amount), balance_after=balance,
                        reason=movement.reason, comment=movement.comment,
                        actor=movement.actor.label, period_start=movement.period_start,
                        time=now))
                self.db.execute(update(CloudUser).where(CloudUser.id == user.id)
                                .values(ccus=balance))
                self.db.add_all(entries)
                self.db.flush()
        except IntegrityError:
            # a key committed concurrently: that one counts; post the others one by one
            if len(todo) == 1:
                log.info("ledger key %s exists already; not posted again", todo[0].key)
                return []
            return [entry for movement in todo for entry in self.post_many(user, [movement])]
        if user in self.db:
            self.db.refresh(user, ["ccus"])
        return entries

    def post_to_balance(self, user: CloudUser, target: Decimal, *, key: str, reason: str,
                        comment: str, actor: Actor) -> LedgerEntry | None:
        """One movement that brings the balance to ``target``, computed under the row lock
        (so a charge at the same moment cannot make it miss); None if it is there already."""
        difference = quantize_ccus(target) - self._locked_balance(user)
        if not difference:
            return None
        return self.post(user, difference, key=key, reason=reason, comment=comment,
                         actor=actor)

    def _locked_balance(self, user: CloudUser) -> Decimal:
        # a locking read sees the newest committed balance on every backend; the lock is
        # held until the transaction ends
        query = select(CloudUser.ccus).where(CloudUser.id == user.id)
        if supports_row_locks(self.db):
            query = query.with_for_update()
        return quantize_ccus(self.db.execute(query).scalar_one())

    def balance(self, user: CloudUser) -> Decimal:
        return quantize_ccus(self.db.scalar(
            select(CloudUser.ccus).where(CloudUser.id == user.id)) or 0)

    def ledger_sum(self, user: CloudUser) -> Decimal:
        return quantize_ccus(self.db.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0))
            .where(LedgerEntry.user_id == user.id)) or 0)

    def transactions(self, user: CloudUser | None, *, limit: int = 100,
                     request_id: int | None = None) -> list[LedgerEntry]:
        """Movements of the user (None: everyone's) and of one request, if given, newest
        first."""
        query = select(LedgerEntry)
        if user is not None:
            query = query.where(LedgerEntry.user_id == user.id)
        if request_id is not None:
            query = query.where(LedgerEntry.request_id == request_id)
        return list(self.db.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit)))

    def hour_charges(self, request_id: int) -> dict[int, int]:
        """Appliance id -> how many hour charges the ledger holds for it in this request,
        across all its runs."""
        return dict(self.db.execute(
            select(LedgerEntry.cloud_appliance_id, func.count(LedgerEntry.id))
            .where(LedgerEntry.request_id == request_id,
                   LedgerEntry.cloud_appliance_id.is_not(None),
                   LedgerEntry.period_start.is_not(None))
            .group_by(LedgerEntry.cloud_appliance_id)).all())

    def last_charge_time(self, request_id: int) -> dt.datetime | None:
        """When the request was last charged for an hour (credits booked on it not counted)."""
        return self.db.scalar(select(func.max(LedgerEntry.time)).where(
            LedgerEntry.request_id == request_id, LedgerEntry.period_start.is_not(None)))

    def charged_since(self, since: dt.datetime) -> Decimal:
        """CCUs charged (as a positive number) since ``since``, all users."""
        total = self.db.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.time >= since, LedgerEntry.amount < 0,
            LedgerEntry.period_start.is_not(None)))
        return -quantize_ccus(total or 0)


class BillingService:
    """Implements the cloud's ``BillingPort``: quotes, credits, and hourly charges."""

    def __init__(self, db: Session, *, ledger: LedgerService, prices: PriceService,
                 config: CloudConfigService, events: EventService, plugins: PluginService,
                 request: Any) -> None:
        self.db, self.ledger, self.prices, self.config = db, ledger, prices, config
        self.events, self.plugins, self.request = events, plugins, request

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> BillingService:
        return cls(request.dbsession, ledger=request.find_service(LedgerService),
                   prices=request.find_service(PriceService),
                   config=request.find_service(CloudConfigService),
                   events=request.find_service(EventService),
                   plugins=request.find_service(PluginService), request=request)

    # -- BillingPort ------------------------------------------------------------------------
    def quote(self, spec: RequestSpec) -> Quote:
        return self.prices.quote(spec)

    def balance(self, user: CloudUser) -> Decimal:
        return self.ledger.balance(user)

    def money_value(self, ccus_per_hour: Decimal) -> MoneyValue:
        """``cloud_1000_ccus`` of ``cloud_currency`` buy 1000 CCUs; a month is 31 days, so the
        figure is never below a real month's bill."""
        hour = Decimal(ccus_per_hour) * Decimal(self.config["cloud_1000_ccus"]) / 1000
        return MoneyValue(currency=self.config["cloud_currency"], hour=hour, day=hour * 24,
                          month=hour * 24 * 31)

    def has_history(self, user: CloudUser, *, request_id: int | None = None) -> bool:
        query = select(LedgerEntry.id).where(LedgerEntry.user_id == user.id)
        if request_id is not None:
            query = query.where(LedgerEntry.request_id == request_id)
        return self.db.scalar(query.limit(1)) is not None

    def credit(self, user: CloudUser, amount: Any, *, reason: str, comment: str,
               actor: Actor, request_id: int | None = None,
               key: str | None = None) -> LedgerEntry | None:
        """An admin credit (> 0) or debit (< 0): one ledger row, balance changed with it."""
        self._admin_only(actor)
        try:
            amount = quantize_ccus(Decimal(str(amount)))
        except InvalidOperation:
            raise ValidationError(_("amount must be a number"), field="amount") from None
        if amount == 0:
            raise ValidationError(_("amount must not be zero"), field="amount")
        if abs(amount) >= Decimal("1e12"):
            raise ValidationError(_("amount is too large"), field="amount")
        if request_id is not None and self.db.scalar(select(CloudRequest.user_id).where(
                CloudRequest.id == request_id)) != user.id:
            raise NotFound(_("${name} has no request ${id}",
                             mapping={"name": user.name, "id": request_id}),
                           field="request_id")
        reason = check_text(reason, field="reason", max_length=50, required=True)
        comment = check_text(comment, field="comment", max_length=255)
        entry = self.ledger.post(user, amount, key=key or f"manual:{uuid.uuid4()}",
                                 reason=reason, comment=comment, actor=actor,
                                 request_id=request_id)
        if entry is not None:
            self.events.log(source="billing", name="ledger.credit" if amount > 0 else
                            "ledger.debit", actor=actor, obj=user,
                            message=f"{'+' if amount > 0 else ''}{plain(amount)} CCUs for "
                            f"{user.name} ({reason}); balance {plain(entry.balance_after)}")
        return entry

    def set_balance(self, user: CloudUser, target: Any, *, comment: str,
                    actor: Actor) -> Decimal:
        """Bring the balance to ``target`` with one credit or debit row (none if equal)."""
        try:
            target = quantize_ccus(Decimal(str(target)))
        except InvalidOperation:
            raise ValidationError(_("ccus must be a number"), field="ccus") from None
        self._admin_only(actor)
        entry = self.ledger.post_to_balance(
            user, target, key=f"manual:{uuid.uuid4()}", reason="Balance set by admin",
            comment=check_text(comment, field="comment", max_length=255)
            or f"balance set to {plain(target)}", actor=actor)
        if entry is not None:
            self.events.log(source="billing", name="ledger.set", actor=actor, obj=user,
                            message=f"balance of {user.name} set to {plain(target)} "
                            f"({'+' if entry.amount > 0 else ''}{plain(entry.amount)} CCUs)")
        return self.ledger.balance(user)

    @staticmethod
    def _admin_only(actor: Actor) -> None:
        if not actor.is_admin:
            raise PermissionDenied(_("only an admin may change balances"))

    # -- charging ---------------------------------------------------------------------------
    def charge_appliance(self, cloud_appliance: CloudAppliance, *, now: dt.datetime,
                         actor: Actor = BILLING_ACTOR) -> int:
        """Charge every hour of ``cloud_appliance`` that has started by ``now`` (and before
        it stopped) and is not charged yet. Hour *k* starts at ``active_since + k hours``."""
        if cloud_appliance.active_since is None:
            return 0
        due = due_hours(cloud_appliance.active_since, cloud_appliance.active_until, now)
        if not self.config["cloud_billing_enabled"]:
            # hours that run while billing is off are free, also after it is on again
            cloud_appliance.hours_charged = max(cloud_appliance.hours_charged, due)
            return 0
        movements = [self._hour_movement(cloud_appliance, hour, actor=actor)
                     for hour in range(cloud_appliance.hours_charged, due)]
        entries = self.ledger.post_many(cloud_appliance.request.user, movements) \
            if movements else []
        cloud_appliance.hours_charged = max(cloud_appliance.hours_charged, due)
        return len(entries)

    def _hour_movement(self, cloud_appliance: CloudAppliance, hour: int, *,
                       actor: Actor) -> Movement:
        cloud_request = cloud_appliance.request
        period_start = cloud_appliance.active_since + hour * HOUR
        components = list(cloud_request.price_breakdown or [])
        replaced = self.plugins.hook.qrm_billing_charge(
            request=self.request, cloud_appliance=cloud_appliance, period_start=period_start,
            components=components)
        return hour_movement(
            appliance_id=cloud_appliance.id, name=cloud_appliance.name,
            run=cloud_appliance.run, hour=hour, period_start=period_start,
            request_id=cloud_request.id, price_per_hour=cloud_request.price_per_hour,
            components=components, replaced=replaced, actor=actor)

    def charge_due_hours(self, *, now: dt.datetime | None = None) -> int:
        """Charge what is due for every appliance that runs, batch after batch in this
        transaction; deprovision requests whose owner has no credit left. Returns the
        number of hours charged."""
        now = now or utcnow()
        charged = sum(self.charge_batch(batch, now=now) for batch in self.due_batches(now))
        self.deprovision_exhausted()
        return charged

    def running_appliance_ids(self) -> list[int]:
        """Appliances whose run is open. A run is charged in full when it closes (pause,
        teardown), so only open runs can have hours due."""
        return list(self.db.scalars(
            select(CloudAppliance.id).where(CloudAppliance.active_since.is_not(None),
                                            CloudAppliance.active_until.is_(None))
            .order_by(CloudAppliance.id)))

    def due_batches(self, now: dt.datetime, *, size: int = BATCH_SIZE) -> list[Batch]:
        """Every open run with an hour due by ``now`` (started, not yet charged), found by
        one query, in batches of about ``size`` appliances: a user's appliances stay in
        one batch unless they alone are more than ``size``."""
        rows = self.db.execute(
            select(CloudAppliance.id, CloudRequest.user_id, CloudAppliance.active_since,
                   CloudAppliance.run, CloudAppliance.hours_charged)
            .join(CloudRequest, CloudRequest.id == CloudAppliance.request_id)
            .where(CloudAppliance.active_since.is_not(None),
                   CloudAppliance.active_until.is_(None))
            .order_by(CloudRequest.user_id, CloudAppliance.id)).all()
        by_user: dict[int, list[Any]] = {}
        for row in rows:
            if due_hours(row.active_since, None, now) > row.hours_charged:
                by_user.setdefault(row.user_id, []).append(row)
        batches: list[Batch] = []
        current = Batch()
        for user_id, runs in by_user.items():
            if current.appliance_ids and len(current.appliance_ids) + len(runs) > size:
                batches.append(current)
                current = Batch()
            current.user_ids.append(user_id)
            current.appliance_ids.extend(row.id for row in runs)
            current.runs.update((row.id, (row.active_since, row.run)) for row in runs)
            if len(current.appliance_ids) >= size:
                batches.append(current)
                current = Batch()
        if current.appliance_ids:
            batches.append(current)
        return batches

    def charge_batch(self, batch: Batch, *, now: dt.datetime,
                     actor: Actor = BILLING_ACTOR) -> int:
        """Charge every due hour of the batch's appliances, in this transaction: their rows
        and their users' rows locked (one lock each, in id order), the ledger rows inserted
        together, each balance updated once. The same keys as ``charge_appliance``: an hour
        charged already (by anyone) is left out. Returns the number of hours charged."""
        db = self.db
        locks = supports_row_locks(db)
        # re-read under the lock: a run that closed meanwhile was charged in full when it
        # closed, one that started meanwhile (a new run number) is the next run's
        query = (select(CloudAppliance.id, CloudAppliance.request_id, CloudAppliance.name,
                        CloudAppliance.run, CloudAppliance.hours_charged,
                        CloudAppliance.active_until.is_(None).label("open"))
                 .where(CloudAppliance.id.in_(batch.appliance_ids))
                 .order_by(CloudAppliance.id))
        rows = db.execute(query.with_for_update() if locks else query).all()
        query = (select(CloudUser.id, CloudUser.ccus)
                 .where(CloudUser.id.in_(batch.user_ids)).order_by(CloudUser.id))
        balances = {user_id: quantize_ccus(ccus) for user_id, ccus in db.execute(
            query.with_for_update() if locks else query)}
        appliances, due = [], {}
        for row in rows:
            since, run = batch.runs[row.id]
            hours = due_hours(since, None, now)
            if row.open and row.run == run and hours > row.hours_charged:
                appliances.append((row, since))
                due[row.id] = hours
        if not due:
            return 0
        if not self.config["cloud_billing_enabled"]:
            # hours that run while billing is off are free, also after it is on again
            self._set_hours_charged(due)
            return 0
        movements = self._batch_movements(appliances, due, actor=actor)
        entries = self._new_entries(movements, balances)
        charged_users = sorted({entry["user_id"] for entry in entries})
        try:
            with db.begin_nested():
                if entries:  # core executemany: no ORM bookkeeping per row
                    db.execute(LedgerEntry.__table__.insert(), entries)
                    users = CloudUser.__table__
                    db.execute(users.update().where(users.c.id == bindparam("b_id"))
                               .values(ccus=bindparam("b_ccus")),
                               [{"b_id": user_id, "b_ccus": balances[user_id]}
                                for user_id in charged_users])
                self._set_hours_charged(due)
        except IntegrityError:
            # a key committed concurrently (by a run that read before our locks): that one
            # counts; the batch is charged appliance by appliance, each key on its own
            log.info("a charge of the batch exists already; charging it one by one")
            return sum(self.charge_appliance(db.get(CloudAppliance, appliance_id), now=now,
                                             actor=actor) for appliance_id in due)
        for user_id in charged_users:
            user = db.identity_map.get(identity_key(CloudUser, user_id))
            if user is not None:
                db.expire(user, ["ccus"])
        return len(entries)

    def _batch_movements(self, appliances: list[Any], due: dict[int, int], *,
                         actor: Actor) -> list[tuple[int, Movement]]:
        """(user id, movement) of every due hour, in appliance and hour order."""
        db = self.db
        requests = {row.id: row for row in db.execute(
            select(CloudRequest.id, CloudRequest.user_id, CloudRequest.price_per_hour,
                   CloudRequest.price_breakdown)
            .where(CloudRequest.id.in_({row.request_id for row, _since in appliances})))}
        hook = self.plugins.hook.qrm_billing_charge
        # a plugin may replace any hour's price: it gets the appliance's row
        hooked = {ca.id: ca for ca in db.scalars(select(CloudAppliance).where(
            CloudAppliance.id.in_(list(due))))} if hook.get_hookimpls() else None
        movements = []
        for row, since in appliances:
            cloud_request = requests[row.request_id]
            for hour in range(row.hours_charged, due[row.id]):
                period_start = since + hour * HOUR
                components = list(cloud_request.price_breakdown or [])
                replaced = None if hooked is None else hook(
                    request=self.request, cloud_appliance=hooked[row.id],
                    period_start=period_start, components=components)
                movements.append((cloud_request.user_id, hour_movement(
                    appliance_id=row.id, name=row.name, run=row.run, hour=hour,
                    period_start=period_start, request_id=cloud_request.id,
                    price_per_hour=cloud_request.price_per_hour, components=components,
                    replaced=replaced, actor=actor)))
        return movements

    def _new_entries(self, movements: list[tuple[int, Movement]],
                     balances: dict[int, Decimal]) -> list[dict[str, Any]]:
        """The ledger rows of the movements not posted yet; ``balances`` moves with them."""
        existing: set[str] = set()
        keys = [movement.key for _user_id, movement in movements]
        for start in range(0, len(keys), KEY_CHUNK):
            existing.update(self.db.scalars(select(LedgerEntry.idempotency_key).where(
                LedgerEntry.idempotency_key.in_(keys[start:start + KEY_CHUNK]))))
        time = utcnow()
        entries = []
        for user_id, movement in movements:
            if movement.key in existing:
                continue
            amount = quantize_ccus(movement.amount)
            balances[user_id] = quantize_ccus(balances[user_id] + amount)
            entries.append({
                "idempotency_key": movement.key, "user_id": user_id,
                "request_id": movement.request_id,
                "cloud_appliance_id": movement.cloud_appliance_id, "time": time,
                "period_start": movement.period_start, "amount": amount,
                "balance_after": balances[user_id], "reason": movement.reason,
                "comment": movement.comment, "actor": movement.actor.label})
        return entries

    def _set_hours_charged(self, due: dict[int, int]) -> None:
        # core statements: the transaction manager must be told the session wrote
        mark_changed(self.db)
        appliances = CloudAppliance.__table__
        self.db.execute(appliances.update().where(appliances.c.id == bindparam("b_id"))
                        .values(hours_charged=bindparam("b_hours")),
                        [{"b_id": appliance_id, "b_hours": hours}
                         for appliance_id, hours in due.items()])
        for appliance_id in due:
            cloud_appliance = self.db.identity_map.get(identity_key(CloudAppliance,
                                                                    appliance_id))
            if cloud_appliance is not None:
                self.db.expire(cloud_appliance, ["hours_charged"])

    def deprovision_exhausted(self) -> list[CloudRequest]:
        """Active requests of users whose balance is at or below zero are deprovisioned."""
        from engine.cloud.services import CloudRequestService

        requests = list(self.db.scalars(
            select(CloudRequest).join(CloudUser).where(
                CloudRequest.status.in_([RequestStatus.ACTIVE, RequestStatus.APPROVED]),
                CloudUser.ccus <= 0)))
        service = self.request.find_service(CloudRequestService)
        for cloud_request in requests:
            self.events.log(source="billing", name="credit.exhausted", actor=BILLING_ACTOR,
                            obj=cloud_request, level=EventLevel.WARNING,
                            message=f"{cloud_request.user.name} has "
                            f"{cloud_request.user.ccus} CCUs left; request {cloud_request.id} "
                            "is deprovisioned")
            service.transition(cloud_request, RequestStatus.DEPROVISION, actor=BILLING_ACTOR,
                               reason="credit exhausted")
        return requests


def charge_job(request: Any) -> int:
    """``billing.charge``: charge every due hour (late ones too), batch by batch, each batch
    in its own transaction (a failed batch is charged again appliance by appliance, so a
    failure stays with its appliance; no user row stays locked for the whole run); then
    deprovision requests whose owner has no credit left. Returns the hours charged."""
    from engine.scheduler.runner import transactions

    now = utcnow()
    charged = 0
    # this job's own request never touches the database; the run's transactions share one
    with transactions(request.registry) as run:
        batches = run(lambda r: r.find_service(BillingService).due_batches(now))
        for batch in batches:
            try:
                charged += run(_charge_batch, batch=batch, now=now)
            except Exception:
                log.exception("charging a batch of %s appliances failed; charging them one "
                              "by one", len(batch.appliance_ids))
                charged += _charge_one_by_one(run, batch.appliance_ids, now)
        run(lambda r: r.find_service(BillingService).deprovision_exhausted())
    return charged


def _charge_batch(request: Any, batch: Batch, now: dt.datetime) -> int:
    return request.find_service(BillingService).charge_batch(batch, now=now)


def _charge_one_by_one(run: Any, appliance_ids: list[int], now: dt.datetime) -> int:
    charged = 0
    for appliance_id in appliance_ids:
        try:
            charged += run(_charge_one, appliance_id=appliance_id, now=now)
        except Exception:
            log.exception("charging appliance %s failed; it is charged at the next run",
                          appliance_id)
    return charged


def _charge_one(request: Any, appliance_id: int, now: dt.datetime) -> int:
    service = request.find_service(BillingService)
    cloud_appliance = service.db.get(CloudAppliance, appliance_id)
    return service.charge_appliance(cloud_appliance, now=now) if cloud_appliance else 0
