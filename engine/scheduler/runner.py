"""The job runner: one job run = a fresh request from ``pyramid.scripting.prepare`` + one
transaction. Exclusion between scheduler processes comes from the database (a lease row per
job, and row locks inside the jobs), never from a lock file."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import transaction
from pyramid.scripting import prepare
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.scheduler.models import JobLease

log = logging.getLogger(__name__)

JobFunction = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Job:
    """A periodic job: ``func(request, **kw)`` every ``interval_s`` seconds."""

    id: str
    func: JobFunction
    interval_s: float
    #: hold a lease so only one scheduler process runs this job at a time
    singleton: bool = True


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_in_transaction(registry: Any, func: JobFunction, **kw: Any) -> Any:
    """Run ``func(request, **kw)`` with a fresh request inside its own transaction."""
    env = prepare(registry=registry)
    request = env["request"]
    request.tm = transaction.TransactionManager(explicit=True)
    try:
        with request.tm:
            return func(request, **kw)
    finally:
        env["closer"]()


@contextlib.contextmanager
def transactions(registry: Any) -> Iterator[Callable[..., Any]]:
    """``run(func, **kw)``: each call runs ``func(request, **kw)`` in a transaction of its
    own, all on one request, so that a job taking many small steps does not build its
    request and its services again for each (its session starts empty every time: it is
    closed at the end of each transaction). Services may keep plain values (the cloud's
    configuration, plugin states) for the run, never rows."""
    env = prepare(registry=registry)
    request = env["request"]
    request.tm = transaction.TransactionManager(explicit=True)

    def run(func: JobFunction, **kw: Any) -> Any:
        with request.tm:
            return func(request, **kw)

    try:
        yield run
    finally:
        env["closer"]()


def database_now(db: Any) -> dt.datetime:
    """The database server's clock (UTC): leases are compared across processes and
    machines, so they never use a process's own clock (nor the engine's simulated one)."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        value = db.scalar(text("SELECT clock_timestamp()"))
    elif dialect in ("mysql", "mariadb"):
        value = db.scalar(text("SELECT UTC_TIMESTAMP(6)"))
    else:
        value = dt.datetime.fromisoformat(db.scalar(text(
            "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _try_lease(request: Any, job_id: str, owner: str, ttl_s: float) -> bool:
    db = request.dbsession
    now = database_now(db)
    expires = now + dt.timedelta(seconds=ttl_s)
    # Look first, then insert or update: an UPDATE of a row that does not exist yet takes gap
    # locks on MariaDB, and schedulers starting all their jobs at once would deadlock.
    if db.scalar(select(JobLease.job_id).where(JobLease.job_id == job_id)) is None:
        try:
            with db.begin_nested():
                db.add(JobLease(job_id=job_id, owner=owner, expires_at=expires))
        except IntegrityError:
            return False  # another scheduler took it first
        return True
    result = db.execute(
        update(JobLease)
        .where(JobLease.job_id == job_id)
        .where((JobLease.expires_at < now) | (JobLease.owner == owner))
        .values(owner=owner, expires_at=expires)
    )
    return bool(result.rowcount)


def _renew_lease(request: Any, job_id: str, owner: str, ttl_s: float) -> bool:
    db = request.dbsession
    expires = database_now(db) + dt.timedelta(seconds=ttl_s)
    return bool(db.execute(update(JobLease).where(JobLease.job_id == job_id,
                                                  JobLease.owner == owner)
                           .values(expires_at=expires)).rowcount)


def _release_lease(request: Any, job_id: str, owner: str) -> None:
    request.dbsession.execute(
        delete(JobLease).where(JobLease.job_id == job_id, JobLease.owner == owner)
    )


class _LeaseRenewal(threading.Thread):
    """Renews a singleton job's lease while a long run holds it (every third of its time)."""

    def __init__(self, registry: Any, job: Job, owner: str, ttl_s: float) -> None:
        super().__init__(name=f"lease-{job.id}", daemon=True)
        self.registry, self.job, self.owner, self.ttl_s = registry, job, owner, ttl_s
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.ttl_s / 3):
            try:
                run_in_transaction(self.registry, _renew_lease, job_id=self.job.id,
                                   owner=self.owner, ttl_s=self.ttl_s)
            except Exception:
                log.exception("lease of job %s not renewed", self.job.id)


def lease_ttl(job: Job) -> float:
    """How long a lease lasts: short, because it is renewed while the run goes on, and a
    crashed scheduler's leases must not keep its successor waiting long."""
    return max(job.interval_s * 3, 15.0)


def run_job(registry: Any, job: Job, **kw: Any) -> Any:
    """Run one job now (a lease first, for singleton jobs, renewed while it runs). Errors
    are logged, not raised, so that one failing run never stops the scheduler."""
    owner = owner_name()
    ttl = lease_ttl(job)
    try:
        try:
            leased = not job.singleton or run_in_transaction(
                registry, _try_lease, job_id=job.id, owner=owner, ttl_s=ttl)
        except OperationalError:  # a deadlock or lock timeout: another scheduler competes
            log.info("job %s: lease not taken this time", job.id, exc_info=True)
            return None
        if not leased:
            log.debug("job %s runs elsewhere; skipped", job.id)
            return None
        renewal = _LeaseRenewal(registry, job, owner, ttl) if job.singleton else None
        if renewal is not None:
            renewal.start()
        try:
            return run_in_transaction(registry, job.func, **kw)
        finally:
            if renewal is not None:
                renewal.done.set()
            if job.singleton:
                run_in_transaction(registry, _release_lease, job_id=job.id, owner=owner)
    except Exception:
        log.exception("job %s failed", job.id)
        return None


class JobRegistry:
    """The periodic jobs of the engine, billing and plugins (``config.add_job``)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        self.jobs[job.id] = job

    def __getitem__(self, job_id: str) -> Job:
        return self.jobs[job_id]
