"""The benchmark data set: a cloud at scale, written with bulk inserts (not through the
services one row at a time).

``python -m benchmarks --dataset [--requests N --resources N]`` builds it. The default size is
that of issue 9: 10,000 resources (1 % of them hypervisor hosts, the rest VMs), 100,000 requests
of 1,000 users (10 % active, the rest done, denied, new, no-resources, in deprovision or being
provisioned), one appliance for each request that got one (3 % of the active ones have a second,
paused appliance; 10 % of the active ones were resumed and are in their second run), about
290,000 ledger rows (a credit per user, every charged hour) and about 380,000 events. The demo
cloud (``load_demo``: kernels, images, types, products, ``admin`` and ``demo``) is the base.

Every active appliance has its last hour due (hour *h* started, hours 0 … *h*-1 charged), so a
billing run at the data set's time charges one hour each. The data set's time is the moment it
was built (``meta["now"]``); a benchmark reads it through an offset clock (``clock_file``).

Balances equal the ledger's sum and each row's ``balance_after`` follows the last, as the
ledger service writes them. SQLite files are cached under ``var/bench-dataset/`` by a hash of
the parameters, the migration head and this file, and copied for each use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import pathlib
import random
import shutil
import time
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench-dataset"
#: the demo's passwords in the data set (admin and demo); the users' own cannot log in
PASSWORD = "bench-dataset-password"  # noqa: S105 (a benchmark's throw-away password)
CHUNK = 5000
HOUR = dt.timedelta(hours=1)

#: request statuses and their shares
SHARES = (("done", 0.62), ("active", 0.10), ("denied", 0.06), ("new", 0.06),
          ("no-resources", 0.12), ("deprovision", 0.02), ("approved", 0.02))


@dataclasses.dataclass(frozen=True)
class Size:
    requests: int = 100_000
    resources: int = 10_000
    users: int = 1_000
    seed: int = 9

    @classmethod
    def scaled(cls, requests: int) -> Size:
        """The default mix at ``requests`` requests (resources and users in proportion)."""
        return cls(requests=requests, resources=max(10, requests // 10),
                   users=max(5, requests // 100))


def migration_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Config(str(ROOT / "development.ini"))).get_current_head()


def fingerprint(size: Size) -> str:
    source = pathlib.Path(__file__).read_bytes()
    data = json.dumps([dataclasses.asdict(size), migration_head(),
                       hashlib.sha256(source).hexdigest()])
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def clock_file(meta: dict[str, Any], folder: pathlib.Path) -> pathlib.Path:
    """An offset-clock file (``qrm.clock = offset:PATH``) that puts now at the data set's time
    (plus the time since this call)."""
    path = folder / "dataset-clock"
    built = dt.datetime.fromisoformat(meta["now"])
    path.write_text(f"{(built - dt.datetime.now(dt.UTC)).total_seconds()!r}\n")
    return path


def sqlite_dataset(size: Size, target: pathlib.Path, *, log: Any = print) -> dict[str, Any]:
    """The data set as the SQLite file ``target``: a copy of the cached build (built first if
    there is none for these parameters). Returns its meta data (counts, time)."""
    key = fingerprint(size)
    cached, meta_path = CACHE / f"dataset-{key}.sqlite", CACHE / f"dataset-{key}.json"
    if not (cached.exists() and meta_path.exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        started = time.perf_counter()
        meta = build(f"sqlite:///{partial}", size, state=CACHE / f"sim-{key}.sqlite")
        _checkpoint(partial)
        os.replace(partial, cached)
        meta_path.write_text(json.dumps(meta))
        log(f"  built the data set in {time.perf_counter() - started:.1f} s: {describe(meta)}"
            f" (cached as {cached})")
    shutil.copyfile(cached, target)
    return json.loads(meta_path.read_text())


def _checkpoint(path: pathlib.Path) -> None:
    """Fold the write-ahead log into the file, so that one file is the whole data set."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()


def describe(meta: dict[str, Any]) -> str:
    counts = meta["counts"]
    return ", ".join(f"{counts[name]:,} {name.replace('_', ' ')}" for name in (
        "resources", "requests", "active_requests", "cloud_appliances", "open_runs",
        "ledger_rows", "events", "users"))


# -- the builder ---------------------------------------------------------------------------
def build(url: str, size: Size, *, state: pathlib.Path) -> dict[str, Any]:
    """Build the data set into the (emptied) database at ``url``; returns its meta data."""
    from benchmarks.__main__ import make_registry, migrate
    from engine.cloud.demo import load_demo
    from engine.db import get_engine
    from engine.scheduler.runner import run_in_transaction

    logging.getLogger("spyne.util.appreg").setLevel(logging.ERROR)  # the faces built again
    engine = get_engine({"sqlalchemy.url": url})
    migrate(engine, fresh=not url.startswith("sqlite"))
    engine.dispose()
    state.unlink(missing_ok=True)
    registry = make_registry(url, str(state), kick="inline")
    previous = os.environ.get("QRM_DEMO_PASSWORD")
    os.environ["QRM_DEMO_PASSWORD"] = PASSWORD
    try:
        run_in_transaction(registry, load_demo)
    finally:
        if previous is None:
            os.environ.pop("QRM_DEMO_PASSWORD", None)
        else:
            os.environ["QRM_DEMO_PASSWORD"] = previous
    engine = registry["dbsession_factory"].kw["bind"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with engine.begin() as connection:
        counts = _Builder(connection, size, now).run()
    if engine.dialect.name == "postgresql":
        _reset_sequences(engine)
    engine.dispose()
    return {"now": now.isoformat(), "size": dataclasses.asdict(size), "counts": counts}


def _reset_sequences(engine: Any) -> None:
    from engine.db import Base

    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            if "id" in table.c and table.c.id.autoincrement is not False and \
                    table.c.id.type.python_type is int:
                statement = (f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 (our own tables)
                             f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)")
                connection.execute(text(statement))  # our own tables' names only


class _Writer:
    """Buffers rows of one table and inserts them CHUNK at a time (executemany)."""

    def __init__(self, connection: Any, table: Any, before: tuple[_Writer, ...] = ()) -> None:
        self.connection, self.table, self.rows, self.count = connection, table, [], 0
        #: writers whose rows this table refers to: flushed first
        self.before = before

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        if len(self.rows) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        for writer in self.before:
            writer.flush()
        if self.rows:
            self.connection.execute(self.table.insert(), self.rows)
            self.count += len(self.rows)
            self.rows = []


class _Builder:
    def __init__(self, connection: Any, size: Size, now: dt.datetime) -> None:
        self.c, self.size, self.now = connection, size, now
        self.random = random.Random(size.seed)

    def next_id(self, model: Any) -> int:
        return (self.c.execute(select(func.max(model.id))).scalar() or 0) + 1

    def writer(self, model: Any, *before: _Writer) -> _Writer:
        return _Writer(self.c, model.__table__, before)

    def run(self) -> dict[str, int]:  # noqa: PLR0912, PLR0915 (one pass over the data set)
        from billing.models import LedgerEntry
        from engine.cloud.models import (
            CloudAppliance,
            CloudApplianceState,
            CloudRequest,
            CloudUser,
            CloudUserLimits,
            CloudUserStatus,
            ProvisionStep,
            RequestStatus,
        )
        from engine.datacenter.models import (
            Appliance,
            ApplianceState,
            Image,
            Kernel,
            Resource,
            ResourceState,
            VirtualizationKind,
            VirtualizationType,
        )
        from engine.events.models import Event, EventLevel
        from engine.security import hash_password

        c, rnd, now, size = self.c, self.random, self.now, self.size
        kernel_id = c.execute(select(Kernel.id).order_by(Kernel.id)).scalars().first()
        image_id = c.execute(select(Image.id).where(Image.is_master.is_(True))
                             .order_by(Image.id)).scalars().first()
        vm_type = c.execute(select(VirtualizationType).where(
            VirtualizationType.kind == VirtualizationKind.VM)
            .order_by(VirtualizationType.id)).first()
        host_type_id = vm_type.host_type_id or vm_type.id

        # users ------------------------------------------------------------------------------
        users, limits = self.writer(CloudUser), self.writer(CloudUserLimits)
        first_user = self.next_id(CloudUser)
        password_hash = hash_password(PASSWORD)
        user_ids = list(range(first_user, first_user + size.users))
        for n, user_id in enumerate(user_ids):
            users.add(id=user_id, name=f"user{n:05d}", password_hash=password_hash,
                      email=f"user{n:05d}@bench.example", forename="Bench", lastname=f"{n}",
                      status=CloudUserStatus.ACTIVE if n % 50 else CloudUserStatus.DISABLED,
                      ccus=Decimal(0), language="de" if n % 3 == 0 else "en",
                      created_at=now - dt.timedelta(days=400))
            limits.add(user_id=user_id)
        users.flush()
        limits.flush()

        # resources: hosts, then VMs -----------------------------------------------------------
        resources = self.writer(Resource)
        first_resource = self.next_id(Resource)
        hosts = max(1, size.resources // 100)
        host_ids = list(range(first_resource, first_resource + hosts))
        for n, resource_id in enumerate(host_ids):
            resources.add(id=resource_id, name=f"host{n:04d}", mac=_mac(0xA0, n),
                          ip=f"10.{100 + n // 65000}.{n // 250 % 250}.{n % 250 + 1}",
                          hostname=f"host{n:04d}.bench.example", kind=VirtualizationKind.HOST,
                          virtualization_type_id=host_type_id, state=ResourceState.ACTIVE,
                          cpus=64, memory_mb=262_144, nics=2, last_report_at=now,
                          created_at=now - dt.timedelta(days=500))
        vm_ids = list(range(first_resource + hosts, first_resource + size.resources))
        resources.flush()

        # requests, appliances, ledger, events ------------------------------------------------
        statuses = [status for status, share in SHARES
                    for _ in range(round(share * size.requests))]
        statuses = (statuses + ["done"] * size.requests)[:size.requests]
        rnd.shuffle(statuses)
        # the VMs (the ones in use first, then idle, off and broken ones) -----------------
        used = statuses.count("active")
        for n, resource_id in enumerate(vm_ids):
            state = ResourceState.ACTIVE if n < used else (
                ResourceState.IDLE, ResourceState.IDLE, ResourceState.OFF,
                ResourceState.ERROR)[n % 4]
            resources.add(id=resource_id, name=f"vm{n:05d}", mac=_mac(0x52, n),
                          ip=f"10.{(n // 62500) % 100}.{n // 250 % 250}.{n % 250 + 1}",
                          hostname=f"vm{n:05d}.bench.example", kind=VirtualizationKind.VM,
                          virtualization_type_id=vm_type.id, host_id=host_ids[n % hosts],
                          state=state, cpus=1 + n % 4, memory_mb=1024 * (1 + n % 4), nics=1,
                          last_report_at=now - dt.timedelta(seconds=n % 60),
                          created_at=now - dt.timedelta(days=30))
        resources.flush()

        requests, appliances = self.writer(CloudRequest), self.writer(Appliance)
        cas, events = self.writer(CloudAppliance, requests, appliances), self.writer(Event)
        first_request = self.next_id(CloudRequest)
        next_ca, next_app = self.next_id(CloudAppliance), self.next_id(Appliance)
        charges: dict[int, list[dict[str, Any]]] = {user_id: [] for user_id in user_ids}
        vm_used: list[int] = []
        open_runs = 0
        breakdown = [{"type": "resource", "quantity": vm_type.name, "label": f"type "
                      f"{vm_type.name}", "price": "2"},
                     {"type": "cpu", "quantity": "1", "label": "1 CPU(s)", "price": "1"}]
        span = 365 * 24 * 3600
        for n, status in enumerate(statuses):
            request_id = first_request + n
            user_id = rnd.choice(user_ids)
            user = f"user:user{user_id - first_user:05d}"
            # ids grow with time: the newest requests are the active ones' age at most
            created = now - dt.timedelta(seconds=span * (1 - n / size.requests) + 3600 * 24)
            if status in ("active", "approved", "deprovision"):
                created = now - dt.timedelta(days=rnd.randint(2, 30))
            start, stop = created, created + dt.timedelta(days=rnd.randint(2, 60))
            if status == "active":
                stop = max(stop, now + dt.timedelta(days=rnd.randint(1, 30)))
            price = Decimal(3)
            appliance_rows = []
            if status == "active":
                hours = rnd.randint(1, 19)
                since = now - hours * HOUR - dt.timedelta(minutes=rnd.randint(1, 59))
                resumed = rnd.random() < 0.10
                resource_id = vm_ids[len(vm_used)] if len(vm_used) < len(vm_ids) else None
                if resource_id is not None:
                    vm_used.append(resource_id)
                appliance_rows.append({
                    "state": CloudApplianceState.ACTIVE, "step": ProvisionStep.RUNNING,
                    "active_since": since, "active_until": None, "run": 1 if resumed else 0,
                    "hours_charged": hours, "resource_id": resource_id,
                    "engine": ApplianceState.ACTIVE,
                    "earlier": rnd.randint(1, 3) if resumed else 0})
                open_runs += 1
                if rnd.random() < 0.03:
                    paused_since = since - dt.timedelta(hours=rnd.randint(2, 6))
                    appliance_rows.append({
                        "state": CloudApplianceState.PAUSED, "step": ProvisionStep.PAUSED,
                        "active_since": paused_since, "active_until": paused_since + HOUR * 1.5,
                        "run": 0, "hours_charged": 2, "resource_id": None,
                        "engine": ApplianceState.STOPPED, "earlier": 0})
            elif status in ("done", "deprovision"):
                hours = rnd.randint(1, 5) if status == "done" else rnd.randint(1, 3)
                since = start + dt.timedelta(minutes=rnd.randint(1, 30))
                appliance_rows.append({
                    "state": CloudApplianceState.REMOVED if status == "done"
                    else CloudApplianceState.DEPROVISIONING,
                    "step": ProvisionStep.RELEASED if status == "done" else ProvisionStep.STOPPING,
                    "active_since": since, "active_until": since + (hours - 0.5) * HOUR, "run": 0,
                    "hours_charged": hours, "resource_id": None,
                    "engine": None if status == "done" else ApplianceState.STOPPING, "earlier": 0})
            elif status == "approved":
                appliance_rows.append({
                    "state": CloudApplianceState.PROVISIONING, "step": ProvisionStep.STARTING,
                    "active_since": None, "active_until": None, "run": 0, "hours_charged": 0,
                    "resource_id": None, "engine": ApplianceState.STARTING, "earlier": 0})
            requests.add(
                id=request_id, user_id=user_id, status=RequestStatus(status),
                created_at=created, start=start, stop=stop, kernel_id=kernel_id,
                image_id=image_id, virtualization_type_id=vm_type.id, memory_mb=512 * (n % 4 + 1),
                cpus=n % 4 + 1, disk_mb=5000, network_cards=1, quantity=len(appliance_rows) or 1,
                ha=False, clone_on_deploy=True, puppet_groups=[], price_per_hour=price,
                price_breakdown=breakdown,
                status_reason={"denied": "refused", "no-resources": "no machine fits",
                               "deprovision": "stop time reached"}.get(status, ""),
                status_changed_at=created + dt.timedelta(minutes=5), next_step_at=None,
                failed_attempts=0)
            for index, row in enumerate(appliance_rows, start=1):
                ca_id, app_id = next_ca, None
                next_ca += 1
                if row["engine"] is not None:
                    app_id = next_app
                    next_app += 1
                    appliances.add(id=app_id, name=f"bench-app-{ca_id}", kernel_id=kernel_id,
                                   image_id=image_id, resource_id=row["resource_id"],
                                   virtualization_type_id=vm_type.id, cpus=1, memory_mb=512,
                                   state=row["engine"], started_at=row["active_since"],
                                   capabilities={})
                cas.add(id=ca_id, request_id=request_id, index=index,
                        name=f"bench-{request_id}-{index}", state=row["state"],
                        step=row["step"], appliance_id=app_id, resource_id=row["resource_id"],
                        disk_mb=5000, active_since=row["active_since"],
                        active_until=row["active_until"], run=row["run"],
                        hours_charged=row["hours_charged"], comment="", error="")
                for run, hours, since in ((row["run"] - 1, row["earlier"],
                                           (row["active_since"] or now) - 3 * 24 * HOUR),
                                          (row["run"], row["hours_charged"],
                                           row["active_since"])):
                    for hour in range(hours if run >= 0 and since is not None else 0):
                        period = since + hour * HOUR
                        charges[user_id].append({
                            "idempotency_key": f"charge:appliance:{ca_id}:run:{run}:hour:{hour}",
                            "request_id": request_id, "cloud_appliance_id": ca_id,
                            "time": period + dt.timedelta(seconds=5), "period_start": period,
                            "amount": -price, "reason": "Cloud Billing",
                            "comment": f"3 CCUs for appliance bench-{request_id}-{index} "
                            f"(request {request_id}), hour from {period:%Y-%m-%d %H:%M} UTC: "
                            f"type {vm_type.name} 2, 1 CPU(s) 1",
                            "actor": "system:billing"})
            self._request_events(events, request_id, status, user=user, created=created,
                                 appliance_rows=appliance_rows, levels=EventLevel)
        requests.flush()
        appliances.flush()
        cas.flush()

        # the ledger: each user's credit, then its charges in time order ------------------
        ledger = self.writer(LedgerEntry)
        balances = {}
        for user_id in user_ids:
            rows = sorted(charges[user_id], key=lambda row: row["time"])
            spent = -sum((row["amount"] for row in rows), Decimal(0))
            credit = spent + rnd.randint(100, 5000)
            balance = credit
            ledger.add(idempotency_key=f"bench-credit:{user_id}", user_id=user_id,
                       request_id=None, cloud_appliance_id=None,
                       time=now - dt.timedelta(days=399), period_start=None, amount=credit,
                       balance_after=balance, reason="Starting credit", comment="",
                       actor="system:bench")
            events.add(time=now - dt.timedelta(days=399), level=EventLevel.NOTICE,
                       source="billing", name="ledger.credit",
                       message=f"+{credit} CCUs (starting credit); balance {credit}",
                       actor="system:bench", object_type="cloud_user", object_id=user_id)
            for row in rows:
                balance += row["amount"]
                ledger.add(user_id=user_id, balance_after=balance, **row)
            balances[user_id] = balance
        ledger.flush()
        events.flush()
        self.c.execute(CloudUser.__table__.update().where(
            CloudUser.__table__.c.id == _bind("uid")).values(ccus=_bind("ccus")),
            [{"uid": user_id, "ccus": balance} for user_id, balance in balances.items()])
        counts = {
            "users": size.users, "resources": size.resources, "requests": size.requests,
            "active_requests": statuses.count("active"), "cloud_appliances": cas.count,
            "open_runs": open_runs, "ledger_rows": ledger.count, "events": events.count,
        }
        return counts

    def _request_events(self, events: _Writer, request_id: int, status: str, *, user: str,
                        created: dt.datetime, appliance_rows: list[dict[str, Any]],
                        levels: Any) -> None:
        """What the services log for a request that got this far."""
        def log(name: str, actor: str, minutes: float, message: str, *,
                level: Any = levels.NOTICE, object_type: str = "cloud_request",
                object_id: int = request_id) -> None:
            events.add(time=created + dt.timedelta(minutes=minutes), level=level,
                       source="cloud", name=name, message=message, actor=actor,
                       object_type=object_type, object_id=object_id)

        log("request.submitted", user, 0, f"request {request_id} submitted")
        if status == "new":
            return
        if status == "denied":
            log("request.denied", "admin:admin", 30, f"request {request_id} denied: refused")
            return
        log("request.approved", "admin:admin", 20, f"request {request_id} approved")
        if status == "no-resources":
            log("request.no-resources", "system:provisioning", 21,
                f"request {request_id}: no machine fits", level=levels.WARNING)
            return
        if status == "approved":
            return
        log("appliance.active", "system:provisioning", 25,
            f"appliance of request {request_id} is active")
        if len(appliance_rows) > 1:
            log("appliance.paused", user, 60, f"an appliance of request {request_id} paused")
        if status == "deprovision" or (status == "done" and request_id % 2):
            log("request.deprovision", "system:cloud", 60 * 5,
                f"request {request_id}: stop time reached")
        if status == "done":
            log("request.done", "system:provisioning", 60 * 5 + 3,
                f"request {request_id} is done")


def _mac(prefix: int, n: int) -> str:
    return f"{prefix:02x}:54:{(n >> 24) & 255:02x}:{(n >> 16) & 255:02x}:" \
           f"{(n >> 8) & 255:02x}:{n & 255:02x}"


def _bind(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name)


def check_counts(url: str) -> dict[str, int]:
    """The data set's counts as the database has them (for tests)."""
    from billing.models import LedgerEntry
    from engine.cloud.models import CloudAppliance, CloudRequest, CloudUser, RequestStatus
    from engine.datacenter.models import Resource
    from engine.db import get_engine
    from engine.events.models import Event

    engine = get_engine({"sqlalchemy.url": url})
    with engine.connect() as c:
        def count(query: Any) -> int:
            return c.execute(query).scalar()

        result = {
            "resources": count(select(func.count(Resource.id)).where(
                Resource.mac.like("__:54:%"))),
            "requests": count(select(func.count(CloudRequest.id))),
            "active_requests": count(select(func.count(CloudRequest.id)).where(
                CloudRequest.status == RequestStatus.ACTIVE)),
            "open_runs": count(select(func.count(CloudAppliance.id)).where(
                CloudAppliance.active_since.is_not(None),
                CloudAppliance.active_until.is_(None))),
            "ledger_rows": count(select(func.count(LedgerEntry.id))),
            "events": count(select(func.count(Event.id))),
            "users": count(select(func.count(CloudUser.id))),
            "unbalanced_users": count(select(func.count()).select_from(
                select(CloudUser.id).join(LedgerEntry, LedgerEntry.user_id == CloudUser.id)
                .group_by(CloudUser.id, CloudUser.ccus)
                .having(func.sum(LedgerEntry.amount) != CloudUser.ccus).subquery())),
        }
    engine.dispose()
    return result
