"""Remote commands: queued rows that a worker claims, runs with a timeout and retries.

A worker may run a command more than once (its claim ran out while it ran, the connection
broke and the attempt is repeated), so every command must be idempotent: running it twice
leaves the target as running it once would (see :mod:`engine.commands.worker`).
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, UTCDateTime, utcnow
from engine.types import JsonValue, enum_type


class CommandState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Command(Base):
    __tablename__ = "command"
    __table_args__ = (Index("ix_command_state_not_before", "state", "not_before"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"))
    #: or a storage host's command (``ssh`` to the storage's SSH target)
    storage_id: Mapped[int | None] = mapped_column(ForeignKey("storage.id"))
    #: where it runs: ``ssh`` to the resource (or storage), or ``local`` on the engine's machine
    executor: Mapped[str] = mapped_column(String(20), default="ssh")
    #: the argument vector; never a shell string
    argv: Mapped[list] = mapped_column(JsonValue)
    state: Mapped[CommandState] = mapped_column(
        enum_type(CommandState), default=CommandState.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    timeout_s: Mapped[int] = mapped_column(Integer, default=30)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    exit_code: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(120), default="system")
    #: while running: the worker holding it, and until when (after that it is claimed again)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: when the latest attempt began
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: why the latest attempt did not give an exit code (unreachable, timed out, refused)
    error: Mapped[str | None] = mapped_column(Text)


class SshHostKey(Base):
    """The host key pinned for one SSH endpoint (host and port): the first key seen (policy
    ``accept-new``) or one taken from a known_hosts file. A different key is refused."""

    __tablename__ = "ssh_host_key"
    __table_args__ = (UniqueConstraint("host", "port", name="uq_ssh_host_key_host_port"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    #: ``ssh-ed25519``, ``ecdsa-sha2-nistp256``, ``rsa-sha2-512`` …
    key_type: Mapped[str] = mapped_column(String(50))
    #: the public key blob, base64 (as in known_hosts)
    key_base64: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
