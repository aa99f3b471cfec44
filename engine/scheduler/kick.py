"""Kicks: work that must follow a commit (the next provisioning step, a recorded call).

A kicker decides how the kicked job is woken:

* ``inline`` (tests and scripts): run right after the commit, in the same thread;
* ``scheduler`` (``make run``, ``qrm serve`` with the scheduler in the process): wake the
  in-process scheduler's job (``Waker``) after the commit, no one-off jobs;
* ``database`` (production web workers, a separate ``qrm scheduler``): tell the schedulers
  of every process through the database, inside the kicking transaction so that the wake-up
  and the work commit together: ``NOTIFY qrm_wakeup`` on PostgreSQL, elsewhere a counter in
  ``job_wakeup`` that the schedulers poll several times a second;
* ``none``: nothing; the job's interval picks the work up.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

log = logging.getLogger(__name__)

#: the PostgreSQL channel of wake-ups (payload: the job id)
CHANNEL = "qrm_wakeup"


class NullKicker:
    def kick(self, job_id: str, **kw: Any) -> None:
        """Nothing to do: the periodic job picks the work up."""


class InlineKicker:
    """Run the job synchronously right after the commit (tests and scripts)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.running = False

    def kick(self, job_id: str, **kw: Any) -> None:
        from engine.scheduler.runner import run_job

        if self.running:  # a job's own commit must not recurse into more jobs
            return
        self.running = True
        try:
            run_job(self.registry, self.registry["qrm.jobs"][job_id], **kw)
        finally:
            self.running = False


class DatabaseKicker:
    """Wake schedulers in other processes through the database (module docstring)."""

    def kick_in_transaction(self, request: Any, job_id: str) -> None:
        db = request.dbsession
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("SELECT pg_notify(:channel, :job)"),
                       {"channel": CHANNEL, "job": job_id})
            return
        bump_wakeup(db, job_id)

    def kick(self, job_id: str, **kw: Any) -> None:
        """Kicks outside a transaction cannot reach other processes; the interval will."""


def bump_wakeup(db: Any, job_id: str) -> None:
    from engine.scheduler.models import JobWakeup

    bump = update(JobWakeup).where(JobWakeup.job_id == job_id).values(seq=JobWakeup.seq + 1)
    if db.execute(bump).rowcount:
        return
    try:
        with db.begin_nested():
            db.add(JobWakeup(job_id=job_id, seq=1))
    except IntegrityError:  # another kick made the row meanwhile
        db.execute(bump)


def kick_after_commit(request: Any, job_id: str, **kw: Any) -> None:
    """Have job ``job_id`` run soon after the current transaction has committed."""
    kicker = request.registry.get("qrm.kicker") or NullKicker()
    in_transaction = getattr(kicker, "kick_in_transaction", None)
    if in_transaction is not None:
        in_transaction(request, job_id)
        return

    def _after_commit(success: bool) -> None:
        if success:
            try:
                kicker.kick(job_id, **kw)
            except Exception:
                log.exception("kick of %s failed; its interval will pick the work up", job_id)

    request.tm.get().addAfterCommitHook(_after_commit)
