"""What the ``lvm-storage`` plugin keeps in the engine's database: one row per LVM storage.

A storage (``engine.datacenter.models.Storage``, type ``lvm-storage``) has no settings of
its own in the engine; its row here holds what this plugin needs: the volume group, the clone
mode, the export kind and the address machines reach the storage at. The driver reads it in a
short transaction of its own (never the caller's) and hands it on as ``StorageRef.settings``;
the ini settings ``qrm.lvm.<storage>.<key>`` and ``qrm.lvm.<key>`` fill in what it leaves
empty (``plugins.lvm.config``).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base


class LvmStorage(Base):
    """The LVM side of one storage."""

    __tablename__ = "lvm_storage"

    storage_id: Mapped[int] = mapped_column(
        ForeignKey("storage.id", ondelete="CASCADE"), primary_key=True)
    #: the volume group whose logical volumes are the storage's volumes
    volume_group: Mapped[str] = mapped_column(String(127))
    #: ``snapshot`` (LVM copy-on-write snapshots) or ``copy`` (a full copy with dd)
    clone: Mapped[str] = mapped_column(String(10), default="snapshot")
    #: ``nfs`` or ``iscsi``
    export: Mapped[str] = mapped_column(String(10), default="nfs")
    #: the host name or address machines mount or log in to (NULL: the SSH host)
    server: Mapped[str | None] = mapped_column(String(255))


__all__ = ["LvmStorage"]
