"""The set-based billing run: due hours found by one query, charged in batches (one lock per
user, the ledger rows inserted together, each balance updated once), exactly once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from billing import services as billing_services
from billing.models import LedgerEntry
from billing.services import BillingService, LedgerService, charge_job
from engine.cloud.models import (
    CloudAppliance,
    CloudApplianceState,
    CloudRequest,
    CloudUser,
    ProvisionStep,
    RequestStatus,
)
from engine.datacenter.models import Image, Kernel, VirtualizationType
from engine.db import utcnow
from engine.plugins.hookspecs import hookimpl
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from tests.conftest import commit

PRICE = Decimal("2.5")
HOUR = dt.timedelta(hours=1)


@dataclasses.dataclass
class Run:
    """An appliance to set up: active for ``age`` (None: never), paused after ``paused``."""

    user: str
    age: dt.timedelta
    hours_charged: int = 0
    run: int = 0
    paused: dt.timedelta | None = None
    earlier_runs: int = 0  # hours of the previous run charged (run > 0)


def make_cloud(db: Any, runs: list[Run], *, credit: dict[str, Decimal] | None = None,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """Users, one active request per appliance, its hours charged so far in the ledger."""
    now = now or utcnow()
    kernel = db.scalars(select(Kernel)).first()
    image = db.scalars(select(Image).where(Image.is_master.is_(True))).first()
    vtype = db.scalar(select(VirtualizationType).where(VirtualizationType.name == "sim-vm"))
    ledger = LedgerService(db, events=None)
    users: dict[str, CloudUser] = {}
    appliances = []
    for n, spec in enumerate(runs):
        if spec.user not in users:
            user = CloudUser(name=spec.user, password_hash="x", email=f"{spec.user}@x.example")
            db.add(user)
            db.flush()
            amount = (credit or {}).get(spec.user, Decimal(1000))
            ledger.post(user, amount, key=f"test-credit:{spec.user}", reason="credit",
                        comment="", actor=Actor.system("test"))
            users[spec.user] = user
        user = users[spec.user]
        cloud_request = CloudRequest(
            user_id=user.id, status=RequestStatus.ACTIVE, start=now - spec.age,
            stop=now + dt.timedelta(days=3), kernel_id=kernel.id, image_id=image.id,
            virtualization_type_id=vtype.id, memory_mb=512, cpus=1, disk_mb=1000,
            network_cards=1, quantity=1, price_per_hour=PRICE,
            price_breakdown=[{"type": "cpu", "quantity": "1", "label": "1 CPU(s)",
                              "price": "2.5"}])
        db.add(cloud_request)
        db.flush()
        since = now - spec.age
        ca = CloudAppliance(request_id=cloud_request.id, index=1, name=f"batch-{n}",
                            state=CloudApplianceState.ACTIVE, step=ProvisionStep.RUNNING,
                            active_since=since, run=spec.run, hours_charged=spec.hours_charged,
                            active_until=None if spec.paused is None else since + spec.paused)
        if spec.paused is not None:
            ca.state, ca.step = CloudApplianceState.PAUSED, ProvisionStep.PAUSED
        db.add(ca)
        db.flush()
        for run, hours in ((spec.run - 1, spec.earlier_runs), (spec.run, spec.hours_charged)):
            for hour in range(hours if run >= 0 else 0):
                ledger.post(user, -PRICE, key=f"charge:appliance:{ca.id}:run:{run}:hour:{hour}",
                            reason="Cloud Billing", comment="", actor=Actor.system("test"),
                            request_id=cloud_request.id, cloud_appliance_id=ca.id,
                            period_start=since + hour * HOUR)
        appliances.append(ca)
    db.flush()
    return {"users": users, "appliances": appliances, "now": now}


def keys(db: Any) -> list[str]:
    return sorted(db.scalars(select(LedgerEntry.idempotency_key).where(
        LedgerEntry.period_start.is_not(None))))


def assert_ledger_consistent(db: Any) -> None:
    """Every balance is the sum of its ledger, and each row's balance follows the last."""
    for user in db.scalars(select(CloudUser)):
        rows = list(db.scalars(select(LedgerEntry).where(LedgerEntry.user_id == user.id)
                               .order_by(LedgerEntry.id)))
        balance = Decimal(0)
        for row in rows:
            balance += row.amount
            assert row.balance_after == balance, (user.name, row.idempotency_key)
        db.refresh(user)
        assert user.ccus == balance, user.name


MIX = [  # user, age, hours charged: hours due = ceil(age) - charged
    Run("anna", dt.timedelta(hours=3, minutes=10), hours_charged=1),   # 3 due (1, 2, 3)
    Run("anna", dt.timedelta(minutes=59), hours_charged=1),            # nothing (partial hour)
    Run("anna", dt.timedelta(hours=1), hours_charged=1),               # hour 1 just started
    Run("bert", dt.timedelta(hours=5, minutes=30), hours_charged=5),   # hour 5
    Run("bert", dt.timedelta(hours=2, minutes=1), hours_charged=0),    # 0, 1, 2
    Run("carl", dt.timedelta(hours=10), hours_charged=3,
        paused=dt.timedelta(hours=2, minutes=30)),                     # closed run: nothing
    Run("carl", dt.timedelta(hours=1, minutes=5), hours_charged=1, run=1,
        earlier_runs=4),                                               # run 1, hour 1
    Run("dora", dt.timedelta(minutes=20), hours_charged=0),            # hour 0
    Run("emil", dt.timedelta(hours=30, minutes=2), hours_charged=29),  # 29, 30
]
MIX_DUE = 3 + 0 + 1 + 1 + 3 + 0 + 1 + 1 + 2


@pytest.mark.parametrize("size", [1, 3, 1000], ids=["batch-of-1", "batch-of-3", "one-batch"])
def test_each_due_hour_of_every_open_run_is_charged_once(cloud_db, size, monkeypatch):
    db, billing = cloud_db
    monkeypatch.setattr(billing_services, "BATCH_SIZE", size)
    cloud = make_cloud(db, MIX)
    before = keys(db)
    batches = billing.due_batches(cloud["now"], size=size)
    assert sum(len(batch.appliance_ids) for batch in batches) == 7  # the ones with hours due
    for batch in batches:  # a user is in one batch unless its appliances fill more
        assert len(batch.appliance_ids) <= size or len(batch.user_ids) == 1
    assert billing.charge_due_hours(now=cloud["now"]) == MIX_DUE
    new = sorted(set(keys(db)) - set(before))
    ids = [ca.id for ca in cloud["appliances"]]
    assert new == sorted([
        *(f"charge:appliance:{ids[0]}:run:0:hour:{h}" for h in (1, 2, 3)),
        f"charge:appliance:{ids[2]}:run:0:hour:1",
        f"charge:appliance:{ids[3]}:run:0:hour:5",
        *(f"charge:appliance:{ids[4]}:run:0:hour:{h}" for h in (0, 1, 2)),
        f"charge:appliance:{ids[6]}:run:1:hour:1",
        f"charge:appliance:{ids[7]}:run:0:hour:0",
        *(f"charge:appliance:{ids[8]}:run:0:hour:{h}" for h in (29, 30))])
    assert [ca.hours_charged for ca in cloud["appliances"]] == [4, 1, 2, 6, 3, 3, 2, 1, 31]
    assert_ledger_consistent(db)
    # a second run charges nothing
    assert billing.charge_due_hours(now=cloud["now"]) == 0
    assert billing.charge_due_hours(now=cloud["now"] + HOUR) == 8  # one more each


def test_a_batch_writes_what_the_single_appliance_path_writes(cloud_db):
    """Same keys, amounts, running balances, periods and comments as ``charge_appliance``."""
    db, billing = cloud_db
    cloud = make_cloud(db, MIX)

    def charges() -> list[tuple]:
        return [(e.idempotency_key, e.user_id, e.amount, e.balance_after, e.period_start,
                 e.comment, e.actor, e.request_id, e.cloud_appliance_id) for e in db.scalars(
            select(LedgerEntry).where(LedgerEntry.period_start.is_not(None))
            .order_by(LedgerEntry.user_id, LedgerEntry.id))]

    savepoint = db.begin_nested()
    for appliance_id in billing.running_appliance_ids():
        billing.charge_appliance(db.get(CloudAppliance, appliance_id), now=cloud["now"])
    db.flush()
    one_by_one = charges()
    savepoint.rollback()
    db.expire_all()
    billing.charge_due_hours(now=cloud["now"])
    assert charges() == one_by_one


def test_exhausted_credit_in_the_middle_of_a_batch(cloud_db):
    """As before: every due hour is charged (the balance goes below zero), then the
    requests of users without credit are deprovisioned; the others run on."""
    db, billing = cloud_db
    cloud = make_cloud(db, [Run("fred", dt.timedelta(hours=2, minutes=5)),
                            Run("fred", dt.timedelta(hours=1, minutes=5)),
                            Run("gina", dt.timedelta(hours=2, minutes=5))],
                       credit={"fred": Decimal(6), "gina": Decimal(100)})
    assert billing.charge_due_hours(now=cloud["now"]) == 8
    fred, gina = cloud["users"]["fred"], cloud["users"]["gina"]
    assert billing.balance(fred) == 6 - 5 * PRICE
    assert billing.balance(gina) == 100 - 3 * PRICE
    statuses = [db.get(CloudRequest, ca.request_id).status for ca in cloud["appliances"]]
    assert statuses == [RequestStatus.DEPROVISION, RequestStatus.DEPROVISION,
                        RequestStatus.ACTIVE]
    assert db.get(CloudRequest, cloud["appliances"][0].request_id).status_reason == \
        "credit exhausted"
    assert_ledger_consistent(db)


def test_hours_while_billing_is_off_stay_free_in_a_batch(cloud_db):
    from engine.cloud.config import CloudConfigService

    db, billing = cloud_db
    cloud = make_cloud(db, [Run("hans", dt.timedelta(hours=4, minutes=1))])
    billing.config.set("cloud_billing_enabled", False, actor=Actor.admin("admin"))
    assert billing.charge_due_hours(now=cloud["now"]) == 0
    assert cloud["appliances"][0].hours_charged == 5
    billing.request.find_service(CloudConfigService).set(
        "cloud_billing_enabled", True, actor=Actor.admin("admin"))
    assert billing.charge_due_hours(now=cloud["now"]) == 0
    assert billing.charge_due_hours(now=cloud["now"] + HOUR) == 1


def test_a_lost_hours_charged_cache_charges_nothing_again(cloud_db):
    db, billing = cloud_db
    cloud = make_cloud(db, MIX)
    assert billing.charge_due_hours(now=cloud["now"]) == MIX_DUE
    for ca in cloud["appliances"]:
        ca.hours_charged = 0  # the cache lost: the ledger's keys still know
    db.flush()
    assert billing.charge_due_hours(now=cloud["now"]) == 0
    assert [ca.hours_charged for ca in cloud["appliances"]] == [4, 1, 2, 6, 3, 0, 2, 1, 31]
    assert_ledger_consistent(db)


def test_a_rerun_after_a_crash_between_batches_charges_the_rest_once(cloud_db, registry,
                                                                      monkeypatch):
    db, _billing = cloud_db
    cloud = make_cloud(db, MIX)
    commit(_billing.request)
    monkeypatch.setattr(billing_services, "utcnow", lambda: cloud["now"])
    real = BillingService.due_batches
    monkeypatch.setattr(BillingService, "due_batches",
                        lambda self, now, size=3: real(self, now, size=size))
    done = []
    real_batch = BillingService.charge_batch

    def crash_on_the_second(self: Any, batch: Any, **kw: Any) -> int:
        if done:
            raise KeyboardInterrupt("the scheduler process dies")  # not caught by the job
        done.append(batch)
        return real_batch(self, batch, **kw)

    monkeypatch.setattr(BillingService, "charge_batch", crash_on_the_second)
    base = len(keys(db))
    with pytest.raises(KeyboardInterrupt):
        run_in_transaction(registry, charge_job)
    first = run_in_transaction(registry, lambda r: len(keys(r.dbsession))) - base
    assert 0 < first < MIX_DUE  # the first batch only
    monkeypatch.setattr(BillingService, "charge_batch", real_batch)
    assert run_in_transaction(registry, charge_job) == MIX_DUE - first
    assert run_in_transaction(registry, charge_job) == 0
    charge_keys = run_in_transaction(registry, lambda r: keys(r.dbsession))
    assert len(charge_keys) == len(set(charge_keys)) == base + MIX_DUE
    run_in_transaction(registry, lambda r: assert_ledger_consistent(r.dbsession))


def test_a_plugin_replaces_the_price_in_a_batch(cloud_db):
    db, billing = cloud_db
    cloud = make_cloud(db, [Run("ines", dt.timedelta(hours=1, minutes=1))])
    calls = []

    class Pricing:
        @hookimpl
        def qrm_billing_charge(self, request, cloud_appliance, period_start, components):
            calls.append((cloud_appliance.id, period_start))
            return Decimal("0.25")

    plugins = billing.plugins.registry
    plugin = Pricing()
    plugins.pm.register(plugin, name="pricing")
    plugins.plugins["pricing"] = plugin
    billing.plugins._states = None
    try:
        from engine.plugins.models import Plugin, PluginState

        db.add(Plugin(name="pricing", state=PluginState.ENABLED))
        db.flush()
        assert billing.charge_due_hours(now=cloud["now"]) == 2
    finally:
        plugins.pm.unregister(plugin, name="pricing")
        del plugins.plugins["pricing"]
    ca = cloud["appliances"][0]
    assert [c[0] for c in calls] == [ca.id, ca.id]
    amounts = list(db.scalars(select(LedgerEntry.amount).where(
        LedgerEntry.cloud_appliance_id == ca.id)))
    assert amounts == [Decimal("-0.25")] * 2


# -- two runs at once ---------------------------------------------------------------------
def test_two_billing_runs_at_once_charge_each_hour_exactly_once(committing_registry,
                                                               monkeypatch):
    from engine.cloud.demo import load_demo

    monkeypatch.setenv("QRM_DEMO_PASSWORD", "demo-password-1")
    run_in_transaction(committing_registry, load_demo)
    now = utcnow()
    runs = [Run(f"user{n % 7}", dt.timedelta(hours=n % 5, minutes=10 + n % 40),
            hours_charged=n % 2)
            for n in range(60)]
    expected = sum(max(0, (n % 5) + 1 - n % 2) for n in range(60))
    run_in_transaction(committing_registry, lambda r: make_cloud(r.dbsession, runs, now=now))
    monkeypatch.setattr(billing_services, "utcnow", lambda: now)
    real = BillingService.due_batches
    monkeypatch.setattr(BillingService, "due_batches",
                        lambda self, now, size=9: real(self, now, size=size))
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def one_run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(run_in_transaction(committing_registry, charge_job))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one_run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sum(results) == expected

    def check(request: Any) -> None:
        db = request.dbsession
        charge_keys = keys(db)
        assert len(charge_keys) == len(set(charge_keys))
        assert db.scalar(select(func.count(LedgerEntry.id)).where(
            LedgerEntry.period_start.is_not(None))) == expected + sum(n % 2 for n in range(60))
        assert_ledger_consistent(db)

    run_in_transaction(committing_registry, check)
    assert run_in_transaction(committing_registry, charge_job) == 0


@pytest.fixture
def cloud_db(demo_cloud: dict[str, Any]) -> tuple[Any, BillingService]:
    request = demo_cloud["request"]
    return request.dbsession, request.find_service(BillingService)
