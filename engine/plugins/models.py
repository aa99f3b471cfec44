"""Persisted plugin states."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, UTCDateTime, utcnow
from engine.types import enum_type


class PluginState(enum.Enum):
    DISABLED = "disabled"
    ENABLED = "enabled"
    STARTED = "started"


class Plugin(Base):
    __tablename__ = "plugin"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    state: Mapped[PluginState] = mapped_column(
        enum_type(PluginState), default=PluginState.DISABLED
    )
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
