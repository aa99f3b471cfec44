"""The event log service: one call writes a state change with its actor."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.events.models import Event, EventLevel
from engine.security import Actor

log = logging.getLogger("qrm.events")

_LOG_LEVELS = {
    EventLevel.CRITICAL: logging.CRITICAL,
    EventLevel.ERROR: logging.ERROR,
    EventLevel.WARNING: logging.WARNING,
    EventLevel.NOTICE: logging.INFO,
    EventLevel.INFO: logging.INFO,
    EventLevel.DEBUG: logging.DEBUG,
}


class EventService:
    """Writes and reads the event log. Every row is kept: nothing is merged or purged silently."""

    def __init__(self, db: Session) -> None:
        self.db = db

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> EventService:
        return cls(request.dbsession)

    def log(self, *, source: str, name: str, message: str, actor: Actor,
            level: EventLevel = EventLevel.NOTICE, obj: Any = None,
            object_type: str | None = None, object_id: int | None = None) -> Event:
        """Record that ``actor`` did ``name`` (to ``obj``); also sent to Python logging."""
        if obj is not None:
            object_type = object_type or obj.__tablename__
            object_id = object_id if object_id is not None else obj.id
        event = Event(source=source, name=name, message=message, actor=actor.label,
                      level=level, object_type=object_type, object_id=object_id)
        self.db.add(event)
        log.log(_LOG_LEVELS[level], "%s %s (%s): %s", source, name, actor.label, message)
        return event

    def recent(self, *, limit: int = 100, errors_only: bool = False,
               object_type: str | None = None, object_id: int | None = None) -> list[Event]:
        query = select(Event).order_by(Event.id.desc()).limit(limit)
        if errors_only:
            query = query.where(Event.level.in_([EventLevel.CRITICAL, EventLevel.ERROR]))
        if object_type is not None:
            query = query.where(Event.object_type == object_type)
        if object_id is not None:
            query = query.where(Event.object_id == object_id)
        return list(self.db.scalars(query))

    def count_open_errors(self) -> int:
        return self.db.scalar(
            select(func.count(Event.id)).where(
                Event.level.in_([EventLevel.CRITICAL, EventLevel.ERROR]),
                Event.acknowledged.is_(False),
            )
        ) or 0

    def acknowledge(self, event_id: int, *, actor: Actor) -> Event | None:
        event = self.db.get(Event, event_id)
        if event is not None and not event.acknowledged:
            event.acknowledged = True
            self.log(source="events", name="event.acknowledged", actor=actor,
                     message=f"event {event_id} acknowledged", object_type="event",
                     object_id=event_id, level=EventLevel.INFO)
        return event
