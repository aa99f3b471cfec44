"""The settings of an LVM storage kept in the database (``plugins.lvm.models``).

``configure_storage`` is what a site (the console, a script, the tests) calls inside its
transaction after adding the storage: every value is checked first, and a bad one raises
``ValidationError`` naming its field (``volume_group``, ``clone``, ``export``, ``server``)
with nothing changed. ``storage_values`` is what the driver reads (in a transaction of its
own) and merges under ``StorageRef.settings``.
"""

from __future__ import annotations

from typing import Any

from engine.datacenter.models import Storage
from engine.errors import DriverError, ValidationError
from engine.events.services import EventService
from engine.security import Actor
from plugins.lvm.config import _SERVER, CLONE_MODES, EXPORT_KINDS, check_lvm_name
from plugins.lvm.exports import _IQN_PART
from plugins.lvm.models import LvmStorage

FIELDS = ("volume_group", "clone", "export", "server")


def check_settings(*, volume_group: str, clone: str = "snapshot", export: str = "nfs",
                   server: str | None = None) -> dict[str, Any]:
    """The values, checked and normalised; ValidationError names the first bad field."""
    volume_group = (volume_group or "").strip()
    try:
        check_lvm_name(volume_group, what="volume group")
    except DriverError as error:
        raise ValidationError(str(error), field="volume_group") from None
    clone = (clone or "").strip().lower()
    if clone not in CLONE_MODES:
        raise ValidationError(f"clone mode {clone!r} is not one of {', '.join(CLONE_MODES)}",
                              field="clone")
    export = (export or "").strip().lower()
    if export not in EXPORT_KINDS:
        raise ValidationError(f"export {export!r} is not one of {', '.join(EXPORT_KINDS)}",
                              field="export")
    if export == "iscsi" and not _IQN_PART.fullmatch(volume_group):
        raise ValidationError(f"volume group {volume_group!r} cannot be part of an iSCSI name "
                              "(lower-case letters, digits, '.', '-' only)",
                              field="volume_group")
    server = (server or "").strip() or None
    if server is not None and not _SERVER.fullmatch(server):
        raise ValidationError(f"server {server!r} is not a host name or address",
                              field="server")
    return {"volume_group": volume_group, "clone": clone, "export": export, "server": server}


def configure_storage(request: Any, storage: Storage, *, actor: Actor, volume_group: str,
                      clone: str = "snapshot", export: str = "nfs",
                      server: str | None = None) -> LvmStorage:
    """Set the LVM settings of ``storage`` (all checked before anything is written)."""
    values = check_settings(volume_group=volume_group, clone=clone, export=export,
                            server=server)
    db = request.dbsession
    row = db.get(LvmStorage, storage.id)
    if row is None:
        row = LvmStorage(storage_id=storage.id, **values)
        db.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
    db.flush()
    request.find_service(EventService).log(
        source="lvm-storage", name="lvm.storage_configured", actor=actor, obj=storage,
        message=f"LVM storage {storage.name}: volume group {row.volume_group}, clones by "
        f"{row.clone}, exported by {row.export}"
        + (f" from {row.server}" if row.server else ""))
    return row


def storage_row(request: Any, storage: Storage) -> LvmStorage | None:
    return request.dbsession.get(LvmStorage, storage.id)


def row_values(row: LvmStorage) -> dict[str, Any]:
    """A row as driver settings (what it leaves empty is not named)."""
    values = {"volume_group": row.volume_group, "clone": row.clone, "export": row.export,
              "server": row.server}
    return {key: value for key, value in values.items() if value}


def storage_values(request: Any, *, storage_id: int) -> dict[str, Any]:
    """The settings row of storage ``storage_id`` as driver settings ({} if it has none)."""
    row = request.dbsession.get(LvmStorage, storage_id)
    return row_values(row) if row is not None else {}


__all__ = ["FIELDS", "check_settings", "configure_storage", "row_values", "storage_row",
           "storage_values"]
