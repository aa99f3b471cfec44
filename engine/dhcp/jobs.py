"""``dhcp.write``: keep the configured file (and its server) in step with the rows.

Kicked after every commit that changes what the file says (``engine.dhcp.triggers``), and
run every minute as the backstop. The job's own request never touches the database (on
SQLite an open transaction would hold the writer lock while a reload hook runs): reading
the rows and recording the outcome are transactions of their own, the file is written and
the hook run between them with none open.
"""

from __future__ import annotations

from typing import Any

from engine.dhcp.services import DhcpService
from engine.dhcp.settings import DhcpSettings
from engine.dhcp.writer import WriteOutcome, write_config
from engine.errors import QrmError
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor

JOB_ID = "dhcp.write"
INTERVAL_S = 60
ACTOR = Actor.system("dhcp")


def _render(request: Any, settings: DhcpSettings) -> tuple[str, int]:
    service = request.find_service(DhcpService)
    plan = service.plan(settings)
    return service.render(plan, settings.server), plan.reservation_count


def _record(request: Any, outcome: WriteOutcome, server: str, reservations: int) -> None:
    events = request.find_service(EventService)
    if outcome.written:
        events.log(source="dhcp", name="dhcp.written", actor=ACTOR, level=EventLevel.NOTICE,
                   message=f"{server} configuration written to {outcome.path}: "
                   f"{reservations} reservation(s), digest {outcome.digest[:12]}")
    reload = outcome.reload
    if reload is not None and reload.succeeded:
        events.log(source="dhcp", name="dhcp.reloaded", actor=ACTOR, level=EventLevel.INFO,
                   message=f"{server} reloaded ({' '.join(reload.argv)}) with "
                   f"{outcome.digest[:12]}")
    elif reload is not None:
        why = reload.error or f"exit code {reload.exit_code}"
        events.log(source="dhcp", name="dhcp.reload_failed", actor=ACTOR,
                   level=EventLevel.ERROR,
                   message=f"reloading {server} failed ({' '.join(reload.argv)}, attempt "
                   f"{reload.attempt}): {why}. {reload.output}".strip())


def write_job(request: Any) -> WriteOutcome | None:
    """``dhcp.write``: render, write when changed, reload, record (module docstring)."""
    registry = request.registry
    try:
        settings = DhcpSettings.from_settings(registry.settings)
    except QrmError as error:
        run_in_transaction(registry, _invalid_settings, message=error.message)
        return None
    if not settings.writes:
        return None
    text, reservations = run_in_transaction(registry, _render, settings=settings)
    outcome = write_config(settings.config_path, text, reload_argv=settings.reload_argv,
                           reload_timeout_s=settings.reload_timeout_s)
    if outcome.written or outcome.reload is not None:
        run_in_transaction(registry, _record, outcome=outcome, server=settings.server,
                           reservations=reservations)
    return outcome


def _invalid_settings(request: Any, message: str) -> None:
    events = request.find_service(EventService)
    last = events.recent(limit=1, object_type="dhcp")
    if last and last[0].message == message:
        return  # said once; not every minute
    events.log(source="dhcp", name="dhcp.settings_invalid", actor=ACTOR,
               level=EventLevel.ERROR, message=message, object_type="dhcp", object_id=0)
