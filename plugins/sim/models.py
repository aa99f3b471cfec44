"""The simulated datacenter's own state, kept in the database like a real one's inventory."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, UTCDateTime, utcnow
from engine.types import enum_type


class SimHost(Base):
    """A simulated hypervisor host: the capacity its VMs share."""

    __tablename__ = "sim_host"

    resource_id: Mapped[int] = mapped_column(
        ForeignKey("resource.id", ondelete="CASCADE"), primary_key=True
    )
    cpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)


class SimMachine(Base):
    """A simulated machine (a VM on a SimHost, or a physical box): power and boot progress."""

    __tablename__ = "sim_machine"

    resource_id: Mapped[int] = mapped_column(
        ForeignKey("resource.id", ondelete="CASCADE"), primary_key=True
    )
    host_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"))
    powered: Mapped[bool] = mapped_column(default=True)
    #: when the boot in progress completes (NULL: not booting)
    boot_ready_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    disk_mb: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SimVolumeKind(enum.Enum):
    VOLUME = "volume"
    CLONE = "clone"
    SNAPSHOT = "snapshot"


class SimVolume(Base):
    """A volume on a simulated storage; clones and snapshots share their origin's blocks."""

    __tablename__ = "sim_volume"
    __table_args__ = (UniqueConstraint("storage_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    storage_id: Mapped[int] = mapped_column(ForeignKey("storage.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    root_device: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[SimVolumeKind] = mapped_column(enum_type(SimVolumeKind))
    size_mb: Mapped[int] = mapped_column(Integer)
    origin_id: Mapped[int | None] = mapped_column(ForeignKey("sim_volume.id"))
    #: the one resource allowed to mount it (NULL: nobody but the storage)
    authorized_resource_id: Mapped[int | None] = mapped_column(
        ForeignKey("resource.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
