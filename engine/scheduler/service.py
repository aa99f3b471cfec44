"""APScheduler in-process: every registered job at its interval, plus one-off kicks."""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from engine.scheduler.runner import run_job

log = logging.getLogger(__name__)


class SchedulerKicker:
    def __init__(self, scheduler: BackgroundScheduler, registry: Any) -> None:
        self.scheduler, self.registry = scheduler, registry

    def kick(self, job_id: str, **kw: Any) -> None:
        job = self.registry["qrm.jobs"][job_id]
        self.scheduler.add_job(run_job, args=[self.registry, job], kwargs=kw,
                               misfire_grace_time=None)


def start_scheduler(registry: Any) -> BackgroundScheduler:
    """Start a BackgroundScheduler running every job of ``registry['qrm.jobs']``."""
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone="UTC",
    )
    for job in registry["qrm.jobs"].jobs.values():
        scheduler.add_job(run_job, "interval", seconds=job.interval_s, id=job.id,
                          args=[registry, job], name=job.id)
    registry["qrm.kicker"] = SchedulerKicker(scheduler, registry)
    scheduler.start()
    log.info("scheduler started with %d jobs", len(registry["qrm.jobs"].jobs))
    return scheduler
