"""``make bench``: how fast a request becomes active, how many the engine provisions, billing.

Figures (goals for 2 cores), each printed against its goal; exit 1 when one is missed:

* ``latency_one_process``: the simulated datacenter with no boot delay, the scheduler in the
  bench process (``start_scheduler``, ``qrm.kick = scheduler``); requests submitted and
  approved one after another, each in its own transaction as a web request would; from the
  approval's commit until the request reads ``active`` (polled every 5 ms in a short
  transaction of its own). Median ≤ 0.5 s.
* ``latency_web_scheduler_pg``: the same, but the bench process is the web worker
  (``qrm.kick = database``: its commit NOTIFYs) and a real ``qrm -c production.ini scheduler``
  subprocess does the work, on PostgreSQL (``QRM_BENCH_POSTGRESQL_URL``, by default the local
  ``qrm_bench`` database if it answers; skipped otherwise). Runs first, on a database rebuilt
  from scratch; the subprocess is stopped at the end (terminate, then kill). Median ≤ 0.5 s.
* ``charge``: 24 late hours of each appliance of the one-process latency run (21) charged by
  one ``billing.charge`` run, on its database; ≤ 10 s.
* ``throughput``: 1,000 requests approved in one transaction, then the engine drives them all
  to active; ≤ 60 s. By default the in-process APScheduler drives it (``start_scheduler``, as
  ``qrm scheduler`` runs its jobs: in parallel threads, woken by kicks); ``--drive loop`` runs
  ``plugins.monitor``, ``cloud.sweep`` and ``datacenter.calls`` through ``run_job`` one after
  another in this thread instead. A run unfinished at ``--cutoff`` seconds (default 120) is
  reported there, with how many appliances reached which step, and counts as missed; in the
  loop the cut-off is checked between job runs only.
* ``peak_memory``: how much the process's peak resident memory grew during the throughput
  run (``ru_maxrss`` minus the resident memory before it); ≤ 200 MB.

Then the figures at scale (``benchmarks/scale.py``: billing, ``CloudRequestGetList``, the
console's first pages and their flatness, ``cloud.sweep`` and the server's memory on the data set
of ``benchmarks/dataset.py``, on SQLite and PostgreSQL). ``--quick`` is a smoke run, ``--only``
runs one half, ``--dataset`` only builds the data set.

``QRM_BENCH_DATABASE_URL`` runs the one-process figures against another database (rebuilt from
scratch: every table is dropped) instead of a temporary SQLite file. ``--profile`` profiles
the throughput run (``--drive loop``, in this thread) and prints the top 15 functions by
cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import logging
import os
import pathlib
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from engine.app import make_config
from engine.cloud.demo import load_demo
from engine.db import get_engine, get_session_factory, utcnow
from engine.scheduler.kick import NullKicker
from engine.scheduler.runner import run_in_transaction, run_job
from engine.security import Actor

ROOT = pathlib.Path(__file__).resolve().parent.parent
QRM = str(pathlib.Path(sys.executable).with_name("qrm"))
DEFAULT_POSTGRESQL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/qrm_bench"

LATENCY_REQUESTS = 20
THROUGHPUT_REQUESTS = 1000
POLL_S = 0.005
#: a single request not active after this long counts as never
REQUEST_TIMEOUT_S = 30.0
GOALS = {"latency_one_process": 0.5, "latency_web_scheduler_pg": 0.5, "throughput": 60.0,
         "charge": 10.0, "peak_memory": 200.0}
UNITS = {"peak_memory": "MB"}
#: the jobs ``--drive loop`` runs, in this order, as one scheduler would
LOOP_JOBS = ("plugins.monitor", "cloud.sweep", "datacenter.calls")


class Figure:
    def __init__(self, name: str, value: float | None, text: str = "") -> None:
        self.name, self.value, self.text = name, value, text

    @property
    def ok(self) -> bool:
        return self.value is not None and self.value <= GOALS[self.name]

    def line(self) -> str:
        unit = UNITS.get(self.name, "s")
        value = self.text or ("-" if self.value is None else f"{self.value:.2f} {unit}")
        goal = f"<= {GOALS[self.name]:g} {unit}"
        return f"{self.name:<26}  {value:<44}  {goal:<10}  {'ok' if self.ok else 'MISSED'}"


# -- database and registry ---------------------------------------------------------------------
def describe(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return "SQLite (temporary file)"
    return f"{parsed.get_backend_name()} {parsed.host}:{parsed.port or ''}/{parsed.database}"


def migrate(engine: Any, *, fresh: bool) -> None:
    """Bring the database to head; from scratch (every table dropped) if ``fresh``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "development.ini"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        if fresh:
            command.downgrade(cfg, "base")
        command.upgrade(cfg, "head")


def make_registry(url: str, sim_state: str, kick: str) -> Any:
    config = make_config({"sqlalchemy.url": url, "qrm.session_secret": "bench",
                          "qrm.sim.boot_delay": "0", "qrm.kick": kick,
                          "qrm.sim.state": sim_state})
    config.registry["dbsession_factory"] = get_session_factory(get_engine(
        {"sqlalchemy.url": url}))
    config.commit()
    return config.registry


def engine_of(registry: Any) -> Any:
    return registry["dbsession_factory"].kw["bind"]


def prepare(request: Any) -> None:
    """The demo cloud, with room for every request of the bench: hosts and storage
    unlimited, addresses enough, no per-user limit, credit plenty."""
    from billing.services import BillingService
    from engine.cloud.config import CloudConfigService
    from engine.cloud.models import IpAddress, IpGroup
    from engine.cloud.services import CloudUserService
    from engine.datacenter.models import Resource, Storage
    from plugins.sim import inventory

    load_demo(request)
    settings = request.registry.settings
    db = request.dbsession
    for host in inventory.hosts(settings):
        inventory.register_host(settings, host.mac, 100_000, 100_000_000)
        row = db.scalars(select(Resource).where(Resource.mac == host.mac)).one()
        row.cpus, row.memory_mb = 100_000, 100_000_000
    for storage in db.scalars(select(Storage)):
        storage.capacity_mb = 0  # unlimited
    group = IpGroup(name="bench-net", network="10.200.0.0", netmask="255.255.240.0",
                    gateway="10.200.0.1", dns1="10.200.0.2", domain="bench.example")
    group.addresses = [IpAddress(address=f"10.200.{n // 250}.{n % 250 + 3}")
                       for n in range(THROUGHPUT_REQUESTS + 2 * LATENCY_REQUESTS + 100)]
    db.add(group)
    request.find_service(CloudConfigService).set("max_apps_per_user", 0,
                                                 actor=Actor.system("bench"))
    demo = request.find_service(CloudUserService).resolve("demo", actor=Actor.system())
    request.find_service(BillingService).set_balance(demo, 10**9, comment="bench",
                                                     actor=Actor.admin("admin"))


# -- requests ----------------------------------------------------------------------------------
def submit(request: Any, count: int = 1) -> list[int]:
    """``count`` single-VM requests of the demo user (status new)."""
    from engine.cloud.services import CloudRequestService, CloudUserService

    demo = request.find_service(CloudUserService).resolve("demo", actor=Actor.system())
    requests = request.find_service(CloudRequestService)
    ids = []
    for _ in range(count):
        cloud_request = requests.submit(
            actor=Actor.cloud_user("demo", demo.id), cloud_user="demo", start=None,
            stop=utcnow() + dt.timedelta(days=2), kernel="default", image="debian-12",
            memory_mb=256, cpus=1, disk_mb=2000, network_cards=1, quantity=1,
            virtualization="sim-vm")
        ids.append(cloud_request.id)
    return ids


def approve(request: Any, ids: list[int], committed: list[float]) -> None:
    """Approve ``ids``; ``committed`` gets the instant of the commit (this hook runs before
    the kick's, which is registered by the approval)."""
    from engine.cloud.services import CloudRequestService

    request.tm.get().addAfterCommitHook(
        lambda success: success and committed.append(time.perf_counter()))
    requests = request.find_service(CloudRequestService)
    for request_id in ids:
        requests.approve(request_id, actor=Actor.admin("admin"))


def status_of(engine: Any, request_id: int) -> Any:
    from engine.cloud.models import CloudRequest

    with engine.connect() as connection:
        value = connection.execute(select(CloudRequest.status).where(
            CloudRequest.id == request_id)).scalar()
        connection.rollback()
    return value


def counts(engine: Any, first: int, last: int) -> dict[Any, int]:
    from engine.cloud.models import CloudRequest

    with engine.connect() as connection:
        rows = connection.execute(select(CloudRequest.status, func.count(CloudRequest.id))
                                  .where(CloudRequest.id.between(first, last))
                                  .group_by(CloudRequest.status)).all()
        connection.rollback()
    return dict(rows)


def one_latency(registry: Any, engine: Any) -> float | None:
    """Submit, approve, and wait: seconds from the approval's commit until active."""
    from engine.cloud.models import RequestStatus

    [request_id] = run_in_transaction(registry, submit)
    committed: list[float] = []
    run_in_transaction(registry, approve, ids=[request_id], committed=committed)
    while True:
        status = status_of(engine, request_id)
        now = time.perf_counter()
        if status is RequestStatus.ACTIVE:
            return now - committed[0]
        if status.is_terminal or now - committed[0] > REQUEST_TIMEOUT_S:
            print(f"  request {request_id}: {status.value} after {now - committed[0]:.1f} s")
            return None
        time.sleep(POLL_S)


def latency(name: str, registry: Any) -> tuple[Figure, float | None]:
    """One warm-up request (not counted), then ``LATENCY_REQUESTS`` one after another."""
    engine = engine_of(registry)
    warm_up = one_latency(registry, engine)
    values = [one_latency(registry, engine) for _ in range(LATENCY_REQUESTS)]
    done = sorted(v for v in values if v is not None)
    if len(done) < len(values):
        return Figure(name, None, f"{len(values) - len(done)} of {len(values)} never active"
                      ), warm_up
    median = statistics.median(done)
    p90 = statistics.quantiles(done, n=10, method="inclusive")[-1]
    return Figure(name, median, f"median {median:.3f} s, p90 {p90:.3f} s "
                  f"(max {done[-1]:.3f})"), warm_up


# -- throughput and charge ---------------------------------------------------------------------
def drive_loop(registry: Any, until: Callable[[], bool], cutoff: float) -> None:
    jobs = registry["qrm.jobs"]
    started = time.perf_counter()
    while not until() and time.perf_counter() - started < cutoff:
        for job_id in LOOP_JOBS:
            run_job(registry, jobs[job_id])


def steps(engine: Any, first: int, last: int) -> dict[str, int]:
    """How many of the requests' appliances are at each provisioning step."""
    from engine.cloud.models import CloudAppliance

    with engine.connect() as connection:
        rows = connection.execute(select(CloudAppliance.step, func.count(CloudAppliance.id))
                                  .where(CloudAppliance.request_id.between(first, last))
                                  .group_by(CloudAppliance.step)).all()
        connection.rollback()
    return {getattr(step, "value", str(step)): n for step, n in rows}


def throughput(registry: Any, drive: str, cutoff: float, profile: bool,
               requests: int) -> Figure:
    from engine.cloud.models import RequestStatus
    from engine.scheduler.service import start_scheduler

    engine = engine_of(registry)
    ids: list[int] = []
    while len(ids) < requests:
        ids += run_in_transaction(registry, submit, count=min(100, requests - len(ids)))
    first, last = min(ids), max(ids)
    total = len(ids)

    def all_active() -> bool:
        return counts(engine, first, last).get(RequestStatus.ACTIVE, 0) == total

    committed: list[float] = []
    running = None
    if drive == "scheduler":
        running = start_scheduler(registry, listen=False)
        settle(engine)  # every job's first run at start (nothing to do yet)
    else:
        registry["qrm.kicker"] = NullKicker()
    profiler = cProfile.Profile() if profile else None
    run_in_transaction(registry, approve, ids=ids, committed=committed)
    if drive == "loop":
        if profiler is not None:
            profiler.enable()
        drive_loop(registry, all_active, cutoff)
        if profiler is not None:
            profiler.disable()
    else:
        while not all_active() and time.perf_counter() - committed[0] < cutoff:
            time.sleep(0.2)
    elapsed = time.perf_counter() - committed[0]
    if running is not None:
        running.shutdown(wait=False)  # a sweep in flight goes on in its thread
    if profiler is not None:
        print(f"-- profile of the throughput run ({elapsed:.1f} s, {total} requests), "
              "top 15 by cumulative time")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)
        if os.environ.get("QRM_BENCH_PROFILE_FILE"):
            profiler.dump_stats(os.environ["QRM_BENCH_PROFILE_FILE"])
    active = counts(engine, first, last).get(RequestStatus.ACTIVE, 0)
    if active == total:
        return Figure("throughput", elapsed, f"{elapsed:.2f} s for {total} requests "
                      f"({total / elapsed:.1f}/s)")
    return Figure("throughput", None, f"cut off at {elapsed:.0f} s: {active}/{total} active; "
                  f"appliances' steps {steps(engine, first, last)}")


def backdate(request: Any, count: int) -> int:
    """Move ``count`` active appliances' start 24 hours back; returns how many."""
    from engine.cloud.models import CloudAppliance

    rows = list(request.dbsession.scalars(select(CloudAppliance).where(
        CloudAppliance.active_since.is_not(None)).order_by(CloudAppliance.id).limit(count)))
    for cloud_appliance in rows:
        cloud_appliance.active_since -= dt.timedelta(hours=24)
    return len(rows)


def charge(registry: Any) -> Figure:
    from billing.services import charge_job

    backdated = run_in_transaction(registry, backdate, count=LATENCY_REQUESTS + 1)
    started = time.perf_counter()
    run_in_transaction(registry, charge_job)
    elapsed = time.perf_counter() - started
    return Figure("charge", elapsed, f"{elapsed:.2f} s for 24 h x {backdated} appliances")


# -- web + separate scheduler on PostgreSQL ----------------------------------------------------
def postgresql_url(url: str | None = None) -> tuple[str | None, str]:
    url = url or os.environ.get("QRM_BENCH_POSTGRESQL_URL") or DEFAULT_POSTGRESQL_URL
    if not url.startswith("postgresql"):
        return None, f"QRM_BENCH_POSTGRESQL_URL is not PostgreSQL ({describe(url)})"
    engine = get_engine({"sqlalchemy.url": url})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as error:  # no server, no database, no access: say why
        first_line = str(error).strip().splitlines()[0]
        return None, f"{describe(url)} does not answer ({type(error).__name__}: {first_line})"
    finally:
        engine.dispose()
    return url, ""


def settle(engine: Any, within: float = 15.0) -> None:
    """Wait until a starting scheduler's first run of every job is over (no lease held)."""
    from engine.scheduler.models import JobLease

    time.sleep(0.5)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            held = connection.execute(select(func.count()).select_from(JobLease)).scalar()
            connection.rollback()
        if not held:
            break
        time.sleep(0.05)
    time.sleep(0.5)


def web_and_scheduler(url: str, folder: str) -> tuple[Figure, str]:
    registry_engine = get_engine({"sqlalchemy.url": url})
    migrate(registry_engine, fresh=True)
    registry_engine.dispose()
    sim_state = os.path.join(folder, "sim-pg.sqlite")
    registry = make_registry(url, sim_state, kick="database")
    run_in_transaction(registry, prepare)
    env = dict(os.environ, QRM_DATABASE_URL=url, QRM_SESSION_SECRET="s" * 40,
               QRM_SECRET_KEY="k" * 40, QRM_SIM_STATE=sim_state, QRM_SIM_BOOT_DELAY="0")
    for variable in ("QRM_CLOCK", "QRM_SCHEDULER"):
        env.pop(variable, None)
    log_path = os.path.join(folder, "scheduler.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(  # noqa: S603 (our own qrm, our own arguments)
            [QRM, "-c", str(ROOT / "production.ini"), "scheduler"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "scheduler running" not in pathlib.Path(log_path).read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the scheduler did not start:\n"
                                   + pathlib.Path(log_path).read_text()[-3000:])
            time.sleep(0.05)
        settle(engine_of(registry))  # its first run of every job over, LISTEN in place
        figure, warm_up = latency("latency_web_scheduler_pg", registry)
        note = f"warm-up {warm_up:.3f} s" if warm_up is not None else "warm-up never active"
        if not figure.ok:
            print("-- scheduler log (end)\n" + pathlib.Path(log_path).read_text()[-3000:])
        return figure, note
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        engine_of(registry).dispose()


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- main --------------------------------------------------------------------------------------
def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", choices=("scheduler", "loop"), default="scheduler",
                        help="what drives the throughput run (default: the in-process "
                        "APScheduler, as `qrm scheduler`)")
    parser.add_argument("--cutoff", type=float, default=2 * GOALS["throughput"],
                        help="stop the throughput run after this many seconds "
                        "(default: %(default)g)")
    parser.add_argument("--requests", type=int, default=THROUGHPUT_REQUESTS,
                        help="requests of the throughput run (default: %(default)s)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the throughput run (implies --drive loop)")
    parser.add_argument("--only", choices=("all", "engine", "scale"), default="all",
                        help="the engine's figures (latency, throughput, charge, API), the "
                        "figures at scale (benchmarks/scale.py), or both (default)")
    parser.add_argument("--scale-requests", type=int, default=100_000,
                        help="requests of the data set at scale (default: %(default)s; "
                        "resources a tenth, users a hundredth)")
    parser.add_argument("--scale-timeout", type=float, default=120.0,
                        help="cut a call at scale off after this many seconds")
    parser.add_argument("--no-postgresql", action="store_true",
                        help="the figures at scale on SQLite only")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100 throughput requests, 2,000 at scale")
    parser.add_argument("--dataset", action="store_true",
                        help="only build the data set at scale (SQLite, cached; or into "
                        "--dataset-url) and print its counts")
    parser.add_argument("--dataset-url", help="the database --dataset builds into (emptied)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from engine.scheduler.service import start_scheduler

    args = arguments().parse_args(argv)
    if args.quick:
        args.requests, args.scale_requests = min(args.requests, 100), 2000
    if args.dataset:
        return build_dataset(args)
    scale_figures: list[Figure] = []
    if args.only == "scale":
        return run_scale(args, scale_figures)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running"
    drive = "loop" if args.profile else args.drive
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("QRM_BENCH_DATABASE_URL") or f"sqlite:///{folder}/bench.sqlite"
        pg_url, pg_skipped = postgresql_url()
        how = ("in-process APScheduler (start_scheduler, qrm.kick = scheduler), as "
               "`qrm scheduler` runs it" if drive == "scheduler" else
               f"run_job loop of {', '.join(LOOP_JOBS)} in one thread")
        print(f"# make bench: {os.cpu_count()} cores; simulated datacenter, boot delay 0\n"
              f"# one process: {describe(url)}; scheduler in process (qrm.kick = scheduler);"
              f" latency over {LATENCY_REQUESTS} requests one after another (+1 warm-up not "
              f"counted), polled every {POLL_S * 1000:g} ms\n"
              f"# throughput: {args.requests} requests approved in one transaction, "
              f"driven by the {how}; cut off at {args.cutoff:g} s\n"
              f"# web + scheduler: "
              + (f"{describe(pg_url)} rebuilt; `qrm -c production.ini scheduler` subprocess "
                 "(qrm.kick = database: NOTIFY), this process the web worker"
                 if pg_url else f"skipped: {pg_skipped}"), flush=True)
        # first: QRM_BENCH_DATABASE_URL may name the same database, rebuilt again below
        if pg_url:
            figure, note = web_and_scheduler(pg_url, folder)
            figures.append(figure)
            print(figure.line() + f"   [{note}]", flush=True)
        else:
            print(f"{'latency_web_scheduler_pg':<26}  skipped: {pg_skipped}", flush=True)
        engine = get_engine({"sqlalchemy.url": url})
        migrate(engine, fresh=not url.startswith("sqlite"))
        engine.dispose()
        registry = make_registry(url, os.path.join(folder, "sim.sqlite"), kick="scheduler")
        run_in_transaction(registry, prepare)
        running = start_scheduler(registry, listen=False)
        try:
            settle(engine_of(registry))  # every job's first run at start
            figure, warm_up = latency("latency_one_process", registry)
        finally:
            running.shutdown(wait=True)  # nothing left to do: returns at once
        figures.append(figure)
        print(figure.line() + (f"   [warm-up {warm_up:.3f} s]" if warm_up else ""),
              flush=True)
        figures.append(charge(registry))
        print(figures[-1].line(), flush=True)
        # last: a run cut off leaves its job running in a thread of its own
        before = current_rss_mb()
        figures.append(throughput(registry, drive, args.cutoff, args.profile, args.requests))
        print(figures[-1].line(), flush=True)
        from benchmarks.api import run as run_api

        api_figures = run_api(registry)  # SOAP and XML-RPC against bare echo services
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    figures.append(Figure("peak_memory", peak - before,
                          f"{peak - before:.1f} MB (process peak RSS {peak:.1f} MB)"))
    print(figures[-1].line(), flush=True)
    figures += api_figures
    if args.only == "all":
        run_scale(args, scale_figures)
    figures += scale_figures
    return 1 if any(not figure.ok for figure in figures) else 0


def run_scale(args: Any, figures: list[Figure]) -> int:
    from benchmarks.dataset import Size
    from benchmarks.scale import run

    with tempfile.TemporaryDirectory() as folder:
        figures += run(pathlib.Path(folder), Size.scaled(args.scale_requests),
                       timeout=args.scale_timeout, postgresql=not args.no_postgresql)
    return 1 if any(not figure.ok for figure in figures) else 0


def build_dataset(args: Any) -> int:
    from benchmarks.dataset import Size, build, sqlite_dataset

    size = Size.scaled(args.scale_requests)
    started = time.perf_counter()
    if args.dataset_url:
        with tempfile.TemporaryDirectory() as folder:
            meta = build(args.dataset_url, size, state=pathlib.Path(folder) / "sim.sqlite")
        print(f"built into {describe(args.dataset_url)}")
    else:
        with tempfile.TemporaryDirectory() as folder:
            meta = sqlite_dataset(size, pathlib.Path(folder) / "dataset.sqlite")
    print(f"data set ({time.perf_counter() - started:.1f} s): {describe_counts(meta)}")
    return 0


def describe_counts(meta: dict[str, Any]) -> str:
    from benchmarks.dataset import describe

    return describe(meta)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # a throughput run cut off leaves a job running in the scheduler's threads, which
    # the interpreter would wait for at exit
    os._exit(code)
