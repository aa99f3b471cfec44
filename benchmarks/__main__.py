"""``make bench``: provisioning and billing throughput on a temporary SQLite database.

Targets (2 cores): provisioning 50 single-VM requests to active within 30 s; charging 24 late
hours for each of 50 appliances within 10 s; peak traced memory under 200 MB. Exits 1 when a
target is missed. ``QRM_BENCH_DATABASE_URL`` runs it against another (empty) database.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
import tracemalloc
from typing import Any

from sqlalchemy import select

from engine.app import make_config
from engine.cloud.demo import load_demo
from engine.db import get_engine, get_session_factory, utcnow
from engine.scheduler.kick import NullKicker
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor

REQUESTS = 50
TARGETS = {"provision_s": 30.0, "charge_s": 10.0, "peak_mb": 200.0}


def _registry(url: str, folder: str) -> Any:
    from alembic import command
    from alembic.config import Config

    engine = get_engine({"sqlalchemy.url": url})
    cfg = Config(os.path.join(os.path.dirname(__file__), "..", "development.ini"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    config = make_config({"sqlalchemy.url": url, "qrm.session_secret": "bench",
                          "qrm.sim.boot_delay": "0", "qrm.kick": "none",
                          "qrm.sim.state": os.path.join(folder, "sim-datacenter.sqlite")})
    config.registry["dbsession_factory"] = get_session_factory(engine)
    config.commit()
    config.registry["qrm.kicker"] = NullKicker()
    return config.registry


def _prepare(request: Any) -> None:
    from engine.cloud.config import CloudConfigService
    from plugins.sim import inventory

    load_demo(request)
    from engine.datacenter.models import Resource

    settings = request.registry.settings
    for host in inventory.hosts(settings):
        inventory.register_host(settings, host.mac, 1000, 1_000_000)
        resource = request.dbsession.scalars(select(Resource).where(
            Resource.mac == host.mac)).one()
        resource.cpus, resource.memory_mb = 1000, 1_000_000
    from engine.datacenter.models import Storage

    for storage in request.dbsession.scalars(select(Storage)):
        storage.capacity_mb = 0  # unlimited
    config = request.find_service(CloudConfigService)
    config.set("max_apps_per_user", 0, actor=Actor.system("bench"))


def _submit(request: Any) -> None:
    from billing.services import BillingService
    from engine.cloud.services import CloudRequestService, CloudUserService

    users = request.find_service(CloudUserService)
    demo = users.resolve("demo", actor=Actor.system())
    request.find_service(BillingService).set_balance(demo, 10**7, comment="bench",
                                                     actor=Actor.admin("admin"))
    requests = request.find_service(CloudRequestService)
    for _ in range(REQUESTS):
        cloud_request = requests.submit(
            actor=Actor.cloud_user("demo", demo.id), cloud_user="demo", start=None,
            stop=utcnow() + dt.timedelta(days=2), kernel="default", image="debian-12",
            memory_mb=256, cpus=1, disk_mb=2000, network_cards=1, quantity=1,
            virtualization="sim-vm")
        requests.approve(cloud_request.id, actor=Actor.admin("admin"))


def _backdate(request: Any) -> None:
    from engine.cloud.models import CloudAppliance

    for cloud_appliance in request.dbsession.scalars(select(CloudAppliance).where(
            CloudAppliance.active_since.is_not(None))):
        cloud_appliance.active_since -= dt.timedelta(hours=24)


def _pending(request: Any) -> int:
    from sqlalchemy import func

    from engine.cloud.models import CloudRequest, RequestStatus

    return request.dbsession.scalar(select(func.count(CloudRequest.id)).where(
        CloudRequest.status == RequestStatus.APPROVED))


def main() -> int:
    from billing.services import charge_job
    from engine.cloud.provisioning import sweep_job
    from engine.monitoring.services import plugins_monitor_job

    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("QRM_BENCH_DATABASE_URL") or f"sqlite:///{folder}/bench.sqlite"
        registry = _registry(url, folder)
        run_in_transaction(registry, _prepare)
        run_in_transaction(registry, _submit)
        tracemalloc.start()
        started = time.perf_counter()
        while run_in_transaction(registry, _pending):
            run_in_transaction(registry, plugins_monitor_job)
            run_in_transaction(registry, sweep_job)
            if time.perf_counter() - started > 10 * TARGETS["provision_s"]:
                break
        results = {"provision_s": time.perf_counter() - started}
        run_in_transaction(registry, _backdate)
        started = time.perf_counter()
        run_in_transaction(registry, charge_job)
        results["charge_s"] = time.perf_counter() - started
        results["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    missed = False
    for name, value in results.items():
        ok = value <= TARGETS[name]
        missed |= not ok
        print(f"{name:<12} {value:8.2f}  target <= {TARGETS[name]:.0f}  {'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
