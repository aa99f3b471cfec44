"""Several processes, one truth: a web server and a separate ``qrm scheduler`` (both started
from ``production.ini``, as an operator would) over one database.

A commit in the web server wakes the scheduler at once (PostgreSQL NOTIFY, elsewhere the
polled wake-up counter), not at its next sweep. Both read one clock, moved on by the test, so
that hours are charged across a killed and restarted scheduler, exactly once each, and the
stop time tears everything down.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import socket
import subprocess
import sys
import time
import types
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from engine.clock import OffsetClock
from engine.db import get_engine
from plugins.sim import inventory
from tests.conftest import ROOT, migrate

PASSWORD = "demo-password-1"
QRM = str(pathlib.Path(sys.executable).with_name("qrm"))
#: the sweep's interval: a woken scheduler starts long before it
SWEEP_INTERVAL_S = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], Any], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {within} s")


class Deployment:
    def __init__(self, tmp_path: pathlib.Path, url: str) -> None:
        self.tmp, self.url = tmp_path, url
        self.clock = OffsetClock(tmp_path / "clock")
        self.port = free_port()
        self.env = dict(os.environ, QRM_DATABASE_URL=url, QRM_SESSION_SECRET="s" * 40,
                        QRM_SECRET_KEY="k" * 40, QRM_SIM_STATE=str(tmp_path / "sim.sqlite"),
                        QRM_CLOCK=f"offset:{self.clock.path}", QRM_SIM_BOOT_DELAY="0",
                        QRM_DEMO_PASSWORD=PASSWORD,
                        QRM_PUBLIC_URL=f"http://127.0.0.1:{self.port}")
        self.processes: dict[str, subprocess.Popen] = {}
        self.scheduler_starts = 0
        self.engine = get_engine({"sqlalchemy.url": url})

    def qrm(self, *args: str) -> str:
        result = subprocess.run([QRM, "-c", str(ROOT / "production.ini"), *args], env=self.env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self, name: str, *args: str) -> None:
        if name == "scheduler":
            self.scheduler_starts += 1
        with (self.tmp / f"{name}.log").open("a") as log:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen(
                [QRM, "-c", str(ROOT / "production.ini"), *args], env=self.env, stdout=log,
                stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()  # no clean shutdown: a crash
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}"
                         for path in sorted(self.tmp.glob("*.log")))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def rpc(self, endpoint: str, name: str) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(
            f"http://{name}:{PASSWORD}@127.0.0.1:{self.port}/xmlrpc/{endpoint}",
            allow_none=True)


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: pathlib.Path, db_url: str
               ) -> Iterator[Deployment]:
    url = f"sqlite:///{tmp_path / 'qrm.sqlite'}" if db_url.startswith("sqlite") else db_url
    shared = not url.startswith("sqlite")
    deployed = Deployment(tmp_path, url)
    if shared:
        migrate(deployed.engine, fresh=True)
    deployed.qrm("db", "upgrade")
    deployed.qrm("demo")
    deployed.start("web", "serve", "--port", str(deployed.port))
    deployed.start("scheduler", "scheduler")
    try:
        wait_for(lambda: _healthy(deployed.port), within=30, what="the web server answers")
        yield deployed
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            report.sections.append(("processes' logs", deployed.logs()))
    except BaseException:
        print(deployed.logs())
        raise
    finally:
        deployed.stop_all()
        if shared:
            migrate(deployed.engine, fresh=True)
        deployed.engine.dispose()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def charges(deployed: Deployment, request_id: int) -> int:
    return deployed.scalar(
        "SELECT count(*) FROM ledger_entry e JOIN cloud_appliance a "
        "ON a.id = e.cloud_appliance_id WHERE a.request_id = :id "
        "AND e.period_start IS NOT NULL", id=request_id)


def idle(deployed: Deployment) -> bool:
    """The running scheduler has started, and none of its jobs is running (singleton jobs
    hold a lease, named after the process, only while they run)."""
    pid = deployed.processes["scheduler"].pid
    log = (deployed.tmp / "scheduler.log").read_text()
    starts = log.count("scheduler running")
    if starts < deployed.scheduler_starts:
        return False
    return deployed.scalar("SELECT count(*) FROM job_lease WHERE owner LIKE :mine",
                           mine=f"%:{pid}:%") == 0


def status(deployed: Deployment, request_id: int) -> str:
    return deployed.scalar("SELECT status FROM cloud_request WHERE id = :id", id=request_id)


def test_web_and_scheduler_processes_share_wake_ups_and_one_clock(deployment):
    deployed = deployment
    user, admin = deployed.rpc("clouduser", "demo"), deployed.rpc("cloudadmin", "admin")
    stop = deployed.clock.now() + dt.timedelta(hours=5)
    request_id = user.CloudProvision(
        "", None, xmlrpc.client.DateTime(stop.astimezone(dt.UTC)), "default", "debian-12",
        512, 1, 5000, 1, 1, "sim-vm", False, None)
    # the scheduler's start-up runs (every job once) are over: from now on only kicks help
    wait_for(lambda: idle(deployed), within=30, what="the scheduler's first runs end")
    assert admin.CloudRequestSetState(request_id, "approved") == "approved"
    approved_at = time.monotonic()
    wait_for(lambda: status(deployed, request_id) == "active", within=SWEEP_INTERVAL_S,
             what="the request becomes active")
    took = time.monotonic() - approved_at
    # woken by the web server's commit, not found by the sweep ten seconds later
    assert took < SWEEP_INTERVAL_S / 2, f"approved → active took {took:.2f} s"
    assert charges(deployed, request_id) == 1
    (vm,) = inventory.vms(deployed.env["QRM_SIM_STATE"])

    # the scheduler dies; three hours pass; a new one catches up, charging each hour once
    deployed.kill("scheduler")
    deployed.clock.advance(3 * 3600 + 60)
    deployed.start("scheduler", "scheduler")
    wait_for(lambda: charges(deployed, request_id) == 4, within=30,
             what="the three missed hours are charged")
    wait_for(lambda: idle(deployed), within=30, what="the new scheduler's first runs end")
    assert charges(deployed, request_id) == 4  # and not one more

    # past the stop time: torn down, nothing left on the simulated host
    deployed.clock.advance(2 * 3600)
    # (the killed scheduler may have held the sweep's lease: it runs out after 30 s)
    wait_for(lambda: status(deployed, request_id) == "done", within=60,
             what="the request is done after its stop time")
    assert inventory.vms(deployed.env["QRM_SIM_STATE"]) == []
    assert inventory.machine_by_mac(deployed.env["QRM_SIM_STATE"], vm.mac) is None
    keys = deployed.scalar(
        "SELECT count(DISTINCT e.idempotency_key) - count(*) FROM ledger_entry e")
    assert keys == 0  # no hour charged twice
    print(types.SimpleNamespace(approved_to_active_s=round(took, 3)))
    user("close")()
    admin("close")()
