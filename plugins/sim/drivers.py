"""Storage and virtualization drivers of the simulated datacenter.

They implement ``engine.plugins.drivers`` on the sim's own state file (``plugins.sim.store``),
never on the engine's database: like a real hypervisor or storage, what they do stays done
whatever happens to the caller's transaction, and a repeated call finds it done (every method
is idempotent by the name it is given). They enforce the limits a real datacenter has: a
storage holds only as many megabytes as ``StorageRef.capacity_mb``, a host runs only as many
VMs as its registered CPUs and memory allow, a machine takes ``qrm.sim.boot_delay`` seconds to
boot. Every call goes through ``plugins.sim.faults.perform``: it is logged, and the test
switches (failures, unreachable targets) apply.

Keys: hosts by ``HostRef.mac`` (the machine's identity; the host must be registered, see
``plugins.sim.inventory.register_host``), storages by ``StorageRef.name`` (a storage needs no
registration; root devices are ``sim:<storage name>/<volume name>``), physical machines by MAC.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from engine.datacenter.models import normalize_mac
from engine.errors import CapacityError, DriverError, ValidationError
from engine.plugins.drivers import (
    HostRef,
    HostUnreachable,
    MachineRef,
    StorageRef,
    VmInfo,
    VmSpec,
    VolumeInfo,
)
from engine.validation import check_int, check_name
from plugins.sim import store as state
from plugins.sim.faults import perform
from plugins.sim.store import MachineRecord, Store, VolumeRecord, open_store

T = TypeVar("T")

#: setting: seconds a simulated machine needs from power-on to its first report
BOOT_DELAY_SETTING = "qrm.sim.boot_delay"
DEFAULT_BOOT_DELAY = 3.0

VOLUME, CLONE, SNAPSHOT = "volume", "clone", "snapshot"


def boot_delay(settings: Mapping[str, Any]) -> float:
    """The configured boot delay in seconds (``qrm.sim.boot_delay``; default 3)."""
    value = settings.get(BOOT_DELAY_SETTING, DEFAULT_BOOT_DELAY)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise DriverError(f"{BOOT_DELAY_SETTING} must be a number of seconds, not {value!r}"
                          ) from None
    return max(seconds, 0.0)


def root_device_of(storage_name: str, name: str) -> str:
    """The root-device identifier of volume ``name`` on the storage named ``storage_name``."""
    return f"sim:{storage_name}/{name}"


class _SimDriver:
    """What both drivers share: where the state is, how long a boot takes."""

    def __init__(self, request: Any = None, *, settings: Mapping[str, Any] | None = None
                 ) -> None:
        # Only the registry's settings are read from the request, never its database session.
        if settings is None:
            settings = request.registry.settings if request is not None else {}
        self.settings = settings

    @property
    def store(self) -> Store:
        return open_store(self.settings)

    def _perform(self, op: str, target: str, args: dict[str, Any],
                 effect: Callable[[sqlite3.Connection], T]) -> T:
        return perform(self.store, op, target, args, effect)

    def _ready_at(self) -> float:
        return state.now() + boot_delay(self.settings)


# -- storage ------------------------------------------------------------------------------------
class SimStorageDriver(_SimDriver):
    """Volumes on a simulated network storage: create, copy-on-write clones, read-only
    snapshots, growth and per-machine mount authorisation, within ``capacity_mb``."""

    storage_type = "sim-storage"

    def boot_parameters(self, storage: StorageRef, *, root_device: str, root_fs_type: str,
                        deployment_type: str) -> dict[str, str]:
        """A simulated volume cannot be mounted by a real machine: it stays in its ramdisk
        (the volume is named, for the boot log)."""
        return {"root": "none", "volume": root_device.rsplit("/", 1)[-1] or "none"}

    def create_volume(self, storage: StorageRef, *, name: str, size_mb: int) -> str:
        """Create an empty volume and return its root device. An existing plain volume of
        that name and size is returned as it is; of another size or kind, refused."""

        def effect(db: sqlite3.Connection) -> str:
            volume_name = check_name(name, field="name", max_length=100)
            size = check_int(size_mb, field="size_mb", minimum=1)
            existing = self._named(db, storage, volume_name)
            if existing is not None:
                _check_same(existing, VOLUME, origin=None)
                if existing.size_mb != size:
                    raise ValidationError(f"a volume named {volume_name} of "
                                          f"{existing.size_mb} MB exists already on this "
                                          "storage", field="name")
                return existing.root_device
            return self._add(db, storage, name=volume_name, kind=VOLUME, size_mb=size)

        return self._call("create_volume", storage, {"name": name, "size_mb": size_mb}, effect)

    def clone_volume(self, storage: StorageRef, *, source_root_device: str, name: str,
                     size_mb: int) -> str:
        """Make a writable copy-on-write clone and return its root device. A clone is never
        smaller than its origin (it holds the origin's blocks): ``size_mb`` below the origin's
        size reserves the origin's size. An existing clone of that name and origin is
        returned as it is."""

        def effect(db: sqlite3.Connection) -> str:
            clone_name = check_name(name, field="name", max_length=100)
            size = check_int(size_mb, field="disk_mb", minimum=1)
            source = self._get(db, storage, source_root_device)
            existing = self._named(db, storage, clone_name)
            if existing is not None:
                _check_same(existing, CLONE, origin=source)
                return existing.root_device
            return self._add(db, storage, name=clone_name, kind=CLONE,
                             size_mb=max(size, source.size_mb), origin=source)

        return self._call("clone_volume", storage, {"source_root_device": source_root_device,
                                                    "name": name, "size_mb": size_mb}, effect)

    def snapshot_volume(self, storage: StorageRef, *, source_root_device: str,
                        name: str) -> str:
        """Make a read-only snapshot (it reserves its origin's size) and return its root
        device; idempotent by name like ``clone_volume``."""

        def effect(db: sqlite3.Connection) -> str:
            snapshot_name = check_name(name, field="name", max_length=100)
            source = self._get(db, storage, source_root_device)
            existing = self._named(db, storage, snapshot_name)
            if existing is not None:
                _check_same(existing, SNAPSHOT, origin=source)
                return existing.root_device
            return self._add(db, storage, name=snapshot_name, kind=SNAPSHOT,
                             size_mb=source.size_mb, origin=source)

        return self._call("snapshot_volume", storage,
                          {"source_root_device": source_root_device, "name": name}, effect)

    def resize_volume(self, storage: StorageRef, *, root_device: str, size_mb: int) -> None:
        """Grow a volume to ``size_mb`` (that size already: nothing happens). Shrinking is
        refused (``ValidationError`` on ``disk_mb``): no filesystem survives losing its tail;
        snapshots are read-only."""

        def effect(db: sqlite3.Connection) -> None:
            size = check_int(size_mb, field="disk_mb", minimum=1)
            volume = self._get(db, storage, root_device)
            if volume.kind == SNAPSHOT:
                raise DriverError(f"snapshot {root_device} is read-only and cannot be resized")
            if size < volume.size_mb:
                raise ValidationError(f"volume {root_device} has {volume.size_mb} MB and "
                                      f"cannot shrink to {size} MB", field="disk_mb")
            if size == volume.size_mb:
                return
            self._reserve(db, storage, size - volume.size_mb)
            db.execute("UPDATE volume SET size_mb = ? WHERE root_device = ?",
                       (size, root_device))

        self._call("resize_volume", storage, {"root_device": root_device, "size_mb": size_mb},
                   effect)

    def remove_volume(self, storage: StorageRef, *, root_device: str) -> None:
        """Remove a volume. A missing one is fine; one that clones or snapshots still share
        blocks with is refused (``DriverError``)."""

        def effect(db: sqlite3.Connection) -> None:
            volume = self._find(db, storage, root_device)
            if volume is None:
                return
            dependents = db.execute(
                "SELECT count(*) FROM volume WHERE origin_id = "
                "(SELECT id FROM volume WHERE root_device = ?)", (root_device,)).fetchone()[0]
            if dependents:
                raise DriverError(f"volume {root_device} still has {dependents} clone(s) or "
                                  "snapshot(s); remove them first")
            db.execute("DELETE FROM volume WHERE root_device = ?", (root_device,))

        self._call("remove_volume", storage, {"root_device": root_device}, effect)

    def authenticate(self, storage: StorageRef, *, root_device: str,
                     machine: MachineRef | None) -> None:
        """Allow exactly ``machine`` to mount the volume (``None``: nobody but the storage)."""

        def effect(db: sqlite3.Connection) -> None:
            self._get(db, storage, root_device)
            mac = normalize_mac(machine.mac) if machine is not None else None
            db.execute("UPDATE volume SET authorized_mac = ?, authorized_id = ? "
                       "WHERE root_device = ?",
                       (mac, machine.id if machine is not None else None, root_device))

        args = {"root_device": root_device,
                "machine": dataclasses.asdict(machine) if machine is not None else None}
        self._call("authenticate", storage, args, effect)

    def list_volumes(self, storage: StorageRef) -> list[VolumeInfo]:
        """Every volume on the storage, oldest first."""

        def effect(db: sqlite3.Connection) -> list[VolumeInfo]:
            return [VolumeInfo(name=volume.name, root_device=volume.root_device,
                               size_mb=volume.size_mb, origin=volume.origin)
                    for volume in state.volumes_where(db, "volume.storage = ?",
                                                      (storage.name,))]

        return self._call("list_volumes", storage, {}, effect)

    # -- helpers ----------------------------------------------------------------------------
    def used_mb(self, storage: StorageRef) -> int:
        """Megabytes reserved on ``storage`` by its volumes, clones and snapshots."""
        with self.store.read() as db:
            return _used_mb(db, storage.name)

    def _call(self, op: str, storage: StorageRef, args: dict[str, Any],
              effect: Callable[[sqlite3.Connection], T]) -> T:
        if storage.storage_type != self.storage_type:
            raise DriverError(f"storage {storage.name} is of type {storage.storage_type}, "
                              f"not {self.storage_type}")
        return self._perform(op, storage.name, {"storage": storage.name, **args}, effect)

    @staticmethod
    def _reserve(db: sqlite3.Connection, storage: StorageRef, size_mb: int) -> None:
        """Raise CapacityError unless ``size_mb`` more fit on ``storage``."""
        if not storage.capacity_mb:
            return  # 0 = unlimited
        free = storage.capacity_mb - _used_mb(db, storage.name)
        if size_mb > free:
            raise CapacityError(f"storage {storage.name} has {max(free, 0)} MB free; "
                                f"{size_mb} MB asked")

    def _add(self, db: sqlite3.Connection, storage: StorageRef, *, name: str, kind: str,
             size_mb: int, origin: VolumeRecord | None = None) -> str:
        self._reserve(db, storage, size_mb)
        root_device = root_device_of(storage.name, name)
        origin_id = None
        if origin is not None:
            origin_id = db.execute("SELECT id FROM volume WHERE root_device = ?",
                                   (origin.root_device,)).fetchone()[0]
        state.insert_volume(db, storage=storage.name, name=name, root_device=root_device,
                            kind=kind, size_mb=size_mb, origin_id=origin_id)
        return root_device

    @staticmethod
    def _named(db: sqlite3.Connection, storage: StorageRef, name: str) -> VolumeRecord | None:
        found = state.volumes_where(db, "volume.storage = ? AND volume.name = ?",
                                    (storage.name, name))
        return found[0] if found else None

    def _find(self, db: sqlite3.Connection, storage: StorageRef,
              root_device: str) -> VolumeRecord | None:
        prefix = root_device_of(storage.name, "")
        if not isinstance(root_device, str) or not root_device.startswith(prefix):
            raise DriverError(f"{root_device!r} is not a volume of storage {storage.name} "
                              f"(expected {prefix}<volume>)")
        return self._named(db, storage, root_device[len(prefix):])

    def _get(self, db: sqlite3.Connection, storage: StorageRef,
             root_device: str) -> VolumeRecord:
        volume = self._find(db, storage, root_device)
        if volume is None:
            raise DriverError(f"no volume {root_device} on storage {storage.name}")
        return volume


def _used_mb(db: sqlite3.Connection, storage_name: str) -> int:
    return int(db.execute("SELECT coalesce(sum(size_mb), 0) FROM volume WHERE storage = ?",
                          (storage_name,)).fetchone()[0])


def _check_same(existing: VolumeRecord, kind: str, *, origin: VolumeRecord | None) -> None:
    # Returning a volume made for another purpose would hand out someone else's data.
    origin_device = origin.root_device if origin is not None else None
    if existing.kind != kind or existing.origin != origin_device:
        raise ValidationError(f"a {existing.kind} named {existing.name} exists already on "
                              "this storage", field="name")


# -- virtualization -----------------------------------------------------------------------------
class SimVirtualizationDriver(_SimDriver):
    """VMs on simulated hosts: each registered host offers CPUs and memory, each VM boots for
    ``qrm.sim.boot_delay`` seconds after power-on and then reports (``plugins.sim.monitor``)."""

    vm_type = "sim-vm"

    def create_vm(self, host: HostRef, spec: VmSpec) -> None:
        """Create VM ``spec.name`` on ``host`` and power it on; a VM of that name exists
        already (running or not): nothing happens. CapacityError when the host's registered
        CPUs or memory cannot take it, DriverError when ``host`` is not a simulated host."""

        def effect(db: sqlite3.Connection) -> None:
            mac = self._host(db, host)
            if self._vm(db, mac, spec.name) is not None:
                return
            name = check_name(spec.name, field="name", max_length=100)
            cpus = check_int(spec.cpus, field="cpus", minimum=1)
            memory_mb = check_int(spec.memory_mb, field="memory_mb", minimum=1)
            macs = _vm_macs(db, spec)
            self._check_room(db, host, mac, cpus=cpus, memory_mb=memory_mb)
            state.insert_vm(db, host_mac=mac, name=name, cpus=cpus, memory_mb=memory_mb,
                            macs=macs, disk_mb=check_int(spec.disk_mb, field="disk_mb"),
                            disk=spec.disk, boot_ready_at=self._ready_at())

        self._call("create_vm", host, {"spec": dataclasses.asdict(spec)}, effect)

    def start_vm(self, host: HostRef, name: str) -> None:
        """Power the VM on; it boots. Running already: nothing happens."""

        def effect(db: sqlite3.Connection) -> None:
            vm = self._existing_vm(db, host, name)
            if not vm.powered:
                self._power(db, host, name, on=True)

        self._call("start_vm", host, {"name": name}, effect)

    def stop_vm(self, host: HostRef, name: str) -> None:
        """Power the VM off (stopped or missing already: nothing happens)."""

        def effect(db: sqlite3.Connection) -> None:
            if self._vm(db, self._host(db, host), name) is not None:
                self._power(db, host, name, on=False)

        self._call("stop_vm", host, {"name": name}, effect)

    def reboot_vm(self, host: HostRef, name: str) -> None:
        """Reset the VM: a new boot into whatever it is assigned (a stopped VM powers on)."""

        def effect(db: sqlite3.Connection) -> None:
            self._existing_vm(db, host, name)
            self._power(db, host, name, on=True)

        self._call("reboot_vm", host, {"name": name}, effect)

    def remove_vm(self, host: HostRef, name: str) -> None:
        """Destroy the VM; a missing one is fine."""

        def effect(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM vm WHERE host_mac = ? AND name = ?",
                       (self._host(db, host), name))

        self._call("remove_vm", host, {"name": name}, effect)

    def list_vms(self, host: HostRef) -> list[VmInfo]:
        """Every VM on the host, oldest first."""

        def effect(db: sqlite3.Connection) -> list[VmInfo]:
            mac = self._host(db, host)
            return [VmInfo(name=vm.name, state=vm.state, macs=vm.macs, cpus=vm.cpus,
                           memory_mb=vm.memory_mb)
                    for vm in state.vms_where(db, "host_mac = ?", (mac,))]

        return self._call("list_vms", host, {}, effect)

    # -- helpers ----------------------------------------------------------------------------
    def used_capacity(self, host: HostRef) -> tuple[int, int]:
        """CPUs and memory (MB) taken on ``host`` by its VMs (powered or not)."""
        with self.store.read() as db:
            return _used_capacity(db, normalize_mac(host.mac))

    def _call(self, op: str, host: HostRef, args: dict[str, Any],
              effect: Callable[[sqlite3.Connection], T]) -> T:
        return self._perform(op, _mac(host.mac), {"host": host.name, **args}, effect)

    @staticmethod
    def _host(db: sqlite3.Connection, host: HostRef) -> str:
        """The host's MAC in the store, if it is a simulated host that is switched on."""
        mac = _mac(host.mac)
        record = state.host_of(db, mac)
        if record is None:
            raise DriverError(f"host {host.name or mac} ({mac}) is not a simulated host")
        if not record.powered:
            raise HostUnreachable(f"host {host.name or mac} is switched off (simulated)")
        return mac

    @staticmethod
    def _vm(db: sqlite3.Connection, host_mac: str, name: str) -> MachineRecord | None:
        found = state.vms_where(db, "host_mac = ? AND name = ?", (host_mac, name))
        return found[0] if found else None

    def _existing_vm(self, db: sqlite3.Connection, host: HostRef, name: str) -> MachineRecord:
        vm = self._vm(db, self._host(db, host), name)
        if vm is None:
            raise DriverError(f"no VM {name} on host {host.name or host.mac}")
        return vm

    def _power(self, db: sqlite3.Connection, host: HostRef, name: str, *, on: bool) -> None:
        db.execute("UPDATE vm SET powered = ?, boot_ready_at = ? WHERE host_mac = ? AND "
                   "name = ?", (int(on), self._ready_at() if on else None, _mac(host.mac),
                                name))

    @staticmethod
    def _check_room(db: sqlite3.Connection, host: HostRef, mac: str, *, cpus: int,
                    memory_mb: int) -> None:
        record = state.host_of(db, mac)
        assert record is not None  # checked by _host
        used_cpus, used_memory = _used_capacity(db, mac)
        if used_cpus + cpus > record.cpus or used_memory + memory_mb > record.memory_mb:
            raise CapacityError(
                f"host {host.name or mac} has {record.cpus - used_cpus} CPU(s) and "
                f"{record.memory_mb - used_memory} MB free; the VM needs {cpus} CPU(s) and "
                f"{memory_mb} MB")


def _used_capacity(db: sqlite3.Connection, host_mac: str) -> tuple[int, int]:
    cpus, memory_mb = db.execute("SELECT coalesce(sum(cpus), 0), coalesce(sum(memory_mb), 0) "
                                 "FROM vm WHERE host_mac = ?", (host_mac,)).fetchone()
    return int(cpus), int(memory_mb)


def _vm_macs(db: sqlite3.Connection, spec: VmSpec) -> tuple[str, ...]:
    if not spec.macs:
        raise ValidationError(f"VM {spec.name} needs at least one MAC", field="macs")
    macs = tuple(_mac(mac) for mac in spec.macs)
    if len(set(macs)) != len(macs):
        raise ValidationError(f"VM {spec.name} has the same MAC twice", field="macs")
    for mac in macs:
        owner = state.mac_owner(db, mac)
        if owner is not None:
            # Two machines with one MAC would fight over DHCP leases and boot files.
            raise DriverError(f"MAC {mac} of VM {spec.name} is used by {owner} already")
    return macs


def _mac(value: str) -> str:
    try:
        return normalize_mac(value)
    except ValueError:
        raise DriverError(f"not a MAC address: {value!r}") from None


# -- the power switch of physical machines ------------------------------------------------------
class SimPowerSwitch(_SimDriver):
    """The (simulated) power switch of simulated physical machines, by MAC."""

    def knows(self, mac: str) -> bool:
        """Whether ``mac`` is a simulated physical machine."""
        try:
            mac = normalize_mac(mac)
        except ValueError:
            return False
        with self.store.read() as db:
            return bool(state.physical_where(db, "mac = ?", (mac,)))

    def reboot(self, machine: MachineRef) -> None:
        """Power-cycle the machine: a new boot (a halted machine powers on)."""
        ready_at = self._ready_at()
        self._switch("reboot_machine", machine, "UPDATE physical SET powered = 1, "
                     "boot_ready_at = ? WHERE mac = ?", (ready_at, _mac(machine.mac)))

    def halt(self, machine: MachineRef) -> None:
        """Cut the power: no boot in progress, no reports."""
        self._switch("halt_machine", machine, "UPDATE physical SET powered = 0, "
                     "boot_ready_at = NULL WHERE mac = ?", (_mac(machine.mac),))

    def _switch(self, op: str, machine: MachineRef, statement: str,
                params: tuple[Any, ...]) -> None:
        def effect(db: sqlite3.Connection) -> None:
            if db.execute(statement, params).rowcount == 0:
                raise DriverError(f"{machine.name or machine.mac} is not a simulated "
                                  "physical machine")

        self._perform(op, _mac(machine.mac), {"machine": machine.name or machine.mac}, effect)


__all__ = ["SimPowerSwitch", "SimStorageDriver", "SimVirtualizationDriver", "boot_delay",
           "root_device_of"]
