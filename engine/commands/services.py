"""The remote command queue: services enqueue argv lists; the worker runs them.

A queued command may run more than once (see :mod:`engine.commands.worker`): enqueue only
idempotent commands, ones that leave the target as they found it when run a second time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine.commands.models import Command, CommandState
from engine.datacenter.models import Resource
from engine.db import utcnow
from engine.errors import InvalidState, NotFound
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.security import Actor


class CommandService:
    def __init__(self, db: Session, *, events: EventService) -> None:
        self.db, self.events = db, events

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> CommandService:
        return cls(request.dbsession, events=request.find_service(EventService))

    def enqueue(self, resource: Resource | None, argv: list[str], *, actor: Actor,
                executor: str = "ssh", timeout_s: int = 30) -> Command:
        """Queue ``argv`` to run on ``resource`` (or locally); never a shell string.

        The command must be idempotent: the worker may run it more than once."""
        if not argv or not all(isinstance(arg, str) for arg in argv):
            raise ValueError("argv must be a non-empty list of strings")
        command = Command(resource_id=resource.id if resource else None, argv=list(argv),
                          executor=executor, timeout_s=timeout_s, actor=actor.label)
        self.db.add(command)
        self.db.flush()
        self.events.log(source="commands", name="command.queued", actor=actor, obj=command,
                        level=EventLevel.INFO,
                        message=f"command {command.id} queued for "
                        + (f"resource {resource.id}" if resource else "the engine")
                        + f": {' '.join(argv)}")
        return command

    def rerun(self, command_id: int, *, actor: Actor) -> Command:
        """Queue a failed command again, with a fresh set of attempts."""
        command = self.db.get(Command, command_id)
        if command is None:
            raise NotFound(f"no command {command_id}")
        if command.state is not CommandState.FAILED:
            raise InvalidState(f"command {command_id} is {command.state.value}, not failed")
        command.state = CommandState.QUEUED
        command.attempts = 0
        command.not_before = utcnow()
        command.finished_at = command.exit_code = command.error = None
        self.events.log(source="commands", name="command.rerun", actor=actor, obj=command,
                        level=EventLevel.NOTICE, message=f"command {command.id} queued again")
        return command
