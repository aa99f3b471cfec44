"""The event log service: one call writes a state change with its actor."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.events.models import Event, EventLevel
from engine.paging import DEFAULT_SIZE, KeysetPager, Page
from engine.security import Actor

log = logging.getLogger("qrm.events")

#: the console's event log: newest first
EVENT_PAGER = KeysetPager(Event.id, descending=True)
ERROR_LEVELS = (EventLevel.CRITICAL, EventLevel.ERROR)

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

    def page(self, *, level: EventLevel | None = None, source: str | None = None,
             errors_only: bool = False, after: str | None = None, before: str | None = None,
             size: int = DEFAULT_SIZE) -> Page:
        """One page of the log, newest first, of one level and one source if given."""
        query = select(Event)
        if errors_only:
            query = query.where(Event.level.in_(ERROR_LEVELS))
        if level is not None:
            query = query.where(Event.level == level)
        if source is not None:
            query = query.where(Event.source == source)
        return EVENT_PAGER.page(self.db, query, after=after, before=before, size=size)

    def tally(self) -> list[tuple[EventLevel, str, int]]:
        """``(level, source, count)`` for every combination there is: the console's filter
        counts, in one grouped query."""
        return [tuple(row) for row in self.db.execute(
            select(Event.level, Event.source, func.count(Event.id))
            .group_by(Event.level, Event.source))]

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
