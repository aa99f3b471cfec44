"""The ``qcow2`` storage: volumes are qcow2 files in a directory of a KVM host, attached to
the host's VMs as their disk (openQRM's ``kvm-storage`` with local disks).

Every change is a ``qemu-img`` (or ``find``, ``rm``, ``mkdir``) argument vector run on the
host by the command queue's executors (``engine.commands.executors``): ``local`` when the
host is the engine's own machine, ``ssh`` over the command worker's pooled connections with
the host keys pinned in the database (``engine.commands.targets.worker_pool``) otherwise.
They run while the driver is called, outside any transaction (the outside-work protocol),
never through a shell.

* A volume ``qrm-img-7`` is the file ``<directory>/qrm-img-7.qcow2``; its root device is that
  path. A golden image is a qcow2 file put there by the site (registered as an image with
  its path as root device).
* ``clone_volume``: ``qemu-img create -f qcow2 -b <origin> -F qcow2 <clone> <size>M`` — a
  copy-on-write overlay, never smaller than its origin; writes stay in the clone.
* ``snapshot_volume``: an internal snapshot, ``qemu-img snapshot -c <name> <origin>``; its
  root device is ``<origin path>@<name>`` (read-only: it cannot be a disk or be resized).
* ``resize_volume``: ``qemu-img resize`` (growing only).
* ``remove_volume``: ``rm -f`` of the file (refused while clones or snapshots depend on
  it; taken off the definitions of the host's VMs first), or ``qemu-img snapshot -d``.
* ``authenticate``: the volume becomes the disk ``vda`` of exactly that VM on the host
  (``qrm-vm-<id>``; taken off any other), from its next power-on — the engine reboots the VM
  into its appliance right after; ``None``: it is taken off every VM. Only VMs of the
  storage's own host can have it.
* ``boot_parameters``: ``qrm.root=local`` with ``rootdev`` (``/dev/vda``, the first virtio
  disk) and the image's ``rootfstype``: the VM still boots from the network (the boot face
  decides its kernel) and mounts its own clone as root.

Every method is idempotent by name: an existing file of that name is checked (a plain volume
of that size, a clone of that origin) and returned as it is. ``StorageRef.capacity_mb``
(0: unlimited) bounds the sum of the files' virtual sizes (``CapacityError``). A host that
does not answer raises ``HostUnreachable``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from engine.commands.executors import Outcome, execute
from engine.commands.ssh import SshPool
from engine.datacenter.refs import vm_name
from engine.errors import CapacityError, DriverError, ValidationError
from engine.plugins.drivers import HostRef, HostUnreachable, MachineRef, StorageRef, VolumeInfo
from engine.validation import check_int, check_name
from plugins.kvm.settings import StorageSettings, storage_settings

STORAGE_TYPE = "qcow2"
SUFFIX = ".qcow2"
SNAPSHOT_MARK = "@"
#: seconds one command may take (qemu-img's metadata operations take milliseconds)
TIMEOUT_S = 120
MB = 1024 * 1024

#: the SSH pool of drivers that have no database to pin host keys in (pinned in memory)
_MEMORY_POOL: list[SshPool] = []


def _mb(size_bytes: int) -> int:
    return -(-int(size_bytes) // MB)


class Qcow2StorageDriver:
    """qcow2 files on a KVM host (module docstring)."""

    storage_type = STORAGE_TYPE

    def __init__(self, request: Any = None, *, ssh_pool: SshPool | None = None) -> None:
        # Only the registry is kept (its settings; the plugin's rows are read in
        # transactions of their own, plugins.kvm.settings), never the request's session.
        self.registry = getattr(request, "registry", None)
        self._ssh_pool = ssh_pool

    # -- the protocol -------------------------------------------------------------------
    def boot_parameters(self, storage: StorageRef, *, root_device: str, root_fs_type: str,
                        deployment_type: str) -> dict[str, str]:
        """Mount the VM's disk as root (no command runs: this is called inside a
        transaction; the settings come with the storage or from its rows)."""
        rootdev = (storage.settings.get("rootdev") if storage.settings else None) or "/dev/vda"
        return {"root": "local", "rootdev": str(rootdev),
                "rootfstype": root_fs_type or "ext4"}

    def create_volume(self, storage: StorageRef, *, name: str, size_mb: int) -> str:
        host = self._host(storage)
        name = check_name(name, field="name", max_length=100)
        size = check_int(size_mb, field="size_mb", minimum=1)
        path = host.path_of(name)
        existing = host.info(path)
        if existing is not None:
            if existing.get("backing-filename") or _mb(existing["virtual-size"]) != size:
                raise ValidationError(f"a volume named {name} of "
                                      f"{_mb(existing['virtual-size'])} MB exists already on "
                                      "this storage", field="name")
            return path
        host.reserve(storage, size)
        host.run(["mkdir", "-p", host.settings.directory])
        host.run(["qemu-img", "create", "-q", "-f", "qcow2", path, f"{size}M"])
        return path

    def clone_volume(self, storage: StorageRef, *, source_root_device: str, name: str,
                     size_mb: int) -> str:
        host = self._host(storage)
        name = check_name(name, field="name", max_length=100)
        size = check_int(size_mb, field="disk_mb", minimum=1)
        source = host.file_of(source_root_device)
        path = host.path_of(name)
        existing = host.info(path)
        if existing is not None:
            if _origin(existing) != source:
                raise ValidationError(f"a volume named {name} exists already on this "
                                      f"storage and is not a clone of {source}", field="name")
            return path
        origin = host.info(source)
        if origin is None:
            raise DriverError(f"no volume {source} on storage {storage.name}")
        size = max(size, _mb(origin["virtual-size"]))
        host.reserve(storage, size)
        # the origin is in the directory: it exists
        host.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", source, "-F", "qcow2",
                  path, f"{size}M"])
        return path

    def snapshot_volume(self, storage: StorageRef, *, source_root_device: str,
                        name: str) -> str:
        host = self._host(storage)
        name = check_name(name, field="name", max_length=100)
        source = host.file_of(source_root_device)
        info = host.info(source)
        if info is None:
            raise DriverError(f"no volume {source} on storage {storage.name}")
        if name not in _snapshots(info):
            host.run(["qemu-img", "snapshot", "-c", name, source])
        return f"{source}{SNAPSHOT_MARK}{name}"

    def resize_volume(self, storage: StorageRef, *, root_device: str, size_mb: int) -> None:
        host = self._host(storage)
        size = check_int(size_mb, field="disk_mb", minimum=1)
        path, snapshot = host.split(root_device)
        if snapshot is not None:
            raise DriverError(f"snapshot {root_device} is read-only and cannot be resized")
        info = host.info(path)
        if info is None:
            raise DriverError(f"no volume {path} on storage {storage.name}")
        current = _mb(info["virtual-size"])
        if size < current:
            raise ValidationError(f"volume {path} has {current} MB and cannot shrink to "
                                  f"{size} MB", field="disk_mb")
        if size == current:
            return
        host.reserve(storage, size - current)
        host.run(["qemu-img", "resize", "-q", "-f", "qcow2", path, f"{size}M"])

    def remove_volume(self, storage: StorageRef, *, root_device: str) -> None:
        host = self._host(storage)
        path, snapshot = host.split(root_device)
        info = host.info(path)
        if info is None:
            return
        if snapshot is not None:
            if snapshot in _snapshots(info):
                host.run(["qemu-img", "snapshot", "-d", snapshot, path])
            return
        dependents = [volume.root_device for volume in self._volumes(host)
                      if volume.origin == path]
        if dependents:
            raise DriverError(f"volume {path} still has {len(dependents)} clone(s) or "
                              f"snapshot(s) ({', '.join(dependents)}); remove them first")
        if host.settings.uri:
            host.kvm().detach_disk(host.libvirt_host(), path)
        host.run(["rm", "-f", path])

    def authenticate(self, storage: StorageRef, *, root_device: str,
                     machine: MachineRef | None) -> None:
        host = self._host(storage)
        path, snapshot = host.split(root_device)
        if snapshot is not None and machine is not None:
            raise DriverError(f"snapshot {root_device} is read-only and cannot be a disk")
        if not host.settings.uri:
            raise DriverError(f"qcow2 storage {storage.name} names no KVM host whose VMs "
                              "could use its volumes")
        kvm, libvirt_host = host.kvm(), host.libvirt_host()
        if machine is None:
            kvm.detach_disk(libvirt_host, path)
            return
        if machine.kind != "vm":
            raise DriverError(f"{machine.name or machine.mac} is a {machine.kind} machine: a "
                              "qcow2 volume can only be the disk of a VM on its own host")
        if host.info(path) is None:
            raise DriverError(f"no volume {path} on storage {storage.name}")
        name = vm_name(machine.id)
        kvm.detach_disk(libvirt_host, path, keep=name)
        kvm.attach_disk(libvirt_host, name, path)

    def list_volumes(self, storage: StorageRef) -> list[VolumeInfo]:
        return self._volumes(self._host(storage))

    # -- helpers ----------------------------------------------------------------------------
    def used_mb(self, storage: StorageRef) -> int:
        """Megabytes the storage's files may grow to (the sum of their virtual sizes)."""
        return self._host(storage).used_mb()

    def _host(self, storage: StorageRef) -> _Host:
        if storage.storage_type != self.storage_type:
            raise DriverError(f"storage {storage.name} is of type {storage.storage_type}, "
                              f"not {self.storage_type}")
        settings = storage_settings(self.registry, storage)
        return _Host(storage, settings, self._pool(settings), self.registry)

    def _pool(self, settings: StorageSettings) -> SshPool | None:
        if settings.executor != "ssh":
            return None
        if self._ssh_pool is not None:
            return self._ssh_pool
        if self.registry is not None and hasattr(self.registry, "get") \
                and "dbsession_factory" in self.registry:
            from engine.commands.targets import worker_pool

            return worker_pool(self.registry)  # host keys pinned in the database
        if not _MEMORY_POOL:
            _MEMORY_POOL.append(SshPool())
        return _MEMORY_POOL[0]

    @staticmethod
    def _volumes(host: _Host) -> list[VolumeInfo]:
        listed = []
        for info in host.infos():
            path, size = info["path"], _mb(info["virtual-size"])
            name = posixpath.basename(path)[:-len(SUFFIX)]
            listed.append(VolumeInfo(name=name, root_device=path, size_mb=size,
                                     origin=_origin(info)))
            listed.extend(VolumeInfo(name=snapshot, root_device=f"{path}{SNAPSHOT_MARK}"
                                     f"{snapshot}", size_mb=size, origin=path)
                          for snapshot in _snapshots(info))
        return listed


class _Host:
    """One storage's directory on its host, and how commands reach it."""

    def __init__(self, storage: StorageRef, settings: StorageSettings,
                 pool: SshPool | None, registry: Any) -> None:
        self.storage, self.settings, self.pool, self.registry = storage, settings, pool, registry

    @property
    def label(self) -> str:
        return (f"{self.settings.ssh.user}@{self.settings.ssh.name}" if self.settings.ssh
                else "the engine's machine")

    def run(self, argv: Sequence[str], *, ok: tuple[int, ...] = (0,)) -> Outcome:
        outcome = execute(self.settings.executor, list(argv), TIMEOUT_S,
                          target=self.settings.ssh, pool=self.pool)
        if outcome.retry:
            raise HostUnreachable(f"storage {self.storage.name}: {outcome.error}")
        if outcome.error is not None:
            raise DriverError(f"storage {self.storage.name}: {argv[0]} on {self.label}: "
                              f"{outcome.error}")
        if outcome.exit_code not in ok:
            stderr = outcome.stderr.decode(errors="replace").strip()
            raise DriverError(f"storage {self.storage.name}: {' '.join(argv)} failed on "
                              f"{self.label} (exit {outcome.exit_code}): {stderr[-500:]}")
        return outcome

    def info(self, path: str) -> Mapping[str, Any] | None:
        """``qemu-img info`` of a file, or None if there is none."""
        outcome = self.run(["qemu-img", "info", "-U", "--output=json", path], ok=(0, 1))
        if outcome.exit_code == 1:
            stderr = outcome.stderr.decode(errors="replace")
            if "No such file or directory" in stderr:
                return None
            raise DriverError(f"storage {self.storage.name}: qemu-img info {path} failed on "
                              f"{self.label}: {stderr.strip()[-500:]}")
        try:
            info = json.loads(outcome.stdout)
        except ValueError:
            raise DriverError(f"storage {self.storage.name}: qemu-img info {path} did not "
                              "answer JSON") from None
        if info.get("format") != "qcow2":
            raise DriverError(f"{path} on storage {self.storage.name} is not a qcow2 image "
                              f"({info.get('format')})")
        return info

    def infos(self) -> list[Mapping[str, Any]]:
        """``qemu-img info`` of every qcow2 file of the directory, by path, in one command
        (``find … -exec``, no shell)."""
        directory = self.settings.directory
        outcome = self.run(["find", directory, "-maxdepth", "1", "-type", "f", "-name",
                            f"*{SUFFIX}", "-exec", "qemu-img", "info", "-U", "--output=json",
                            "{}", ";"], ok=(0, 1))
        if outcome.exit_code == 1:
            stderr = outcome.stderr.decode(errors="replace").strip()
            if stderr.startswith("find:") and "No such file or directory" in stderr:
                return []  # nothing made yet
            raise DriverError(f"storage {self.storage.name}: cannot list {directory} on "
                              f"{self.label}: {stderr[-500:]}")
        text, decoder, found = outcome.stdout.decode(), json.JSONDecoder(), []
        position = 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                break
            try:
                info, position = decoder.raw_decode(text, position)
            except ValueError:
                raise DriverError(f"storage {self.storage.name}: qemu-img info did not "
                                  "answer JSON") from None
            path = posixpath.join(directory, posixpath.basename(str(info.get("filename"))))
            if info.get("format") != "qcow2":
                raise DriverError(f"{path} on storage {self.storage.name} is not a qcow2 "
                                  f"image ({info.get('format')})")
            found.append({**info, "path": path})
        return sorted(found, key=lambda info: info["path"])

    def used_mb(self) -> int:
        return sum(_mb(info["virtual-size"]) for info in self.infos())

    def reserve(self, storage: StorageRef, size_mb: int) -> None:
        if not storage.capacity_mb:
            return  # 0 = unlimited
        free = storage.capacity_mb - self.used_mb()
        if size_mb > free:
            raise CapacityError(f"storage {storage.name} has {max(free, 0)} MB free; "
                                f"{size_mb} MB asked")

    def path_of(self, name: str) -> str:
        return posixpath.join(self.settings.directory, name + SUFFIX)

    def split(self, root_device: str) -> tuple[str, str | None]:
        """A root device as (file, snapshot name or None); refused outside the directory."""
        if not isinstance(root_device, str):
            raise DriverError(f"{root_device!r} is not a volume of storage {self.storage.name}")
        path, snapshot = root_device, None
        head, mark, tail = root_device.rpartition(SNAPSHOT_MARK)
        if mark and head.endswith(SUFFIX):
            path, snapshot = head, tail
        if (posixpath.dirname(posixpath.normpath(path)) != self.settings.directory
                or not path.endswith(SUFFIX) or posixpath.normpath(path) != path):
            raise DriverError(f"{root_device!r} is not a volume of storage {self.storage.name}"
                              f" (expected {self.settings.directory}/<name>{SUFFIX})")
        return path, snapshot

    def file_of(self, root_device: str) -> str:
        path, snapshot = self.split(root_device)
        if snapshot is not None:
            raise DriverError(f"{root_device} is a snapshot: clone or snapshot its volume "
                              f"{path} instead")
        return path

    def libvirt_host(self) -> HostRef:
        return HostRef(id=self.storage.id, name=self.storage.name, mac="",
                       settings={"uri": self.settings.uri})

    def kvm(self) -> Any:
        from plugins.kvm.drivers import KvmDriver

        return KvmDriver(_RegistryOnly(self.registry))


class _RegistryOnly:
    def __init__(self, registry: Any) -> None:
        self.registry = registry


def _origin(info: Mapping[str, Any]) -> str | None:
    return info.get("full-backing-filename") or info.get("backing-filename") or None


def _snapshots(info: Mapping[str, Any]) -> list[str]:
    return [snapshot["name"] for snapshot in info.get("snapshots") or ()]


__all__ = ["STORAGE_TYPE", "Qcow2StorageDriver"]
