"""Storage and virtualization drivers of the simulated datacenter.

They keep the simulated inventory (``sim_volume``, ``sim_host``, ``sim_machine``) in the
engine's database and enforce the limits a real datacenter has: a storage holds only as many
megabytes as its capacity, a host runs only as many VMs as its CPUs and memory allow, a machine
takes a while to boot. Everything happens inside the caller's transaction, so a refused
operation leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.datacenter.models import Resource, Storage
from engine.datacenter.services import supports_row_locks
from engine.db import utcnow
from engine.errors import CapacityError, DriverError, ValidationError
from engine.validation import check_int, check_name
from plugins.sim.models import SimHost, SimMachine, SimVolume, SimVolumeKind

#: setting: seconds a simulated machine needs from power-on to its first report
BOOT_DELAY_SETTING = "qrm.sim.boot_delay"
DEFAULT_BOOT_DELAY = 3.0


def boot_delay(request: Any) -> dt.timedelta:
    """The configured boot delay (``qrm.sim.boot_delay``, seconds; default 3)."""
    value = request.registry.settings.get(BOOT_DELAY_SETTING, DEFAULT_BOOT_DELAY)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise DriverError(f"{BOOT_DELAY_SETTING} must be a number of seconds, not {value!r}"
                          ) from None
    return dt.timedelta(seconds=max(seconds, 0.0))


def begin_boot(request: Any, machine: SimMachine) -> None:
    """Power ``machine`` on and start a boot that completes after the boot delay."""
    ready_at = utcnow() + boot_delay(request)
    machine.powered = True
    # Whole seconds: MariaDB/MySQL DATETIME columns keep no fractions (MySQL even rounds up),
    # and the monitor must never see a boot finishing later than asked.
    machine.boot_ready_at = ready_at.replace(microsecond=0)


def power_off(machine: SimMachine) -> None:
    """Cut the power: no boot in progress, no reports."""
    machine.powered = False
    machine.boot_ready_at = None


def root_device_of(storage: Storage, name: str) -> str:
    """The root-device identifier of volume ``name`` on ``storage``."""
    return f"sim:{storage.name}/{name}"


class SimStorageDriver:
    """Volumes on a simulated network storage: create, copy-on-write clones, snapshots,
    growth, and per-resource mount authorisation, within ``Storage.capacity_mb``."""

    storage_type = "sim-storage"

    def __init__(self, request: Any) -> None:
        self.request = request

    @property
    def db(self) -> Session:
        return self.request.dbsession

    # -- the StorageDriver protocol ---------------------------------------------------------
    def create_volume(self, storage: Storage, *, name: str, size_mb: int) -> str:
        """Create an empty volume and return its root device. Asking again for an existing
        plain volume of that name and size returns it (an interrupted earlier attempt)."""
        name = check_name(name, field="name", max_length=100)
        size_mb = check_int(size_mb, field="size_mb", minimum=1)
        existing = self._find_by_name(storage, name)
        if existing is not None:
            self._check_same(existing, SimVolumeKind.VOLUME, origin=None)
            if existing.size_mb != size_mb:
                raise ValidationError(f"a volume named {name} of {existing.size_mb} MB exists "
                                      "already on this storage", field="name")
            return existing.root_device
        return self._add(storage, name=name, kind=SimVolumeKind.VOLUME, size_mb=size_mb)

    def remove_volume(self, storage: Storage, *, root_device: str) -> None:
        """Remove a volume. A missing one is fine; one that clones or snapshots still share
        blocks with is refused (``DriverError``)."""
        volume = self._find(storage, root_device)
        if volume is None:
            return
        dependents = self.db.scalar(
            select(func.count(SimVolume.id)).where(SimVolume.origin_id == volume.id))
        if dependents:
            raise DriverError(f"volume {root_device} still has {dependents} clone(s) or "
                              "snapshot(s); remove them first")
        self.db.delete(volume)
        self.db.flush()

    def clone_volume(self, storage: Storage, *, source_root_device: str, name: str,
                     size_mb: int) -> str:
        """Make a writable copy-on-write clone of a volume and return its root device.

        A clone is never smaller than its origin (it holds the origin's blocks), so
        ``size_mb`` below the origin's size reserves the origin's size. Idempotent by name:
        a clone of the same origin with that name is returned as it is.
        """
        name = check_name(name, field="name", max_length=100)
        size_mb = check_int(size_mb, field="disk_mb", minimum=1)
        source = self._get(storage, source_root_device)
        existing = self._find_by_name(storage, name)
        if existing is not None:
            self._check_same(existing, SimVolumeKind.CLONE, origin=source)
            return existing.root_device
        return self._add(storage, name=name, kind=SimVolumeKind.CLONE,
                         size_mb=max(size_mb, source.size_mb), origin=source)

    def snapshot_volume(self, storage: Storage, *, source_root_device: str, name: str) -> str:
        """Make a read-only snapshot of a volume (it reserves the volume's size) and return
        its root device. Idempotent by name, like ``clone_volume``."""
        name = check_name(name, field="name", max_length=100)
        source = self._get(storage, source_root_device)
        existing = self._find_by_name(storage, name)
        if existing is not None:
            self._check_same(existing, SimVolumeKind.SNAPSHOT, origin=source)
            return existing.root_device
        return self._add(storage, name=name, kind=SimVolumeKind.SNAPSHOT,
                         size_mb=source.size_mb, origin=source)

    def resize_volume(self, storage: Storage, *, root_device: str, size_mb: int) -> None:
        """Grow a volume to ``size_mb``. Shrinking is refused (``ValidationError`` on
        ``disk_mb``): no filesystem survives losing its tail."""
        size_mb = check_int(size_mb, field="disk_mb", minimum=1)
        volume = self._get(storage, root_device)
        if volume.kind is SimVolumeKind.SNAPSHOT:
            raise DriverError(f"snapshot {root_device} is read-only and cannot be resized")
        if size_mb < volume.size_mb:
            raise ValidationError(f"volume {root_device} has {volume.size_mb} MB and cannot "
                                  f"shrink to {size_mb} MB", field="disk_mb")
        if size_mb == volume.size_mb:
            return
        self._reserve(storage, size_mb - volume.size_mb)
        volume.size_mb = size_mb
        self.db.flush()

    def authenticate(self, storage: Storage, *, root_device: str,
                     resource: Resource | None) -> None:
        """Allow exactly ``resource`` to mount the volume (``None``: nobody)."""
        volume = self._get(storage, root_device)
        volume.authorized_resource_id = resource.id if resource is not None else None
        self.db.flush()

    def list_root_devices(self, storage: Storage) -> list[str]:
        """Every volume's root device on ``storage``, oldest first."""
        return list(self.db.scalars(
            select(SimVolume.root_device).where(SimVolume.storage_id == storage.id)
            .order_by(SimVolume.id)))

    # -- helpers ----------------------------------------------------------------------------
    def used_mb(self, storage: Storage) -> int:
        """Megabytes reserved on ``storage`` by its volumes, clones and snapshots."""
        # int(): MariaDB sums integers as DECIMAL
        return int(self.db.scalar(select(func.coalesce(func.sum(SimVolume.size_mb), 0))
                                  .where(SimVolume.storage_id == storage.id)) or 0)

    def _reserve(self, storage: Storage, size_mb: int) -> None:
        """Raise CapacityError unless ``size_mb`` more fit on ``storage``."""
        if supports_row_locks(self.db):
            # Concurrent reservations on one storage queue here instead of both fitting.
            self.db.execute(select(Storage.id).where(Storage.id == storage.id)
                            .with_for_update())
        if not storage.capacity_mb:
            return  # 0 = unlimited
        free = storage.capacity_mb - self.used_mb(storage)
        if size_mb > free:
            raise CapacityError(f"storage {storage.name} has {max(free, 0)} MB free; "
                                f"{size_mb} MB asked")

    def _add(self, storage: Storage, *, name: str, kind: SimVolumeKind, size_mb: int,
             origin: SimVolume | None = None) -> str:
        self._reserve(storage, size_mb)
        volume = SimVolume(storage_id=storage.id, name=name, kind=kind, size_mb=size_mb,
                           root_device=root_device_of(storage, name),
                           origin_id=origin.id if origin is not None else None)
        self.db.add(volume)
        self.db.flush()
        return volume.root_device

    def _find_by_name(self, storage: Storage, name: str) -> SimVolume | None:
        return self.db.scalar(select(SimVolume).where(SimVolume.storage_id == storage.id,
                                                      SimVolume.name == name))

    def _find(self, storage: Storage, root_device: str) -> SimVolume | None:
        prefix = root_device_of(storage, "")
        if not root_device.startswith(prefix):
            raise DriverError(f"{root_device!r} is not a volume of storage {storage.name} "
                              f"(expected {prefix}<volume>)")
        return self._find_by_name(storage, root_device[len(prefix):])

    def _get(self, storage: Storage, root_device: str) -> SimVolume:
        volume = self._find(storage, root_device)
        if volume is None:
            raise DriverError(f"no volume {root_device} on storage {storage.name}")
        return volume

    @staticmethod
    def _check_same(existing: SimVolume, kind: SimVolumeKind, *,
                    origin: SimVolume | None) -> None:
        # Returning a volume made for another purpose would hand out someone else's data.
        origin_id = origin.id if origin is not None else None
        if existing.kind is not kind or existing.origin_id != origin_id:
            raise ValidationError(f"a {existing.kind.value} named {existing.name} exists "
                                  "already on this storage", field="name")


class SimVirtualizationDriver:
    """VMs on simulated hosts: each host (``SimHost``) offers CPUs and memory, each VM is a
    ``SimMachine`` that boots for ``qrm.sim.boot_delay`` seconds and then reports."""

    vm_type = "sim-vm"

    def __init__(self, request: Any) -> None:
        self.request = request

    @property
    def db(self) -> Session:
        return self.request.dbsession

    def create_vm(self, host: Resource, vm: Resource, *, disk_mb: int) -> None:
        """Create and power on ``vm`` on ``host`` (idempotent per ``vm.id``). Raises
        CapacityError when the host's CPUs or memory cannot take it, DriverError when
        ``host`` is not a simulated host."""
        if self.db.get(SimMachine, vm.id) is not None:
            return
        sim_host = self._sim_host(host)
        self._check_room(host, sim_host, vm)
        machine = SimMachine(resource_id=vm.id, host_id=host.id,
                             disk_mb=check_int(disk_mb, field="disk_mb"))
        begin_boot(self.request, machine)
        self.db.add(machine)
        self.db.flush()

    def start_vm(self, vm: Resource) -> None:
        """Power the VM on; it boots again."""
        begin_boot(self.request, self._machine(vm))
        self.db.flush()

    def stop_vm(self, vm: Resource) -> None:
        """Power the VM off."""
        power_off(self._machine(vm))
        self.db.flush()

    def reboot_vm(self, vm: Resource) -> None:
        """Reset the VM: a new boot into whatever it is assigned."""
        begin_boot(self.request, self._machine(vm))
        self.db.flush()

    def remove_vm(self, vm: Resource) -> None:
        """Destroy the VM; a missing one is fine."""
        machine = self.db.get(SimMachine, vm.id)
        if machine is not None:
            self.db.delete(machine)
            self.db.flush()

    # -- helpers ----------------------------------------------------------------------------
    def used_capacity(self, host: Resource, *, excluding: int | None = None) -> tuple[int, int]:
        """CPUs and memory (MB) taken on ``host`` by its simulated machines."""
        query = (select(func.coalesce(func.sum(Resource.cpus), 0),
                        func.coalesce(func.sum(Resource.memory_mb), 0))
                 .join(SimMachine, SimMachine.resource_id == Resource.id)
                 .where(SimMachine.host_id == host.id))
        if excluding is not None:
            query = query.where(Resource.id != excluding)
        cpus, memory_mb = self.db.execute(query).one()
        return int(cpus), int(memory_mb)

    def _sim_host(self, host: Resource) -> SimHost:
        query = select(SimHost).where(SimHost.resource_id == host.id)
        if supports_row_locks(self.db):
            # Two VMs created at once on one host must not both fit into the last slot.
            query = query.with_for_update()
        sim_host = self.db.scalar(query)
        if sim_host is None:
            raise DriverError(f"resource {host.label} is not a simulated host")
        return sim_host

    def _check_room(self, host: Resource, sim_host: SimHost, vm: Resource) -> None:
        used_cpus, used_memory = self.used_capacity(host, excluding=vm.id)
        if (used_cpus + vm.cpus > sim_host.cpus
                or used_memory + vm.memory_mb > sim_host.memory_mb):
            raise CapacityError(
                f"host {host.label} has {sim_host.cpus - used_cpus} CPU(s) and "
                f"{sim_host.memory_mb - used_memory} MB free; the VM needs {vm.cpus} CPU(s) "
                f"and {vm.memory_mb} MB")

    def _machine(self, vm: Resource) -> SimMachine:
        machine = self.db.get(SimMachine, vm.id)
        if machine is None:
            raise DriverError(f"resource {vm.label} is not a simulated machine")
        return machine
