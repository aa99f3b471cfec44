"""The remote command queue: services enqueue argv lists; the worker runs them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine.commands.models import Command
from engine.datacenter.models import Resource
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
        """Queue ``argv`` to run on ``resource`` (or locally); never a shell string."""
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
