"""Two schedulers at once (two processes against one database) never provision or charge
twice. These tests commit for real: each thread has its own connections and transactions."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from billing.models import LedgerEntry
from billing.services import charge_job
from engine.cloud.demo import load_demo
from engine.cloud.models import CloudAppliance, CloudRequest, RequestStatus
from engine.cloud.provisioning import sweep_job
from engine.cloud.services import CloudRequestService, CloudUserService
from engine.datacenter.models import Image, Resource, VirtualizationKind
from engine.monitoring.services import plugins_monitor_job
from engine.scheduler.kick import NullKicker
from engine.scheduler.runner import run_in_transaction, run_job
from engine.security import Actor
from tests.unit.cloud.conftest import request_values


def _submit_and_approve(request: Any, quantity: int) -> int:
    users = request.find_service(CloudUserService)
    demo = users.resolve("demo", actor=Actor.system())
    requests = request.find_service(CloudRequestService)
    cloud_request = requests.submit(actor=Actor.cloud_user("demo", demo.id),
                                    **request_values(quantity=quantity))
    requests.approve(cloud_request.id, actor=Actor.admin("admin"))
    return cloud_request.id


def _counts(request: Any, request_id: int) -> dict[str, Any]:
    db = request.dbsession
    return {
        "status": db.get(CloudRequest, request_id).status,
        "cloud_appliances": db.scalar(select(func.count(CloudAppliance.id))),
        "vms": db.scalar(select(func.count(Resource.id)).where(
            Resource.kind == VirtualizationKind.VM)),
        "clones": db.scalar(select(func.count(Image.id)).where(Image.is_master.is_(False))),
        "charges": db.scalar(select(func.count(LedgerEntry.id)).where(
            LedgerEntry.period_start.is_not(None))),
    }


def _run_concurrently(*targets: Any) -> None:
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(target: Any) -> Any:
        def run() -> None:
            try:
                barrier.wait(timeout=10)
                target()
            except BaseException as error:  # surfaced in the test thread
                errors.append(error)
        return run

    threads = [threading.Thread(target=wrap(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


@pytest.fixture
def cloud_registry(committing_registry: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("QRM_DEMO_PASSWORD", "demo-password-1")
    committing_registry["qrm.kicker"] = NullKicker()  # only the two "schedulers" work
    run_in_transaction(committing_registry, load_demo)
    run_in_transaction(committing_registry, plugins_monitor_job)
    return committing_registry


def scheduler_round(registry: Any, *, with_leases: bool) -> None:
    """What one scheduler process does, several times over."""
    jobs = registry["qrm.jobs"]
    for _ in range(6):
        if with_leases:
            for job_id in ("plugins.monitor", "cloud.sweep", "billing.charge"):
                run_job(registry, jobs[job_id])
        else:  # no lease: only the database's row locks and unique keys keep order
            run_in_transaction(registry, plugins_monitor_job)
            run_in_transaction(registry, sweep_job)
            run_in_transaction(registry, charge_job)


@pytest.mark.parametrize("with_leases", [True, False], ids=["leases", "row-locks-only"])
def test_two_schedulers_at_once_provision_and_charge_once(cloud_registry, with_leases):
    request_id = run_in_transaction(cloud_registry, _submit_and_approve, quantity=2)
    _run_concurrently(lambda: scheduler_round(cloud_registry, with_leases=with_leases),
                      lambda: scheduler_round(cloud_registry, with_leases=with_leases))
    # whatever the interleaving, one more round finishes the work
    scheduler_round(cloud_registry, with_leases=False)
    counts = run_in_transaction(cloud_registry, _counts, request_id=request_id)
    assert counts == {"status": RequestStatus.ACTIVE, "cloud_appliances": 2, "vms": 2,
                      "clones": 2, "charges": 2}


def test_two_charge_runs_at_once_charge_each_hour_once(cloud_registry):
    request_id = run_in_transaction(cloud_registry, _submit_and_approve, quantity=1)
    scheduler_round(cloud_registry, with_leases=False)

    def backdate(request: Any) -> None:
        for cloud_appliance in request.dbsession.scalars(select(CloudAppliance)):
            cloud_appliance.active_since -= dt.timedelta(hours=5, minutes=1)

    run_in_transaction(cloud_registry, backdate)
    _run_concurrently(*[lambda: run_in_transaction(cloud_registry, charge_job)] * 3)
    counts = run_in_transaction(cloud_registry, _counts, request_id=request_id)
    assert counts["charges"] == 6  # hour 0 at activation, hours 1..5 late, each once

    def ledger_matches_balance(request: Any) -> bool:
        from billing.services import LedgerService

        users = request.find_service(CloudUserService)
        demo = users.resolve("demo", actor=Actor.system())
        ledger = request.find_service(LedgerService)
        return ledger.ledger_sum(demo) == ledger.balance(demo)

    assert run_in_transaction(cloud_registry, ledger_matches_balance)
