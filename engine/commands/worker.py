"""The command worker: the ``commands.drain`` job, every 2 s in every scheduler process.

Each command goes through the outside-work protocol (docs/architecture.md):

1. **Claim** (transaction 1). The next due command — ``queued`` with ``not_before <= now``,
   or ``running`` with a claim that ran out (its worker died) — is locked (``SELECT … FOR
   UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB; on SQLite the transaction holds the writer
   lock from its start) and set to ``running``: ``attempts + 1``, ``claimed_by``,
   ``claimed_until = now + timeout + CLAIM_MARGIN_S``, ``started_at``. The claim commits
   before the command runs, so the intent is on record whatever happens next.
2. **Run**, with no transaction open, through its executor (``ssh`` to the SSH target of
   its resource or storage host, over the process's pool of one connection per endpoint,
   host keys pinned in ``ssh_host_key``; or ``local``), bounded by the command's timeout.
3. **Outcome** (transaction 2), if the claim is still this attempt's: exit 0 → ``done``; any
   other exit code, a timeout, a refused host key or login → ``failed`` (not retried: the
   command did run, or cannot); the target unreachable → ``queued`` again after
   ``RETRY_BASE_S · 2^(attempts-1)`` seconds, ``failed`` after ``max_attempts`` (3).

A worker that crashes between 1 and 3 leaves a ``running`` row whose claim runs out; the
next worker claims it again (and fails it once it has used up ``max_attempts``). A worker
whose claim ran out while it was still running finds the row re-claimed at step 3 and
discards its outcome. So a command can run more than once, and **every command must be
idempotent**: running it twice leaves the target as running it once would.

Every state change is written to the event log by ``system:commands``; the ERROR event of
a failure names the command, carries its id (``event.command_id``) and the tail of its
output; an admin re-runs it from the console or with ``qrm commands rerun ID``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shlex
from typing import Any

from sqlalchemy import and_, or_, select

from engine.commands.executors import AGENT_EXECUTOR, EXECUTORS, Outcome, execute
from engine.commands.models import Command, CommandState
from engine.commands.ssh import SshTarget
from engine.commands.targets import ssh_target, worker_pool
from engine.datacenter.models import Resource, Storage
from engine.datacenter.services import supports_row_locks
from engine.db import utcnow
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.scheduler.runner import owner_name, run_in_transaction
from engine.security import Actor

log = logging.getLogger(__name__)

JOB_ID = "commands.drain"
INTERVAL_S = 2.0
WORKER_ACTOR = Actor.system("commands")
#: a claim lasts the command's timeout plus this (connecting, recording the outcome)
CLAIM_MARGIN_S = 60
#: the first retry of an unreachable target waits this long, each further one twice as long
RETRY_BASE_S = 30
#: the ``output`` column keeps this many characters: the head and the tail around a marker
#: (16 000 characters are at most 64 000 bytes of UTF-8, within MariaDB's TEXT)
MAX_STORED_OUTPUT = 16000
#: the failure event quotes this many characters of the end of the output
EVENT_OUTPUT_TAIL = 500


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claimed attempt of a command: everything needed to run it, read in the claim's
    transaction (so that running needs no database)."""

    command_id: int
    attempt: int
    executor: str
    argv: tuple[str, ...]
    timeout_s: int
    target: SshTarget | None = None
    #: why it cannot run as queued (found while claiming); recorded as its failure
    refusal: str | None = None


def drain_commands_job(request: Any, *, max_commands: int = 100) -> int:
    """The ``commands.drain`` job: run due commands one at a time until none is due (at most
    ``max_commands`` per run); return how many ran.

    The job's own transaction stays empty: each claim and each outcome is a transaction of
    its own, and the command runs between them with none open."""
    owner = owner_name()
    count = 0
    while count < max_commands and run_one(request.registry, owner=owner):
        count += 1
    return count


def run_one(registry: Any, *, owner: str) -> bool:
    """Claim, run and record one due command; False if none was due."""
    claim = run_in_transaction(registry, claim_next, owner=owner)
    if claim is None:
        return False
    outcome = run_claim(claim, pool=worker_pool(registry))
    run_in_transaction(registry, record_outcome, claim=claim, outcome=outcome)
    return True


def run_claim(claim: Claim, *, pool: Any = None) -> Outcome:
    """Run one claimed attempt (no transaction open; the pool may read and pin host keys
    in transactions of its own)."""
    if claim.refusal is not None:
        return Outcome(None, error=claim.refusal)
    try:
        return execute(claim.executor, claim.argv, claim.timeout_s, target=claim.target,
                       pool=pool)
    except Exception as error:  # recorded as the attempt's failure instead of a stuck claim
        log.exception("command %s: the executor failed", claim.command_id)
        return Outcome(None, error=f"internal error: {error!r}")


def claim_next(request: Any, *, owner: str) -> Claim | None:
    """Claim the next due command for ``owner`` (in the caller's transaction)."""
    db = request.dbsession
    events = request.find_service(EventService)
    while True:
        now = utcnow()
        command = _next_due(db, now)
        if command is None:
            return None
        if command.state is CommandState.RUNNING:
            if _give_up_lost(command, events, now):
                continue
            events.log(source="commands", name="command.reclaimed", actor=WORKER_ACTOR,
                       obj=command, level=EventLevel.WARNING,
                       message=f"command {command.id}: the claim of {command.claimed_by} ran "
                       f"out at {command.claimed_until:%Y-%m-%d %H:%M:%S} UTC without an "
                       "outcome; claimed again")
        return _claim(request, command, owner=owner, now=now, events=events)


def _next_due(db: Any, now: dt.datetime) -> Command | None:
    due = and_(or_(
        and_(Command.state == CommandState.QUEUED, Command.not_before <= now),
        and_(Command.state == CommandState.RUNNING, Command.claimed_until < now),
    ), Command.executor != AGENT_EXECUTOR)
    query = select(Command).where(due).order_by(Command.not_before, Command.id).limit(1)
    if supports_row_locks(db):
        query = query.with_for_update(skip_locked=True)
    return db.scalar(query)


def _give_up_lost(command: Command, events: EventService, now: dt.datetime) -> bool:
    """Fail a command whose claims ran out ``max_attempts`` times (it may kill its worker)."""
    if command.attempts < command.max_attempts:
        return False
    _finish(command, CommandState.FAILED, now,
            error=f"the worker running it stopped without an outcome "
            f"({command.attempts} of {command.max_attempts} attempts)")
    _log_failure(events, command)
    return True


def _claim(request: Any, command: Command, *, owner: str, now: dt.datetime,
           events: EventService) -> Claim:
    command.state = CommandState.RUNNING
    command.attempts += 1
    command.claimed_by = owner
    command.claimed_until = now + dt.timedelta(seconds=command.timeout_s + CLAIM_MARGIN_S)
    command.started_at = now
    target, refusal = _target(request, command)
    events.log(source="commands", name="command.started", actor=WORKER_ACTOR, obj=command,
               level=EventLevel.INFO,
               message=f"command {command.id} started (attempt {command.attempts} of "
               f"{command.max_attempts}, queued by {command.actor}) "
               f"{_where(command, target)}: {shlex.join(command.argv)}")
    request.dbsession.flush()
    return Claim(command_id=command.id, attempt=command.attempts, executor=command.executor,
                 argv=tuple(command.argv), timeout_s=command.timeout_s, target=target,
                 refusal=refusal)


def _target(request: Any, command: Command) -> tuple[SshTarget | None, str | None]:
    """Where an ``ssh`` command goes, or why it cannot go anywhere."""
    if command.executor not in EXECUTORS:
        return None, f"unknown executor {command.executor!r} (one of {', '.join(EXECUTORS)})"
    if command.executor != "ssh":
        return None, None
    db = request.dbsession
    machine: Resource | Storage | None = None
    if command.storage_id is not None:
        machine = db.get(Storage, command.storage_id)
    elif command.resource_id is not None:
        machine = db.get(Resource, command.resource_id)
    if machine is None:
        return None, "an ssh command needs a resource or a storage host to run on"
    try:
        return ssh_target(request.registry.settings, machine), None
    except ValueError as error:  # no address, a bad qrm.ssh.* setting or key reference
        return None, str(error)


def _where(command: Command, target: SshTarget | None) -> str:
    if command.executor == "local":
        return "on the engine's machine"
    machine = (f"storage {command.storage_id}" if command.storage_id is not None
               else f"resource {command.resource_id}")
    if target is not None:
        return f"on {machine} ({target.user}@{target.name})"
    return f"on {machine}"


def record_outcome(request: Any, *, claim: Claim, outcome: Outcome) -> None:
    """Record what became of ``claim`` (in the caller's transaction), unless its claim ran
    out and another attempt holds the command now."""
    db = request.dbsession
    events = request.find_service(EventService)
    query = select(Command).where(Command.id == claim.command_id)
    if supports_row_locks(db):
        query = query.with_for_update()
    command = db.scalar(query)
    if command is None:
        return
    if command.state is not CommandState.RUNNING or command.attempts != claim.attempt:
        events.log(source="commands", name="command.outcome_discarded", actor=WORKER_ACTOR,
                   obj=command, level=EventLevel.WARNING,
                   message=f"command {command.id}: attempt {claim.attempt} ended after its "
                   f"claim ran out; its outcome ({_describe(outcome)}) is discarded")
        return
    now = utcnow()
    command.output = stored_output(outcome.stdout, outcome.stderr)
    command.exit_code = outcome.exit_code
    if outcome.retry and command.attempts < command.max_attempts:
        _requeue(command, outcome, now, events)
    elif outcome.succeeded:
        _finish(command, CommandState.DONE, now, error=None)
        events.log(source="commands", name="command.done", actor=WORKER_ACTOR, obj=command,
                   level=EventLevel.INFO, message=f"command {command.id} done (exit 0)")
    else:
        error = outcome.error
        if outcome.retry:
            error = f"{error} (gave up after {command.attempts} attempts)"
        _finish(command, CommandState.FAILED, now, error=error)
        _log_failure(events, command)


def _requeue(command: Command, outcome: Outcome, now: dt.datetime,
             events: EventService) -> None:
    command.state = CommandState.QUEUED
    command.not_before = now + retry_delay(command.attempts)
    command.error = outcome.error
    command.claimed_by = command.claimed_until = None
    events.log(source="commands", name="command.retry", actor=WORKER_ACTOR, obj=command,
               level=EventLevel.WARNING,
               message=f"command {command.id}: attempt {command.attempts} of "
               f"{command.max_attempts} failed ({outcome.error}); next attempt at "
               f"{command.not_before:%Y-%m-%d %H:%M:%S} UTC")


def _finish(command: Command, state: CommandState, now: dt.datetime, *,
            error: str | None) -> None:
    command.state = state
    command.finished_at = now
    command.error = error
    command.claimed_by = command.claimed_until = None


def _log_failure(events: EventService, command: Command) -> None:
    reason = command.error or f"exit {command.exit_code}"
    message = (f"command {command.id} failed after {command.attempts} of "
               f"{command.max_attempts} attempts: {reason}: {shlex.join(command.argv)}")
    tail = output_tail(command.output or "")
    if tail:
        message += f"\noutput (end): {tail}"
    event = events.log(source="commands", name="command.failed", actor=WORKER_ACTOR,
                       obj=command, level=EventLevel.ERROR, message=message)
    event.command_id = command.id


def output_tail(output: str, length: int = EVENT_OUTPUT_TAIL) -> str:
    """The end of a command's output, for an event (``…`` marks a cut)."""
    output = output.strip()
    return output if len(output) <= length else "…" + output[-length:]


def _describe(outcome: Outcome) -> str:
    return outcome.error or f"exit {outcome.exit_code}"


def retry_delay(attempts: int) -> dt.timedelta:
    """The pause after ``attempts`` attempts that found the target unreachable."""
    return dt.timedelta(seconds=RETRY_BASE_S * 2 ** (attempts - 1))


def stored_output(stdout: bytes, stderr: bytes) -> str:
    """stdout followed by stderr as text, at most ``MAX_STORED_OUTPUT`` characters: the
    head and the tail, with a marker saying how much was left out."""
    text = stdout.decode("utf-8", "replace")
    error_text = stderr.decode("utf-8", "replace")
    if text and error_text and not text.endswith("\n"):
        text += "\n"
    text += error_text
    if len(text) <= MAX_STORED_OUTPUT:
        return text
    keep = (MAX_STORED_OUTPUT - 100) // 2
    left_out = len(text) - 2 * keep
    return f"{text[:keep]}\n[… {left_out} characters of output left out …]\n{text[-keep:]}"
