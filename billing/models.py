"""The CCU ledger: append-only, one row per charge or credit, each with a unique key."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.cloud.models import CloudUser
from engine.db import Base, UTCDateTime, utcnow
from engine.types import Money


class LedgerEntry(Base):
    """A movement of CCUs. ``amount`` > 0 is a credit, < 0 a charge. Never updated or deleted."""

    __tablename__ = "ledger_entry"
    __table_args__ = (Index("ix_ledger_entry_user_time", "user_id", "time"),
                      # a request's last charge, in every CloudRequest of the APIs
                      Index("ix_ledger_entry_request_time", "request_id", "time"))

    id: Mapped[int] = mapped_column(primary_key=True)
    #: what makes this movement unique (``charge:appliance:7:run:0:hour:3``); a second
    #: insert of the same key fails, so nothing is ever charged twice
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("cloud_user.id"))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("cloud_request.id"))
    cloud_appliance_id: Mapped[int | None] = mapped_column(ForeignKey("cloud_appliance.id"))
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: the hour a charge is for (its start), NULL for credits and debits
    period_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    amount: Mapped[Decimal] = mapped_column(Money)
    balance_after: Mapped[Decimal] = mapped_column(Money)
    reason: Mapped[str] = mapped_column(String(50))
    comment: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(120))

    user: Mapped[CloudUser] = relationship()
