"""Scheduled jobs: registry, runner, kicks."""

from typing import Any


def add_job(config: Any, job_id: str, func: Any, interval_s: float, singleton: bool = True) -> None:
    """``config.add_job(...)``: register a periodic job (engine packages and plugins)."""
    from engine.scheduler.runner import Job

    config.registry["qrm.jobs"].add(Job(job_id, func, interval_s, singleton))


def includeme(config: Any) -> None:
    from engine.scheduler.kick import DatabaseKicker, InlineKicker, NullKicker
    from engine.scheduler.runner import JobRegistry

    config.registry.setdefault("qrm.jobs", JobRegistry())
    config.add_directive("add_job", add_job)
    kick = config.get_settings().get("qrm.kick", "thread")
    if kick == "inline":
        config.registry["qrm.kicker"] = InlineKicker(config.registry)
    elif kick == "database":
        config.registry["qrm.kicker"] = DatabaseKicker()
    else:
        config.registry.setdefault("qrm.kicker", NullKicker())
