"""The event log: every state change, with who did it."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, UTCDateTime, utcnow
from engine.types import JsonValue, enum_type


class EventLevel(enum.Enum):
    """syslog-like severities; ``error`` and worse count as error events."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"
    INFO = "info"
    DEBUG = "debug"

    @property
    def is_error(self) -> bool:
        return self in (EventLevel.CRITICAL, EventLevel.ERROR)


class Event(Base):
    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_object", "object_type", "object_id"),
        Index("ix_event_time", "time"),
        # the log-in throttle counts one actor's recent failures on every log-in
        Index("ix_event_actor_name_time", "actor", "name", "time"),
        # the console's event log counts its filters (by level and source) and the open errors
        # on every page, from the index alone
        Index("ix_event_level_source", "level", "source", "acknowledged"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[EventLevel] = mapped_column(enum_type(EventLevel), default=EventLevel.NOTICE)
    #: the component that wrote it (``cloud``, ``billing``, ``plugin:sim`` …)
    source: Mapped[str] = mapped_column(String(50))
    #: short machine-readable name of what happened (``request.approved``)
    name: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    #: ``admin:alice``, ``user:bob``, ``system:scheduler``, ``plugin:sim``
    actor: Mapped[str] = mapped_column(String(120))
    object_type: Mapped[str | None] = mapped_column(String(50))
    object_id: Mapped[int | None] = mapped_column(Integer)
    acknowledged: Mapped[bool] = mapped_column(default=False)
    command_id: Mapped[int | None] = mapped_column(Integer)


class Notice(Base):
    """A notice for people (the admins, a cloud user), ready to be mailed: the mail feature
    sends those with ``sent_at`` NULL. ``msgid`` and ``mapping`` let it render the text in the
    recipient's language (the engine's catalog); ``subject`` and ``body`` are the English."""

    __tablename__ = "notice"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: ``admins`` or ``cloud_user:<id>``
    recipient: Mapped[str] = mapped_column(String(60))
    #: what it is about (``ha.failover``)
    name: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    msgid: Mapped[str] = mapped_column(Text, default="")
    mapping: Mapped[dict] = mapped_column(JsonValue, default=dict)
    object_type: Mapped[str | None] = mapped_column(String(50))
    object_id: Mapped[int | None] = mapped_column(Integer)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
