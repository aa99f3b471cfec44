"""APScheduler in-process: every registered job at its interval, woken early by kicks.

A kick never adds a job: it marks the job due and moves its next run to now (``Waker``). A
kick that arrives while the job runs makes it run once more right after, so no work waits a
whole interval because it was committed a moment too late. Kicks from other processes
arrive through PostgreSQL ``LISTEN`` or, elsewhere, a poll of ``job_wakeup`` several times a
second (``engine.scheduler.kick``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from engine.scheduler.kick import CHANNEL
from engine.scheduler.runner import Job, run_job

log = logging.getLogger(__name__)

#: seconds between polls of ``job_wakeup`` (databases without LISTEN/NOTIFY)
POLL_INTERVAL = 0.2


class Waker:
    """Runs the jobs for the scheduler and wakes them early."""

    def __init__(self, scheduler: BackgroundScheduler, registry: Any) -> None:
        self.scheduler, self.registry = scheduler, registry
        self._due: dict[str, bool] = {}
        self._lock = threading.Lock()

    def run(self, job: Job) -> None:
        """One scheduled run, repeated while kicks arrived during it."""
        while True:
            with self._lock:
                self._due[job.id] = False
            run_job(self.registry, job)
            with self._lock:
                if not self._due.get(job.id):
                    return

    def wake(self, job_id: str) -> None:
        if job_id not in self.registry["qrm.jobs"].jobs:
            log.warning("wake-up for unknown job %r ignored", job_id)
            return
        with self._lock:
            self._due[job_id] = True
        with contextlib.suppress(JobLookupError):  # shutting down
            self.scheduler.modify_job(job_id, next_run_time=dt.datetime.now(dt.UTC))


class SchedulerKicker:
    """``qrm.kick = scheduler``: wake this process's scheduler after the commit."""

    def __init__(self, waker: Waker) -> None:
        self.waker = waker

    def kick(self, job_id: str, **kw: Any) -> None:
        self.waker.wake(job_id)


class WakeupListener(threading.Thread):
    """Receives other processes' kicks: PostgreSQL LISTEN, else a poll of ``job_wakeup``.

    ``open`` (called before the scheduler's first runs) starts listening, or reads the
    counters it will compare with, so that no kick falls between those runs and the first
    one it hears. After a lost connection every job is woken once: kicks may have been
    missed meanwhile."""

    def __init__(self, registry: Any, waker: Waker) -> None:
        super().__init__(name="qrm-wakeups", daemon=True)
        self.registry, self.waker = registry, waker
        self.stopped = threading.Event()
        self.engine = registry["dbsession_factory"].kw["bind"]
        self._connection: Any = None
        self._seen: dict[str, int] | None = None

    def open(self) -> None:
        if self.engine.dialect.name == "postgresql":
            self._connection = self.engine.connect()
            self._connection.exec_driver_sql(f"LISTEN {CHANNEL}")
            self._connection.commit()
            self._connection.connection.driver_connection.autocommit = True
        else:
            self._seen = self._counters()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                if self._connection is None and self._seen is None:
                    self.open()
                    for job_id in self.registry["qrm.jobs"].jobs:
                        self.waker.wake(job_id)  # what was kicked while we were away
                if self._connection is not None:
                    self._listen()
                else:
                    self._poll()
            except Exception:
                log.exception("wake-up listener failed; starting again in a second")
                self._close()
                self.stopped.wait(1)
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection, self._seen = None, None

    def _listen(self) -> None:
        raw = self._connection.connection.driver_connection
        while not self.stopped.is_set():
            for notify in raw.notifies(timeout=0.5):
                self.waker.wake(notify.payload)

    def _counters(self) -> dict[str, int]:
        from engine.scheduler.models import JobWakeup

        with self.engine.connect() as connection:
            counters = dict(connection.execute(select(JobWakeup.job_id, JobWakeup.seq)).all())
            connection.rollback()
        return counters

    def _poll(self) -> None:
        while not self.stopped.is_set():
            counters = self._counters()
            for job_id, seq in counters.items():
                if seq != (self._seen or {}).get(job_id):
                    self.waker.wake(job_id)
            self._seen = counters
            self.stopped.wait(POLL_INTERVAL)


class RunningScheduler:
    """The scheduler of this process, with its wake-up listener."""

    def __init__(self, scheduler: BackgroundScheduler, listener: WakeupListener | None) -> None:
        self.scheduler, self.listener = scheduler, listener

    def shutdown(self, wait: bool = True) -> None:
        if self.listener is not None:
            self.listener.stop()
        self.scheduler.shutdown(wait=wait)


def start_scheduler(registry: Any, *, listen: bool = True) -> RunningScheduler:
    """Start a BackgroundScheduler running every job of ``registry['qrm.jobs']``; with
    ``listen``, other processes' kicks wake it too."""
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone="UTC",
    )
    waker = Waker(scheduler, registry)
    started = dt.datetime.now(dt.UTC)
    for job in registry["qrm.jobs"].jobs.values():
        # every job runs once at start: a restarted scheduler catches up at once
        scheduler.add_job(waker.run, "interval", seconds=job.interval_s, id=job.id,
                          args=[job], name=job.id, next_run_time=started)
    if not hasattr(registry.get("qrm.kicker"), "kick_in_transaction"):
        registry["qrm.kicker"] = SchedulerKicker(waker)
    listener = WakeupListener(registry, waker) if listen else None
    if listener is not None:
        listener.open()  # before the first runs: no kick falls in between
    scheduler.start()
    if listener is not None:
        listener.start()
    log.info("scheduler started with %d jobs", len(registry["qrm.jobs"].jobs))
    return RunningScheduler(scheduler, listener)
