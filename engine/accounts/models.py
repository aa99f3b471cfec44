"""Admin accounts (cloud users live in ``engine.cloud``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, UTCDateTime, utcnow


class AdminUser(Base):
    __tablename__ = "admin_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    #: the password encrypted with the server key, for WS-Security PasswordDigest only
    digest_secret: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(default=True)
    #: written into every browser session; raised to end them all (log-out, new password)
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    language: Mapped[str] = mapped_column(String(10), default="en")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WsseNonce(Base):
    """Nonces of WS-Security digest tokens seen recently (replay protection on every worker)."""

    __tablename__ = "wsse_nonce"
    __table_args__ = (UniqueConstraint("username", "nonce"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100))
    nonce: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
