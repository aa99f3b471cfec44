"""Leases: which scheduler process runs a singleton job right now (no lock files)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, UTCDateTime


class JobLease(Base):
    __tablename__ = "job_lease"

    job_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class JobWakeup(Base):
    """A wake-up call for a job in another process (databases without LISTEN/NOTIFY): a
    kick counts ``seq`` up in the kicking transaction; schedulers poll the counters."""

    __tablename__ = "job_wakeup"

    job_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
