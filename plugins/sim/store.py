"""The simulated datacenter's own state: a SQLite file of its own, outside the engine database.

A real hypervisor or storage does not roll back with our transaction, so neither does the
simulation: every operation is one short SQLite transaction of its own (``BEGIN IMMEDIATE``,
so that a capacity check and the insert it allows cannot interleave with another process's),
committed at once. Several processes and threads may share one file (WAL, busy timeout).

The file is ``qrm.sim.state`` (environment: ``QRM_SIM_STATE``), by default
``var/sim-datacenter.sqlite`` relative to the working directory; its directory is created.

What is kept:

* ``host``: simulated hypervisor hosts by MAC, with the CPUs and memory their VMs share;
* ``vm`` / ``nic``: VMs by (host, name), their MACs (unique across the datacenter), power and
  boot progress;
* ``physical``: simulated physical machines by MAC, power and boot progress;
* ``volume``: volumes by (storage name, volume name), their origin and who may mount them;
* ``fault`` / ``unreachable`` / ``call``: the test switches of ``plugins.sim.faults`` and the
  log of every driver call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from engine import clock

#: setting and environment variable naming the state file
STATE_SETTING = "qrm.sim.state"
STATE_ENVIRONMENT = "QRM_SIM_STATE"
DEFAULT_STATE = "var/sim-datacenter.sqlite"
#: seconds a writer waits for another one to finish
BUSY_TIMEOUT = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS host (
    mac TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    cpus INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    powered INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vm (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_mac TEXT NOT NULL REFERENCES host (mac),
    name TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    disk_mb INTEGER NOT NULL DEFAULT 0,
    disk TEXT,
    powered INTEGER NOT NULL DEFAULT 1,
    -- epoch seconds when the boot in progress completes (NULL: never booted since power-on)
    boot_ready_at REAL,
    created_at REAL NOT NULL,
    UNIQUE (host_mac, name)
);
CREATE TABLE IF NOT EXISTS nic (
    mac TEXT PRIMARY KEY,
    vm_id INTEGER NOT NULL REFERENCES vm (id) ON DELETE CASCADE,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS physical (
    mac TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    cpus INTEGER NOT NULL DEFAULT 0,
    memory_mb INTEGER NOT NULL DEFAULT 0,
    nics INTEGER NOT NULL DEFAULT 1,
    powered INTEGER NOT NULL DEFAULT 1,
    boot_ready_at REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS volume (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    storage TEXT NOT NULL,
    name TEXT NOT NULL,
    root_device TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    size_mb INTEGER NOT NULL,
    origin_id INTEGER REFERENCES volume (id),
    authorized_mac TEXT,
    authorized_id INTEGER,
    created_at REAL NOT NULL,
    UNIQUE (storage, name)
);
CREATE TABLE IF NOT EXISTS fault (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    target TEXT,
    nth INTEGER NOT NULL,
    times INTEGER NOT NULL,
    phase TEXT NOT NULL,
    error TEXT NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS unreachable (
    target TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS call (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    target TEXT NOT NULL,
    args TEXT NOT NULL,
    outcome TEXT,
    at REAL NOT NULL
);
"""

_initialised: set[pathlib.Path] = set()
#: each thread's open connections, by file (``Store._cached_connection``)
_local = threading.local()
CONNECTIONS_PER_THREAD = 4
_initialising = threading.Lock()


class Store:
    """One state file. Cheap to make: each thread keeps one connection to each file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path).expanduser().absolute()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        # WAL with NORMAL sync: a commit survives the process dying at any point (what the
        # simulation must show); only a power cut could lose the last ones
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def _ensure_schema(self) -> None:
        # The file is checked too: a test (or an admin) may delete it to start afresh.
        if self.path in _initialised and self.path.exists():
            return
        with _initialising:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._connect()
            try:
                # WAL lets readers (the monitor) run while a driver call writes.
                connection.execute("PRAGMA journal_mode = WAL")
                connection.executescript(SCHEMA)
            finally:
                connection.close()
            _initialised.add(self.path)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed when the block ends (rolled back if it raises).
        ``BEGIN IMMEDIATE`` takes the write lock first, so checks and changes are atomic."""
        yield from self._transaction("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read of the state."""
        yield from self._transaction("BEGIN")

    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        connection = self._cached_connection()
        try:
            connection.execute(begin)
        except BaseException:
            self._drop_connection()
            raise
        try:
            yield connection
        except BaseException:
            try:
                connection.execute("ROLLBACK")
            finally:
                self._drop_connection()
            raise
        try:
            connection.execute("COMMIT")
        except BaseException:
            self._drop_connection()
            raise

    def _cached_connection(self) -> sqlite3.Connection:
        """This thread's connection to the file (made once: opening and closing one per
        operation would checkpoint the WAL every time). A file replaced meanwhile gets a new
        connection; a thread keeps only its last few files open."""
        cache: dict[pathlib.Path, tuple[int, int, sqlite3.Connection]] = _local.__dict__.setdefault(
            "connections", {})
        stat = self.path.stat()
        cached = cache.get(self.path)
        if cached is not None and cached[:2] == (os.getpid(), stat.st_ino):
            return cached[2]
        self._drop_connection()
        while len(cache) >= CONNECTIONS_PER_THREAD:
            _pid, _ino, old = cache.pop(next(iter(cache)))  # the oldest
            if _pid == os.getpid():
                old.close()
        connection = self._connect()
        cache[self.path] = (os.getpid(), stat.st_ino, connection)
        return connection

    def _drop_connection(self) -> None:
        cached = _local.__dict__.get("connections", {}).pop(self.path, None)
        if cached is not None and cached[0] == os.getpid():
            cached[2].close()


def state_path(where: Any = None) -> pathlib.Path:
    """The state file for ``where``: a path, a ``Store``, a settings mapping, a registry or
    a request (their settings), or None (``QRM_SIM_STATE``, else the default)."""
    if isinstance(where, Store):
        return where.path
    if isinstance(where, str | os.PathLike):
        return pathlib.Path(where)
    settings = settings_of(where)
    value = settings.get(STATE_SETTING) if settings is not None else None
    return pathlib.Path(value or os.environ.get(STATE_ENVIRONMENT) or DEFAULT_STATE)


def open_store(where: Any = None) -> Store:
    """The ``Store`` for ``where`` (see ``state_path``)."""
    return where if isinstance(where, Store) else Store(state_path(where))


def settings_of(where: Any) -> Mapping[str, Any] | None:
    """The settings mapping of a mapping, a registry or a request (None: None)."""
    if where is None or isinstance(where, Mapping):
        return where
    registry = getattr(where, "registry", where)  # a request, or the registry itself
    settings = getattr(registry, "settings", None)
    if not isinstance(settings, Mapping):
        raise TypeError(f"cannot find the sim state file from {where!r}")
    return settings


def now() -> float:
    """The store's clock: the engine's clock (``engine.clock``), as epoch seconds."""
    return clock.now().timestamp()



# -- records: what the store holds, as plain values -------------------------------------------
@dataclasses.dataclass(frozen=True)
class HostRecord:
    """A simulated hypervisor host."""

    mac: str
    name: str
    cpus: int
    memory_mb: int
    powered: bool


@dataclasses.dataclass(frozen=True)
class MachineRecord:
    """A simulated machine: a VM (``host_mac`` set) or a physical box (``host_mac`` None)."""

    mac: str
    name: str
    cpus: int
    memory_mb: int
    powered: bool
    #: epoch seconds when its last boot completes (None: powered off)
    boot_ready_at: float | None
    host_mac: str | None = None
    macs: tuple[str, ...] = ()
    disk_mb: int = 0
    disk: str | None = None
    nics: int = 1

    @property
    def kind(self) -> str:
        return "physical" if self.host_mac is None else "vm"

    @property
    def state(self) -> str:
        """``running`` or ``stopped``."""
        return "running" if self.powered else "stopped"

    def booted(self, at: float | None = None) -> bool:
        """Powered and past its boot (its agent runs)."""
        moment = now() if at is None else at
        return self.powered and self.boot_ready_at is not None and self.boot_ready_at <= moment


@dataclasses.dataclass(frozen=True)
class VolumeRecord:
    """A volume on a simulated storage."""

    storage: str
    name: str
    root_device: str
    #: ``volume``, ``clone`` or ``snapshot``
    kind: str
    size_mb: int
    #: the root device it was cloned or snapshotted from
    origin: str | None
    authorized_mac: str | None
    authorized_id: int | None


# -- queries shared by the drivers, the monitor and the inventory ------------------------------
def host_of(db: sqlite3.Connection, mac: str) -> HostRecord | None:
    row = db.execute("SELECT * FROM host WHERE mac = ?", (mac,)).fetchone()
    return _host(row) if row is not None else None


def all_hosts(db: sqlite3.Connection) -> list[HostRecord]:
    return [_host(row) for row in db.execute("SELECT * FROM host ORDER BY created_at, mac")]


def _host(row: sqlite3.Row) -> HostRecord:
    return HostRecord(row["mac"], row["name"], row["cpus"], row["memory_mb"],
                      bool(row["powered"]))


def vms_where(db: sqlite3.Connection, condition: str = "1 = 1",
              params: tuple[Any, ...] = ()) -> list[MachineRecord]:
    rows = db.execute(f"SELECT * FROM vm WHERE {condition} ORDER BY id", params)  # noqa: S608
    macs: dict[int, list[str]] = {}
    for nic in db.execute("SELECT vm_id, mac FROM nic ORDER BY vm_id, position"):
        macs.setdefault(nic["vm_id"], []).append(nic["mac"])
    return [_vm(row, tuple(macs.get(row["id"], ()))) for row in rows]


def _vm(row: sqlite3.Row, macs: tuple[str, ...]) -> MachineRecord:
    return MachineRecord(mac=macs[0] if macs else "", name=row["name"], cpus=row["cpus"],
                         memory_mb=row["memory_mb"], powered=bool(row["powered"]),
                         boot_ready_at=row["boot_ready_at"], host_mac=row["host_mac"],
                         macs=macs, disk_mb=row["disk_mb"], disk=row["disk"],
                         nics=len(macs))


def physical_where(db: sqlite3.Connection, condition: str = "1 = 1",
                   params: tuple[Any, ...] = ()) -> list[MachineRecord]:
    rows = db.execute(f"SELECT * FROM physical WHERE {condition} "  # noqa: S608
                      "ORDER BY created_at, mac", params)
    return [MachineRecord(mac=row["mac"], name=row["name"], cpus=row["cpus"],
                          memory_mb=row["memory_mb"], powered=bool(row["powered"]),
                          boot_ready_at=row["boot_ready_at"], macs=(row["mac"],),
                          nics=row["nics"]) for row in rows]


VOLUME_QUERY = ("SELECT volume.*, origin.root_device AS origin_root_device FROM volume "
                "LEFT JOIN volume AS origin ON origin.id = volume.origin_id")


def volumes_where(db: sqlite3.Connection, condition: str = "1 = 1",
                  params: tuple[Any, ...] = ()) -> list[VolumeRecord]:
    rows = db.execute(f"{VOLUME_QUERY} WHERE {condition} ORDER BY volume.id",
                      params)
    return [VolumeRecord(row["storage"], row["name"], row["root_device"], row["kind"],
                         row["size_mb"], row["origin_root_device"], row["authorized_mac"],
                         row["authorized_id"]) for row in rows]



# -- writes shared by the drivers and the inventory --------------------------------------------
def insert_vm(db: sqlite3.Connection, *, host_mac: str, name: str, cpus: int, memory_mb: int,
              macs: tuple[str, ...], disk_mb: int = 0, disk: str | None = None,
              powered: bool = True, boot_ready_at: float | None = None) -> None:
    """Add a VM and its network cards (their MACs must be free)."""
    vm_id = db.execute(
        "INSERT INTO vm (host_mac, name, cpus, memory_mb, disk_mb, disk, powered, "
        "boot_ready_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (host_mac, name, cpus, memory_mb, disk_mb, disk, int(powered), boot_ready_at,
         now())).lastrowid
    db.executemany("INSERT INTO nic (mac, vm_id, position) VALUES (?, ?, ?)",
                   [(mac, vm_id, position) for position, mac in enumerate(macs)])


def insert_volume(db: sqlite3.Connection, *, storage: str, name: str, root_device: str,
                  kind: str, size_mb: int, origin_id: int | None = None) -> None:
    db.execute("INSERT INTO volume (storage, name, root_device, kind, size_mb, origin_id, "
               "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (storage, name, root_device, kind, size_mb, origin_id, now()))


def mac_owner(db: sqlite3.Connection, mac: str) -> str | None:
    """What uses ``mac`` already: ``VM <name>``, ``physical machine``, ``host``, or None."""
    row = db.execute("SELECT vm.name FROM nic JOIN vm ON vm.id = nic.vm_id WHERE nic.mac = ?",
                     (mac,)).fetchone()
    if row is not None:
        return f"VM {row['name']}"
    if db.execute("SELECT 1 FROM physical WHERE mac = ?", (mac,)).fetchone():
        return "a physical machine"
    if db.execute("SELECT 1 FROM host WHERE mac = ?", (mac,)).fetchone():
        return "a host"
    return None


__all__ = [
    "DEFAULT_STATE", "STATE_ENVIRONMENT", "STATE_SETTING", "HostRecord", "MachineRecord", "Store",
    "VolumeRecord", "now", "open_store", "state_path",
]
