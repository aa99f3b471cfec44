"""The simulated datacenter's inventory: what exists "physically", read and changed directly.

This is the side of the simulation a real datacenter has in racks and on disks: boxes that
exist before the engine knows them (``register_host``, ``register_physical``), golden images on
a storage (``plant_volume``), objects the engine never made (``plant_vm``, for reconciliation
tests) and objects that disappear behind its back (``vanish_vm``, ``vanish_volume``). Nothing
here goes through the fault switches or the call log: it is not a driver call.

Every function takes ``where`` first: a settings mapping, a registry or request (their
settings), a path, a ``Store``, or None (``QRM_SIM_STATE``, else ``var/sim-datacenter.sqlite``).
MACs are normalised (lower case, colons).
"""

from __future__ import annotations

import os
from typing import Any

from engine.datacenter.models import normalize_mac
from engine.errors import DriverError
from plugins.sim import store as state
from plugins.sim.drivers import CLONE, SNAPSHOT, VOLUME, boot_delay, root_device_of
from plugins.sim.store import HostRecord, MachineRecord, VolumeRecord, open_store


# -- boxes --------------------------------------------------------------------------------------
def register_host(where: Any, mac: str, cpus: int, memory_mb: int, *, name: str = "") -> None:
    """A simulated hypervisor host with ``cpus`` and ``memory_mb`` for its VMs. Registering
    it again sets its capacity (and name, if given)."""
    mac = normalize_mac(mac)
    with open_store(where).write() as db:
        db.execute("INSERT INTO host (mac, name, cpus, memory_mb, created_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (mac) DO UPDATE SET cpus = excluded.cpus,"
                   " memory_mb = excluded.memory_mb, name = coalesce(nullif(excluded.name, ''),"
                   " host.name)", (mac, name, cpus, memory_mb, state.now()))


def ensure_host(where: Any, mac: str, cpus: int, memory_mb: int, *, name: str = "") -> bool:
    """Register a host unless it is registered already (then nothing changes). Returns
    whether it was new."""
    with open_store(where).write() as db:
        inserted = db.execute("INSERT OR IGNORE INTO host (mac, name, cpus, memory_mb, "
                              "created_at) VALUES (?, ?, ?, ?, ?)",
                              (normalize_mac(mac), name, cpus, memory_mb, state.now()))
        return inserted.rowcount == 1


def register_physical(where: Any, mac: str, *, name: str = "", cpus: int = 0,
                      memory_mb: int = 0, nics: int = 1, powered: bool = True,
                      booted: bool = False) -> None:
    """A simulated physical machine. Powered, it starts a boot that completes after the boot
    delay of ``where``'s settings (``booted``: it is up already); registering it again powers
    it on again the same way (a machine plugged in anew)."""
    ready_at = _ready_at(where, booted=booted) if powered else None
    with open_store(where).write() as db:
        db.execute("INSERT INTO physical (mac, name, cpus, memory_mb, nics, powered, "
                   "boot_ready_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (mac) DO UPDATE SET name = excluded.name, cpus = excluded.cpus,"
                   " memory_mb = excluded.memory_mb, nics = excluded.nics, "
                   "powered = excluded.powered, boot_ready_at = excluded.boot_ready_at",
                   (normalize_mac(mac), name, cpus, memory_mb, nics, int(powered), ready_at,
                    state.now()))


def set_power(where: Any, mac: str, *, on: bool, booted: bool = False) -> None:
    """Switch a host, a physical machine or a VM (by any of its MACs) on or off behind the
    engine's back (a power cut, a button pressed). Switched on, a machine boots (``booted``:
    is up at once); a switched-off host does not answer its driver and does not report."""
    mac = normalize_mac(mac)
    ready_at = _ready_at(where, booted=booted) if on else None
    with open_store(where).write() as db:
        changed = db.execute("UPDATE host SET powered = ? WHERE mac = ?", (int(on), mac))
        changed = changed.rowcount or db.execute(
            "UPDATE physical SET powered = ?, boot_ready_at = ? WHERE mac = ?",
            (int(on), ready_at, mac)).rowcount
        changed = changed or db.execute(
            "UPDATE vm SET powered = ?, boot_ready_at = ? WHERE id = "
            "(SELECT vm_id FROM nic WHERE mac = ?)", (int(on), ready_at, mac)).rowcount
    if not changed:
        raise DriverError(f"no simulated machine with MAC {mac}")


# -- reading ------------------------------------------------------------------------------------
def hosts(where: Any = None) -> list[HostRecord]:
    """Every simulated host, oldest first."""
    with open_store(where).read() as db:
        return state.all_hosts(db)


def vms(where: Any = None, host_mac: str | None = None) -> list[MachineRecord]:
    """Every VM (on the host with ``host_mac`` only, if given), oldest first."""
    with open_store(where).read() as db:
        if host_mac is None:
            return state.vms_where(db)
        return state.vms_where(db, "host_mac = ?", (normalize_mac(host_mac),))


def vm(where: Any, name: str, host_mac: str | None = None) -> MachineRecord | None:
    """The VM named ``name`` (on that host, if given), or None."""
    found = [machine for machine in vms(where, host_mac) if machine.name == name]
    return found[0] if found else None


def physical_machines(where: Any = None) -> list[MachineRecord]:
    """Every simulated physical machine, oldest first."""
    with open_store(where).read() as db:
        return state.physical_where(db)


def machine_by_mac(where: Any, mac: str) -> MachineRecord | None:
    """The physical machine or VM with that MAC (any of a VM's), or None."""
    mac = normalize_mac(mac)
    with open_store(where).read() as db:
        found = state.physical_where(db, "mac = ?", (mac,)) or state.vms_where(
            db, "id = (SELECT vm_id FROM nic WHERE mac = ?)", (mac,))
    return found[0] if found else None


def volumes(where: Any, storage: Any) -> list[VolumeRecord]:
    """Every volume on ``storage`` (a ``StorageRef``, a ``Storage`` row or a name), oldest
    first."""
    with open_store(where).read() as db:
        return state.volumes_where(db, "volume.storage = ?", (_storage_name(storage),))


def volume(where: Any, root_device: str) -> VolumeRecord | None:
    """The volume with that root device, or None."""
    with open_store(where).read() as db:
        found = state.volumes_where(db, "volume.root_device = ?", (root_device,))
    return found[0] if found else None


# -- planting and vanishing ---------------------------------------------------------------------
def plant_vm(where: Any, host_mac: str, name: str, *, macs: tuple[str, ...] | list[str],
             cpus: int = 1, memory_mb: int = 512, powered: bool = True,
             booted: bool = True) -> None:
    """Put a VM on a registered host without any driver call (the engine does not know it:
    an orphan for reconciliation). Capacity is not checked, as on a host someone else uses."""
    host_mac = normalize_mac(host_mac)
    ready_at = _ready_at(where, booted=booted) if powered else None
    with open_store(where).write() as db:
        if state.host_of(db, host_mac) is None:
            raise DriverError(f"{host_mac} is not a simulated host")
        state.insert_vm(db, host_mac=host_mac, name=name, cpus=cpus, memory_mb=memory_mb,
                        macs=tuple(normalize_mac(mac) for mac in macs), powered=powered,
                        boot_ready_at=ready_at)


def plant_volume(where: Any, storage: Any, name: str, *, size_mb: int,
                 origin: str | None = None, snapshot: bool = False) -> str:
    """Put a volume on a storage without any driver call (a golden image that was there
    before, or an orphan) and return its root device; a clone (or snapshot) of ``origin``
    when given. Planting an existing name again returns it as it is. Capacity is not
    checked."""
    storage_name = _storage_name(storage)
    root_device = root_device_of(storage_name, name)
    with open_store(where).write() as db:
        if db.execute("SELECT 1 FROM volume WHERE root_device = ?",
                      (root_device,)).fetchone():
            return root_device
        origin_id = None
        if origin is not None:
            row = db.execute("SELECT id, size_mb FROM volume WHERE root_device = ?",
                             (origin,)).fetchone()
            if row is None:
                raise DriverError(f"no volume {origin} to plant a clone of")
            origin_id, size_mb = row["id"], max(size_mb, row["size_mb"])
        kind = VOLUME if origin is None else (SNAPSHOT if snapshot else CLONE)
        state.insert_volume(db, storage=storage_name, name=name, root_device=root_device,
                            kind=kind, size_mb=size_mb, origin_id=origin_id)
    return root_device


def vanish_vm(where: Any, name: str, host_mac: str | None = None) -> int:
    """Delete the VM(s) named ``name`` (on that host only, if given) behind the engine's
    back; returns how many there were."""
    query, params = "DELETE FROM vm WHERE name = ?", (name,)
    if host_mac is not None:
        query, params = query + " AND host_mac = ?", (name, normalize_mac(host_mac))
    with open_store(where).write() as db:
        return db.execute(query, params).rowcount


def vanish_volume(where: Any, root_device: str) -> bool:
    """Delete a volume behind the engine's back, clones and snapshots of it included (the
    storage lost it); returns whether it existed."""
    with open_store(where).write() as db:
        row = db.execute("SELECT id FROM volume WHERE root_device = ?",
                         (root_device,)).fetchone()
        if row is None:
            return False
        doomed, frontier = [row["id"]], [row["id"]]
        while frontier:
            marks = ", ".join("?" * len(frontier))
            frontier = [child["id"] for child in db.execute(
                f"SELECT id FROM volume WHERE origin_id IN ({marks})",  # noqa: S608
                frontier)]
            doomed.extend(frontier)
        for volume_id in reversed(doomed):
            db.execute("DELETE FROM volume WHERE id = ?", (volume_id,))
    return True


def format_storage(where: Any, storage: Any) -> int:
    """Delete every volume of ``storage`` (a new, empty disk array); returns how many there
    were."""
    with open_store(where).write() as db:
        # clones first: they refer to their origins
        removed = 0
        while True:
            gone = db.execute("DELETE FROM volume WHERE storage = ? AND id NOT IN (SELECT "
                              "origin_id FROM volume WHERE origin_id IS NOT NULL)",
                              (_storage_name(storage),)).rowcount
            if not gone:
                return removed
            removed += gone


def _storage_name(storage: Any) -> str:
    return storage if isinstance(storage, str) else str(storage.name)


def _ready_at(where: Any, *, booted: bool) -> float:
    """When a machine switched on now is up: the boot delay of ``where``'s settings (a bare
    path or ``Store`` has none: at once)."""
    if booted or where is None or isinstance(where, str | os.PathLike | state.Store):
        return state.now()
    return state.now() + boot_delay(state.settings_of(where) or {})


__all__ = [
    "ensure_host", "format_storage", "hosts", "machine_by_mac", "physical_machines", "plant_vm",
    "plant_volume", "register_host", "register_physical", "set_power", "vanish_vm",
    "vanish_volume", "vm", "vms", "volume", "volumes",
]
