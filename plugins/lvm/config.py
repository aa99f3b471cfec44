"""Where the ``lvm-storage`` driver finds each storage's configuration.

Every key is looked up, first found wins, in

1. the storage's own settings (``StorageRef.settings``, when the engine carries them),
2. the setting ``qrm.lvm.<storage name>.<key>`` (one storage),
3. the setting ``qrm.lvm.<key>`` (every lvm storage),
4. the default below.

The SSH target (``ssh_host``, ``ssh_port``, ``ssh_user``, ``ssh_key``) follows the same
order; where none names a host, the storage's own SSH target is used (its row's ``ssh_*``
columns, else its resource's IP address, and the ``qrm.ssh.*`` settings: see
``engine.commands.targets``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import DriverError
from engine.plugins.drivers import StorageRef

PREFIX = "qrm.lvm."

CLONE_MODES = ("snapshot", "copy")
EXPORT_KINDS = ("nfs", "iscsi")

DEFAULTS: dict[str, str] = {
    "volume_group": "",
    "clone": "snapshot",
    "export": "nfs",
    "server": "",
    "export_root": "/srv/qrm",
    "exports_dir": "/etc/exports.d",
    "nfs_options": "rw,sync,no_root_squash,no_subtree_check",
    "iscsi_config_dir": "/etc/tgt/conf.d",
    "iqn_prefix": "iqn.2026-12.cloud.qrm",
    "snapshot_percent": "100",
    "sudo": "false",
    "command_timeout": "60",
    "copy_timeout": "3600",
}

SSH_KEYS = ("ssh_host", "ssh_port", "ssh_user", "ssh_key")

#: an LVM volume group or logical volume name (lvm(8): letters, digits, ``+_.-``, not
#: starting with ``-``)
LVM_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}")
#: an absolute path without blanks, quotes or ``..`` (the plugin's directories)
_PATH = re.compile(r"/(?:[A-Za-z0-9+_.-]+/?)*")
#: the options of an NFS export line (no blanks, no parentheses)
_NFS_OPTIONS = re.compile(r"[A-Za-z0-9_=,:./-]+")
#: an iSCSI qualified name's prefix (RFC 3720: ``iqn.YYYY-MM.reversed.domain``)
_IQN = re.compile(r"iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*")
#: a host name or address machines reach the storage by
_SERVER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,254}|\[[0-9A-Fa-f:.]+\]")


def check_lvm_name(value: Any, *, what: str) -> str:
    """``value`` if it is a valid LVM name, else DriverError naming ``what`` it is."""
    if not isinstance(value, str) or not LVM_NAME.fullmatch(value) or value in (".", ".."):
        raise DriverError(f"{what} {value!r} is not a valid LVM name (letters, digits, "
                          "'+', '_', '.', '-'; at most 127; not starting with '-')")
    return value


@dataclasses.dataclass(frozen=True)
class LvmConfig:
    """One storage's configuration, checked."""

    storage: str
    volume_group: str
    clone: str
    export: str
    server: str
    export_root: str
    exports_dir: str
    nfs_options: str
    iscsi_config_dir: str
    iqn_prefix: str
    snapshot_percent: int
    sudo: bool
    command_timeout: float
    copy_timeout: float
    #: the SSH target parts given by settings (empty: the storage row's own target)
    ssh: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def lookup(settings: Mapping[str, Any], storage: StorageRef, key: str) -> Any:
    """The value of ``key`` for ``storage`` (module docstring), or None."""
    own = storage.settings or {}
    for value in (own.get(key), settings.get(f"{PREFIX}{storage.name}.{key}"),
                  settings.get(f"{PREFIX}{key}")):
        if value is not None and str(value).strip() != "":
            return value.strip() if isinstance(value, str) else value
    return None


def config_for(settings: Mapping[str, Any], storage: StorageRef) -> LvmConfig:
    """The checked configuration of ``storage``; DriverError names what is wrong."""

    def get(key: str) -> str:
        value = lookup(settings, storage, key)
        return str(value) if value is not None else DEFAULTS[key]

    volume_group = get("volume_group")
    if not volume_group:
        raise DriverError(f"storage {storage.name}: no volume group configured (set "
                          f"{PREFIX}{storage.name}.volume_group or {PREFIX}volume_group)")
    check_lvm_name(volume_group, what=f"storage {storage.name}: volume group")
    clone, export = get("clone").lower(), get("export").lower()
    if clone not in CLONE_MODES:
        raise DriverError(f"storage {storage.name}: clone mode {clone!r} is not one of "
                          f"{', '.join(CLONE_MODES)}")
    if export not in EXPORT_KINDS:
        raise DriverError(f"storage {storage.name}: export {export!r} is not one of "
                          f"{', '.join(EXPORT_KINDS)}")
    for key in ("export_root", "exports_dir", "iscsi_config_dir"):
        value = get(key)
        if not _PATH.fullmatch(value) or "/../" in value + "/" or "/./" in value + "/":
            raise DriverError(f"storage {storage.name}: {key} {value!r} is not an absolute "
                              "path of plain names")
    nfs_options = get("nfs_options")
    if not _NFS_OPTIONS.fullmatch(nfs_options):
        raise DriverError(f"storage {storage.name}: nfs_options {nfs_options!r} may hold "
                          "only letters, digits and _=,:./-")
    iqn_prefix = get("iqn_prefix")
    if not _IQN.fullmatch(iqn_prefix):
        raise DriverError(f"storage {storage.name}: iqn_prefix {iqn_prefix!r} is not of the "
                          "form iqn.YYYY-MM.reversed.domain")
    server = get("server")
    if server and not _SERVER.fullmatch(server):
        raise DriverError(f"storage {storage.name}: server {server!r} is not a host name "
                          "or address")
    ssh = {key: lookup(settings, storage, key) for key in SSH_KEYS}
    return LvmConfig(
        storage=storage.name, volume_group=volume_group, clone=clone, export=export,
        server=server, export_root=get("export_root").rstrip("/") or "/",
        exports_dir=get("exports_dir").rstrip("/") or "/", nfs_options=nfs_options,
        iscsi_config_dir=get("iscsi_config_dir").rstrip("/") or "/", iqn_prefix=iqn_prefix,
        snapshot_percent=_number(storage, "snapshot_percent", get("snapshot_percent"),
                                 minimum=1, maximum=100),
        sudo=get("sudo").lower() in ("1", "true", "yes", "on"),
        command_timeout=_number(storage, "command_timeout", get("command_timeout"),
                                minimum=1),
        copy_timeout=_number(storage, "copy_timeout", get("copy_timeout"), minimum=1),
        ssh={key: value for key, value in ssh.items() if value is not None})


def _number(storage: StorageRef, key: str, value: str, *, minimum: int,
            maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise DriverError(f"storage {storage.name}: {key} must be a whole number, not "
                          f"{value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise DriverError(f"storage {storage.name}: {key} {number} is out of range")
    return number
