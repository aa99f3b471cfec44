"""The ``lvm-storage`` driver: a volume group's logical volumes on a storage host, driven over
SSH (``plugins.lvm.remote``), as the engine's images.

* A volume is the LV ``/dev/<vg>/<name>`` (its root device), in the storage's volume group.
* **Clones** follow the storage's ``clone`` setting: ``snapshot`` (the default) makes an
  LVM copy-on-write snapshot of the origin (``lvcreate -s``; it shows the origin's size and
  holds ``origin × snapshot_percent %`` of changes: 100 %, the default, can never fill up);
  ``copy`` makes a plain LV of ``max(size_mb, origin)`` and copies the origin into it with
  ``dd``. A clone asked larger than its origin is a copy in either mode (a snapshot cannot
  show more than its origin). Either carries the
  tag ``qrm_clone``; a copy also ``qrm_origin_<origin>``, and ``qrm_copying`` until its copy
  is complete (a copy broken off is made again by the next attempt).
* **Snapshots** (``snapshot_volume``) are read-only LVM snapshots (tag ``qrm_snapshot``).
* Every call is idempotent by name: an LV of that name made for the same purpose (kind and
  origin) is returned as it is, one made for another is refused (:class:`VolumeConflict`);
  removing what is missing is done.
* Room: what does not fit in the volume group's free extents, or in the storage's
  ``capacity_mb`` (counted as the group's allocated megabytes), raises ``CapacityError``
  naming the group and the sizes, before anything is made.
* Authorisation writes an NFS export or an iSCSI target definition for exactly the machine
  (``plugins.lvm.exports``) and revokes it for ``machine=None``.

Nothing here touches the engine's database except reading the storage's SSH target, in a
short transaction of its own (as the SSH pool reads pinned host keys), when no setting
names one; lvm runs only on the storage host.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from engine.commands.ssh import SshTarget
from engine.errors import CapacityError, DriverError
from engine.plugins.drivers import MachineRef, StorageRef, VolumeInfo
from plugins.lvm import exports
from plugins.lvm.config import LvmConfig, check_lvm_name, config_for
from plugins.lvm.remote import Remote, Result

STORAGE_TYPE = "lvm-storage"
NFS_DEPLOYMENT, ISCSI_DEPLOYMENT = "lvm-nfs", "lvm-iscsi"
DEPLOYMENT_EXPORTS = {NFS_DEPLOYMENT: "nfs", ISCSI_DEPLOYMENT: "iscsi"}

TAG_CLONE, TAG_SNAPSHOT, TAG_COPYING = "qrm_clone", "qrm_snapshot", "qrm_copying"
TAG_ORIGIN = "qrm_origin_"
VOLUME, CLONE, SNAPSHOT = "volume", "clone", "snapshot"

_LV_FIELDS = "lv_name,lv_size,origin,origin_size,lv_attr,lv_tags"
_VG_FIELDS = "vg_name,vg_size,vg_free,vg_extent_size"


class VolumeConflict(DriverError):
    """An LV of the asked name exists but was made for something else (another origin,
    kind or size): returning it would hand out someone else's data."""


@dataclasses.dataclass(frozen=True)
class LogicalVolume:
    """One LV as ``lvs`` reports it."""

    name: str
    #: for an LVM snapshot: its copy-on-write area
    lv_size_mb: int
    attr: str
    tags: tuple[str, ...] = ()
    #: the origin of an LVM snapshot
    snapshot_of: str | None = None
    origin_size_mb: int = 0

    @property
    def is_lvm_snapshot(self) -> bool:
        return self.attr[:1] in ("s", "S")

    @property
    def kind(self) -> str:
        if TAG_CLONE in self.tags:
            return CLONE
        if TAG_SNAPSHOT in self.tags or self.is_lvm_snapshot:
            return SNAPSHOT
        return VOLUME

    @property
    def origin(self) -> str | None:
        """The LV it was cloned or snapshotted from."""
        if self.snapshot_of:
            return self.snapshot_of
        for tag in self.tags:
            if tag.startswith(TAG_ORIGIN):
                return tag[len(TAG_ORIGIN):]
        return None

    @property
    def size_mb(self) -> int:
        """The size a machine sees: a snapshot's is its origin's (its own ``lv_size`` is
        its copy-on-write area)."""
        if self.is_lvm_snapshot:
            return self.origin_size_mb
        return self.lv_size_mb

    @property
    def copying(self) -> bool:
        return TAG_COPYING in self.tags


@dataclasses.dataclass(frozen=True)
class VolumeGroup:
    name: str
    size_mb: int
    free_mb: int
    extent_mb: float

    def rounded(self, size_mb: float) -> int:
        """``size_mb`` rounded up to whole extents, as lvcreate allocates it."""
        extent = self.extent_mb or 4.0
        return int(math.ceil(size_mb / extent - 1e-9) * extent)


def _megabytes(value: Any) -> int:
    try:
        return math.ceil(float(value or 0) - 1e-6)
    except (TypeError, ValueError):
        return 0


class LvmStorageDriver:
    """Volumes on LVM storage hosts reached over SSH (module docstring)."""

    storage_type = STORAGE_TYPE

    def __init__(self, request: Any = None, *, settings: Mapping[str, Any] | None = None,
                 pool: Any = None,
                 target_of: Callable[[StorageRef], SshTarget] | None = None) -> None:
        # Only the registry is taken from the request, never its database session.
        self.registry = getattr(request, "registry", None)
        if settings is None:
            settings = self.registry.settings if self.registry is not None else {}
        self.settings = settings
        self._pool, self._target_of = pool, target_of

    # -- the protocol ---------------------------------------------------------------------
    def create_volume(self, storage: StorageRef, *, name: str, size_mb: int) -> str:
        """Create an empty LV ``name`` of ``size_mb`` (rounded up to whole extents)."""
        config, remote = self._open(storage)
        lv = check_lvm_name(name, what="volume name")
        size = _size(size_mb)
        group = self._group(remote, config)
        wanted = group.rounded(size)
        existing = self._lvs(remote, config).get(lv)
        if existing is None:
            self._reserve(storage, config, group, wanted)
            result = remote.run(["lvm", "lvcreate", "-y", "-n", lv, "-L", f"{wanted}m",
                                 config.volume_group])
            if not result.ok:
                existing = self._after_failed_create(remote, config, storage, lv, result,
                                                     doing=f"create volume {lv}")
        if existing is not None:
            self._check_same(config, existing, VOLUME, origin=None)
            if existing.size_mb != wanted:
                raise VolumeConflict(
                    f"storage {storage.name}: volume {config.volume_group}/{lv} exists "
                    f"already with {existing.size_mb} MB, not {wanted} MB")
        return exports.device(config, lv)

    def clone_volume(self, storage: StorageRef, *, source_root_device: str, name: str,
                     size_mb: int) -> str:
        """A writable clone of an LV, by the storage's clone mode (module docstring)."""
        config, remote = self._open(storage)
        lv = check_lvm_name(name, what="clone name")
        size = _size(size_mb)
        origin_name = self._lv_of(config, source_root_device)
        volumes = self._lvs(remote, config)
        origin = self._existing(config, volumes, origin_name, source_root_device)
        existing = volumes.get(lv)
        if existing is not None:
            self._check_same(config, existing, CLONE, origin=origin_name)
            if existing.copying:
                self._copy(remote, config, origin, lv, existing)
            return exports.device(config, lv)
        group = self._group(remote, config)
        # an LVM snapshot shows its origin's size: a larger clone has to be a copy
        if config.clone == "snapshot" and group.rounded(size) <= origin.size_mb:
            if origin.is_lvm_snapshot:
                raise DriverError(f"storage {storage.name}: {source_root_device} is an LVM "
                                  "snapshot, and LVM cannot snapshot a snapshot (clone "
                                  "mode 'copy' can copy it)")
            room = group.rounded(origin.size_mb * config.snapshot_percent / 100)
            self._reserve(storage, config, group, room)
            argv = ["lvm", "lvcreate", "-y", "-s", "-n", lv, "-L", f"{room}m",
                    "--addtag", TAG_CLONE, f"{config.volume_group}/{origin_name}"]
            result = remote.run(argv)
            if not result.ok:
                existing = self._after_failed_create(remote, config, storage, lv, result,
                                                     doing=f"snapshot {origin_name} as {lv}")
                self._check_same(config, existing, CLONE, origin=origin_name)
            return exports.device(config, lv)
        room = group.rounded(max(size, origin.size_mb))
        self._reserve(storage, config, group, room)
        argv = ["lvm", "lvcreate", "-y", "-n", lv, "-L", f"{room}m", "--addtag", TAG_CLONE,
                "--addtag", TAG_ORIGIN + origin_name, "--addtag", TAG_COPYING,
                config.volume_group]
        result = remote.run(argv)
        if not result.ok:
            existing = self._after_failed_create(remote, config, storage, lv, result,
                                                 doing=f"create the copy {lv}")
            self._check_same(config, existing, CLONE, origin=origin_name)
            if not existing.copying:  # made and copied meanwhile
                return exports.device(config, lv)
        self._copy(remote, config, origin, lv, existing)
        return exports.device(config, lv)

    def snapshot_volume(self, storage: StorageRef, *, source_root_device: str,
                        name: str) -> str:
        """A read-only LVM snapshot of an LV (``origin × snapshot_percent %`` of room)."""
        config, remote = self._open(storage)
        lv = check_lvm_name(name, what="snapshot name")
        origin_name = self._lv_of(config, source_root_device)
        volumes = self._lvs(remote, config)
        origin = self._existing(config, volumes, origin_name, source_root_device)
        existing = volumes.get(lv)
        if existing is None:
            group = self._group(remote, config)
            room = group.rounded(origin.size_mb * config.snapshot_percent / 100)
            self._reserve(storage, config, group, room)
            result = remote.run(["lvm", "lvcreate", "-y", "-s", "-p", "r", "-n", lv, "-L",
                                 f"{room}m", "--addtag", TAG_SNAPSHOT,
                                 f"{config.volume_group}/{origin_name}"])
            if not result.ok:
                existing = self._after_failed_create(remote, config, storage, lv, result,
                                                     doing=f"snapshot {origin_name}")
        if existing is not None:
            self._check_same(config, existing, SNAPSHOT, origin=origin_name)
        return exports.device(config, lv)

    def resize_volume(self, storage: StorageRef, *, root_device: str, size_mb: int) -> None:
        """Grow an LV (``lvextend``). The same size again changes nothing; shrinking,
        read-only snapshots and growing a snapshot clone past its origin are refused. The
        filesystem on it is the machine's to grow."""
        config, remote = self._open(storage)
        lv = self._lv_of(config, root_device)
        size = _size(size_mb)
        volume = self._existing(config, self._lvs(remote, config), lv, root_device)
        if volume.kind == SNAPSHOT:
            raise DriverError(f"storage {storage.name}: {root_device} is a read-only "
                              "snapshot and cannot be resized")
        group = self._group(remote, config)
        wanted = group.rounded(size)
        if wanted == volume.size_mb:
            return
        if wanted < volume.size_mb:
            raise DriverError(f"storage {storage.name}: {root_device} has {volume.size_mb} "
                              f"MB and cannot shrink to {wanted} MB")
        if volume.is_lvm_snapshot:
            raise DriverError(f"storage {storage.name}: {root_device} is a snapshot clone "
                              f"of {volume.origin} and shows its {volume.size_mb} MB; it "
                              f"cannot grow to {wanted} MB (clone with the larger size, or "
                              "clone mode 'copy')")
        current = volume.lv_size_mb
        self._reserve(storage, config, group, wanted - current)
        result = remote.run(["lvm", "lvextend", "-L", f"{wanted}m",
                             f"{config.volume_group}/{lv}"])
        if not result.ok:
            raise self._lvm_error(remote, config, storage, result, doing=f"grow {lv}",
                                  asked=wanted - current)

    def remove_volume(self, storage: StorageRef, *, root_device: str) -> None:
        """Revoke its exports and remove the LV; a missing one is fine, one that LVM
        snapshots still depend on is refused."""
        config, remote = self._open(storage)
        lv = self._lv_of(config, root_device)
        volumes = self._lvs(remote, config)
        dependents = sorted(other.name for other in volumes.values()
                            if other.snapshot_of == lv)
        if dependents:
            raise DriverError(f"storage {storage.name}: {root_device} still has the "
                              f"snapshot(s) {', '.join(dependents)}; remove them first")
        self._revoke(remote, config, lv)
        if lv not in volumes:
            return
        result = remote.run(["lvm", "lvremove", "-f", f"{config.volume_group}/{lv}"])
        if not result.ok and lv in self._lvs(remote, config):
            raise remote.failure(result, doing=f"remove volume {lv}", program="lvm")

    def authenticate(self, storage: StorageRef, *, root_device: str,
                     machine: MachineRef | None) -> None:
        """Export the LV to exactly ``machine`` (NFS or iSCSI by the storage's ``export``
        setting); ``None`` revokes every export of it."""
        config, remote = self._open(storage)
        lv = self._lv_of(config, root_device)
        if machine is None:
            self._revoke(remote, config, lv)
            return
        volume = self._existing(config, self._lvs(remote, config), lv, root_device)
        if config.export == "nfs":
            line = exports.nfs_line(config, lv, machine)
            self._drop_iscsi(remote, config, lv)
            self._activate(remote, config, volume)
            remote.check(["sh", "-c", exports.MOUNT, "sh", exports.device(config, lv),
                          exports.mount_point(config, lv)],
                         doing=f"mount {lv} for its NFS export (does it hold a filesystem?)")
            self._write(remote, exports.nfs_file(config, lv), line)
            remote.check(["sh", "-c", exports.RELOAD_NFS], doing="reload the NFS exports")
        else:
            definition = exports.iscsi_definition(config, lv, machine)
            self._drop_nfs(remote, config, lv)
            self._activate(remote, config, volume)
            self._write(remote, exports.iscsi_file(config, lv), definition)
            remote.check(["sh", "-c", exports.RELOAD_ISCSI, "sh", "update",
                          exports.target_iqn(config, lv)], doing="reload the iSCSI targets")

    def list_volumes(self, storage: StorageRef) -> list[VolumeInfo]:
        """Every LV of the storage's volume group, by name."""
        config, remote = self._open(storage)
        return [VolumeInfo(name=volume.name, root_device=exports.device(config, volume.name),
                           size_mb=volume.size_mb,
                           origin=exports.device(config, volume.origin)
                           if volume.origin else None)
                for _name, volume in sorted(self._lvs(remote, config).items())]

    def boot_parameters(self, storage: StorageRef, *, root_device: str, root_fs_type: str,
                        deployment_type: str) -> dict[str, str]:
        """How a machine mounts the image: ``lvm-nfs`` → ``root=nfs`` with
        ``nfsroot=<server>:<export_root>/<vg>/<lv>``; ``lvm-iscsi`` → ``root=iscsi`` with the
        target, portal, LUN, initiator prefix and filesystem type. Reads settings only."""
        config = config_for(self.settings, self.with_row(storage))
        lv = self._lv_of(config, root_device)
        wanted = DEPLOYMENT_EXPORTS.get(deployment_type)
        if wanted is None:
            raise DriverError(f"storage {storage.name}: deployment type {deployment_type!r} "
                              f"is not one of {', '.join(DEPLOYMENT_EXPORTS)}")
        if wanted != config.export:
            raise DriverError(f"storage {storage.name} exports by {config.export}; an image "
                              f"of deployment type {deployment_type} needs {wanted}")
        server = config.server or str(config.ssh.get("ssh_host") or "")
        if not server:
            raise DriverError(f"storage {storage.name}: set its server address (the "
                              "qrm.lvm.<storage>.server setting) for machines to mount from")
        if wanted == "nfs":
            return {"root": "nfs", "nfsroot": f"{server}:{exports.mount_point(config, lv)}"}
        return {"root": "iscsi", "iscsi_target": exports.target_iqn(config, lv),
                "iscsi_portal": f"{server}:{exports.ISCSI_PORT}", "iscsi_lun": "1",
                "iscsi_initiator": f"{config.iqn_prefix}:initiator",
                "rootfstype": root_fs_type or "ext4"}

    # -- helpers ----------------------------------------------------------------------------
    def _open(self, storage: StorageRef) -> tuple[LvmConfig, Remote]:
        if storage.storage_type != self.storage_type:
            raise DriverError(f"storage {storage.name} is of type {storage.storage_type}, "
                              f"not {self.storage_type}")
        config = config_for(self.settings, self.with_row(storage))
        return config, Remote(storage_name=storage.name, target=self._target(storage, config),
                              pool=self._the_pool(), sudo=config.sudo,
                              timeout=config.command_timeout)

    def with_row(self, storage: StorageRef) -> StorageRef:
        """``storage`` with the settings of its ``lvm_storage`` row under its own (read in a
        transaction of the driver's own), unless its settings name the volume group already
        or there is no database."""
        registry = self.registry
        if (storage.settings or {}).get("volume_group") or registry is None or not hasattr(
                registry, "get") or "dbsession_factory" not in registry:
            return storage
        from engine.scheduler.runner import run_in_transaction
        from plugins.lvm.settings import storage_values

        values = run_in_transaction(registry, storage_values, storage_id=storage.id)
        if not values:
            return storage
        return dataclasses.replace(storage, settings={**values, **(storage.settings or {})})

    def _the_pool(self) -> Any:
        if self._pool is None:
            from engine.commands.targets import worker_pool

            if self.registry is None:
                raise DriverError("the lvm-storage driver needs the application's registry "
                                  "(or an SSH pool) to reach storage hosts")
            self._pool = worker_pool(self.registry)
        return self._pool

    def _target(self, storage: StorageRef, config: LvmConfig) -> SshTarget:
        ssh = config.ssh
        try:
            if ssh.get("ssh_host"):
                port = ssh.get("ssh_port")
                return SshTarget.from_settings(self.settings, str(ssh["ssh_host"]),
                                               port=int(port) if port else None,
                                               user=ssh.get("ssh_user"),
                                               key=ssh.get("ssh_key"))
        except ValueError as error:
            raise DriverError(f"storage {storage.name}: bad SSH setting: {error}") from None
        if self._target_of is not None:
            return self._target_of(storage)
        if self.registry is None:
            raise DriverError(f"storage {storage.name}: no SSH target (set "
                              f"qrm.lvm.{storage.name}.ssh_host)")
        from engine.scheduler.runner import run_in_transaction

        return run_in_transaction(self.registry, _row_target, storage=storage)

    @staticmethod
    def _group(remote: Remote, config: LvmConfig) -> VolumeGroup:
        result = remote.run(["lvm", "vgs", "--reportformat", "json", "--units", "m",
                             "--nosuffix", "-o", _VG_FIELDS, config.volume_group])
        if not result.ok:
            raise _vg_error(remote, config, result)
        rows = _report(remote, result, "vg")
        if not rows:
            raise DriverError(f"{remote.where}: volume group {config.volume_group} not found")
        row = rows[0]
        return VolumeGroup(name=row.get("vg_name", config.volume_group),
                           size_mb=_megabytes(row.get("vg_size")),
                           free_mb=int(float(row.get("vg_free") or 0)),
                           extent_mb=float(row.get("vg_extent_size") or 4))

    @staticmethod
    def _lvs(remote: Remote, config: LvmConfig) -> dict[str, LogicalVolume]:
        result = remote.run(["lvm", "lvs", "--reportformat", "json", "--units", "m",
                             "--nosuffix", "-o", _LV_FIELDS, config.volume_group])
        if not result.ok:
            raise _vg_error(remote, config, result)
        volumes = {}
        for row in _report(remote, result, "lv"):
            name = row.get("lv_name", "")
            tags = tuple(tag for tag in (row.get("lv_tags") or "").split(",") if tag)
            volumes[name] = LogicalVolume(
                name=name, lv_size_mb=_megabytes(row.get("lv_size")),
                attr=row.get("lv_attr", ""), tags=tags,
                snapshot_of=row.get("origin") or None,
                origin_size_mb=_megabytes(row.get("origin_size")))
        return volumes

    @staticmethod
    def _reserve(storage: StorageRef, config: LvmConfig, group: VolumeGroup,
                 size_mb: int) -> None:
        """CapacityError unless ``size_mb`` more fit in the group and in ``capacity_mb``."""
        free = group.free_mb
        limit = ""
        if storage.capacity_mb:
            allowed = storage.capacity_mb - (group.size_mb - group.free_mb)
            if allowed < free:
                free, limit = allowed, f" of its {storage.capacity_mb} MB capacity"
        if size_mb > free:
            raise CapacityError(f"storage {storage.name}: volume group {config.volume_group} "
                                f"has {max(free, 0)} MB free{limit}; {size_mb} MB asked")

    def _after_failed_create(self, remote: Remote, config: LvmConfig, storage: StorageRef,
                             lv: str, result: Result, *, doing: str) -> LogicalVolume:
        """lvcreate failed: an LV of that name made meanwhile (a concurrent attempt) is the
        caller's to check; anything else is an error."""
        volume = self._lvs(remote, config).get(lv)
        if volume is not None and "already exists" in result.message:
            return volume
        raise self._lvm_error(remote, config, storage, result, doing=doing)

    @staticmethod
    def _lvm_error(remote: Remote, config: LvmConfig, storage: StorageRef, result: Result,
                   *, doing: str, asked: int | None = None) -> DriverError:
        message = result.message
        if "insufficient free space" in message or "Insufficient free space" in message:
            return CapacityError(f"storage {storage.name}: volume group {config.volume_group} "
                                 f"is full: cannot {doing}"
                                 + (f" ({asked} MB asked)" if asked else "")
                                 + f": {message}")
        if "not found" in message and config.volume_group in message:
            return _vg_error(remote, config, result)
        return remote.failure(result, doing=doing, program="lvm")

    @staticmethod
    def _check_same(config: LvmConfig, existing: LogicalVolume, kind: str, *,
                    origin: str | None) -> None:
        if existing.kind != kind or existing.origin != origin:
            what = f"a {existing.kind}" + (f" of {existing.origin}" if existing.origin else "")
            wanted = f"a {kind}" + (f" of {origin}" if origin else "")
            raise VolumeConflict(f"storage {config.storage}: {config.volume_group}/"
                                 f"{existing.name} exists already as {what}, not {wanted}")

    @staticmethod
    def _existing(config: LvmConfig, volumes: dict[str, LogicalVolume], lv: str,
                  root_device: str) -> LogicalVolume:
        volume = volumes.get(lv)
        if volume is None:
            raise DriverError(f"storage {config.storage}: no volume {root_device}")
        return volume

    @staticmethod
    def _lv_of(config: LvmConfig, root_device: str) -> str:
        prefix = f"/dev/{config.volume_group}/"
        if not isinstance(root_device, str) or not root_device.startswith(prefix):
            raise DriverError(f"storage {config.storage}: {root_device!r} is not a volume of "
                              f"its volume group (expected {prefix}<name>)")
        return check_lvm_name(root_device[len(prefix):], what="volume")

    def _copy(self, remote: Remote, config: LvmConfig, origin_volume: LogicalVolume, lv: str,
              clone: LogicalVolume | None = None) -> None:
        """Copy the origin into the clone (``clone``: found, not just made), then mark the
        copy complete."""
        origin = origin_volume.name
        for volume in (origin_volume, clone):
            if volume is not None:
                self._activate(remote, config, volume)
        remote.check(["dd", f"if={exports.device(config, origin)}",
                      f"of={exports.device(config, lv)}", "bs=1M", "conv=fsync"],
                     doing=f"copy {origin} into {lv}", timeout=config.copy_timeout)
        remote.check(["lvm", "lvchange", "--deltag", TAG_COPYING,
                      f"{config.volume_group}/{lv}"], doing=f"mark the copy {lv} complete")

    @staticmethod
    def _activate(remote: Remote, config: LvmConfig, volume: LogicalVolume) -> None:
        """Activate an inactive LV (a snapshot's origin with it: LVM insists)."""
        if volume.attr[4:5] == "a":
            return
        remote.check(["lvm", "lvchange", "-ay", "-y", f"{config.volume_group}/{volume.name}"],
                     doing=f"activate {volume.name}")

    @staticmethod
    def _write(remote: Remote, path: str, content: str) -> None:
        remote.check(["sh", "-c", exports.WRITE_FILE, "sh", path], input=content,
                     doing=f"write {path}")

    def _revoke(self, remote: Remote, config: LvmConfig, lv: str) -> None:
        self._drop_nfs(remote, config, lv)
        self._drop_iscsi(remote, config, lv)

    @staticmethod
    def _drop_nfs(remote: Remote, config: LvmConfig, lv: str) -> None:
        path = exports.nfs_file(config, lv)
        had = remote.check(["sh", "-c", 'if [ -e "$1" ]; then rm -f "$1"; echo removed; fi',
                            "sh", path], doing=f"remove {path}").stdout.strip()
        if had:
            remote.check(["sh", "-c", exports.RELOAD_NFS], doing="reload the NFS exports")
        remote.check(["sh", "-c", exports.UMOUNT, "sh", exports.mount_point(config, lv)],
                     doing=f"unmount {lv}")

    @staticmethod
    def _drop_iscsi(remote: Remote, config: LvmConfig, lv: str) -> None:
        path = exports.iscsi_file(config, lv)
        had = remote.check(["sh", "-c", 'if [ -e "$1" ]; then rm -f "$1"; echo removed; fi',
                            "sh", path], doing=f"remove {path}").stdout.strip()
        if had:
            remote.check(["sh", "-c", exports.RELOAD_ISCSI, "sh", "delete",
                          exports.target_iqn(config, lv)], doing="reload the iSCSI targets")


def _size(size_mb: Any) -> int:
    if isinstance(size_mb, bool) or not isinstance(size_mb, int) or size_mb < 1:
        raise DriverError(f"size {size_mb!r} is not a positive number of megabytes")
    return size_mb


def _report(remote: Remote, result: Result, key: str) -> list[dict[str, Any]]:
    try:
        report = json.loads(result.stdout)
        return [row for part in report.get("report", []) for row in part.get(key, [])]
    except (ValueError, AttributeError, TypeError):
        raise DriverError(f"{remote.where}: lvm gave a report that is not JSON: "
                          f"{result.stdout[:200]!r}") from None


def _vg_error(remote: Remote, config: LvmConfig, result: Result) -> DriverError:
    if result.exit_code == 127:
        return remote.failure(result, doing="list volumes", program="lvm")
    if "not found" in result.message:
        return DriverError(f"{remote.where}: volume group {config.volume_group} not found "
                           f"({result.message})")
    return remote.failure(result, doing=f"read volume group {config.volume_group}",
                          program="lvm")


def _row_target(request: Any, *, storage: StorageRef) -> SshTarget:
    """The storage row's SSH target (a short transaction of the driver's own)."""
    from engine.commands.targets import ssh_target
    from engine.datacenter.models import Storage

    row = request.dbsession.get(Storage, storage.id)
    if row is None:
        raise DriverError(f"storage {storage.name} ({storage.id}) is not known")
    try:
        return ssh_target(request.registry.settings, row)
    except ValueError as error:
        raise DriverError(f"storage {storage.name}: {error}") from None
