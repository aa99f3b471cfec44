"""After-commit triggers: work that must follow a commit (the next provisioning step).

A kicker decides how the triggered work runs: on the in-process scheduler (``make run``, the
``qrm scheduler`` process), inline right after the commit (tests), or not at all (web workers
in production: the sweep job finds the work within seconds).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class NullKicker:
    def kick(self, job_id: str, **kw: Any) -> None:
        """Nothing to do: the periodic sweep picks the work up."""


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


def kick_after_commit(request: Any, job_id: str, **kw: Any) -> None:
    """Trigger job ``job_id`` once the current transaction has committed."""
    kicker = request.registry.get("qrm.kicker") or NullKicker()

    def _after_commit(success: bool) -> None:
        if success:
            try:
                kicker.kick(job_id, **kw)
            except Exception:
                log.exception("kick of %s failed; the sweep will pick it up", job_id)

    request.tm.get().addAfterCommitHook(_after_commit)
