"""Driver protocols: how the engine talks to storage and virtualization, whatever the plugin.

Drivers are returned by the ``qrm_storage_drivers`` / ``qrm_virtualization_drivers`` hooks.
They change the world outside our database (a hypervisor, a storage host), which does not roll
back with our transaction, so every call follows the engine's outside-work protocol
(``engine.datacenter.calls``):

1. a provisioning step records the call it wants (a ``driver_call`` row: operation, target and
   arguments, with a unique key derived from persisted rows) and commits;
2. after the commit the job that owns the step makes the call, **outside any database
   transaction**: a driver never touches ``request.dbsession``; it gets plain values
   (``HostRef``, ``StorageRef``, ``VmSpec``) built from the rows when the call was recorded;
3. the outcome is recorded in a new transaction and the step moves on.

A crash between any two of these repeats the call, so every method is **idempotent by the
name it is given**: ``create_vm`` of a VM that exists already with that name does nothing,
``clone_volume`` of an existing clone of that name returns its root device, removing what is
not there is not an error. Names are chosen by the engine from row ids (``qrm-vm-42``,
``qrm-img-7``); a backend must never invent its own (no random MACs, no fresh ids), or a
repeated call would make a second object.

Errors: ``engine.errors.CapacityError`` (no room: the engine tries elsewhere or gives up),
``HostUnreachable`` (the host or storage does not answer: retried later, and reconciliation
skips it instead of treating its objects as gone), ``engine.errors.DriverError`` (anything
else: retried with back-off).

The read side (``list_vms``, ``list_volumes``) is what the ``datacenter.reconcile`` job
compares with the rows: objects whose name starts with ``NAME_PREFIX`` and that no row knows
are orphans; rows whose object is missing have vanished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from engine.errors import DriverError

#: every VM and volume the engine makes is named with this prefix (reconciliation's scope)
NAME_PREFIX = "qrm-"


class HostUnreachable(DriverError):
    """The host or storage did not answer (connection refused, timeout). Nothing is known
    about its objects: retry later, never conclude they are gone."""

    code = "Server.Error"


@dataclasses.dataclass(frozen=True)
class HostRef:
    """A hypervisor host as drivers see it (a ``Resource`` of kind host)."""

    id: int
    name: str
    mac: str
    ip: str | None = None
    #: the host's own settings (libvirt URI, domain type, SSH target …), plugin-defined
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StorageRef:
    """A storage as drivers see it."""

    id: int
    name: str
    storage_type: str
    #: megabytes the storage may hold (0: as much as the backend has)
    capacity_mb: int = 0
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MachineRef:
    """The machine a storage authorisation or a power command is about."""

    id: int
    mac: str
    name: str = ""
    #: ``physical``, ``host`` or ``vm``
    kind: str = "physical"
    ip: str | None = None


@dataclasses.dataclass(frozen=True)
class VmSpec:
    """Everything a hypervisor needs to create a VM, fixed before the call."""

    #: the VM's name on the host, derived from its resource id (``qrm-vm-<id>``)
    name: str
    cpus: int
    memory_mb: int
    #: one persisted MAC per network card, the first one boots from the network
    macs: tuple[str, ...]
    disk_mb: int = 0
    #: the root device of a local disk to attach (qcow2 storage), or None: network root
    disk: str | None = None


@dataclasses.dataclass(frozen=True)
class VmInfo:
    """One VM as the host reports it."""

    name: str
    #: ``running`` or ``stopped`` (a backend maps its own states onto these two)
    state: str
    macs: tuple[str, ...] = ()
    cpus: int = 0
    memory_mb: int = 0


@dataclasses.dataclass(frozen=True)
class VolumeInfo:
    """One volume as the storage reports it."""

    name: str
    root_device: str
    size_mb: int
    #: the root device it was cloned or snapshotted from, if any
    origin: str | None = None


@runtime_checkable
class StorageDriver(Protocol):
    """Volumes on a storage (module docstring: idempotent by name, no database access)."""

    #: the storage type this driver serves (``Storage.storage_type``)
    storage_type: str

    def create_volume(self, storage: StorageRef, *, name: str, size_mb: int) -> str:
        """Create an empty volume ``name``; return its root-device identifier. An existing
        plain volume of that name and size is returned as it is."""

    def clone_volume(self, storage: StorageRef, *, source_root_device: str, name: str,
                     size_mb: int) -> str:
        """Make a writable copy-on-write clone ``name`` of a volume; return its root device.
        An existing clone of that name and origin is returned as it is."""

    def snapshot_volume(self, storage: StorageRef, *, source_root_device: str,
                        name: str) -> str:
        """Make a read-only snapshot ``name``; return its root device (idempotent by name)."""

    def resize_volume(self, storage: StorageRef, *, root_device: str, size_mb: int) -> None:
        """Grow a volume to ``size_mb``; a volume of that size already is left alone."""

    def remove_volume(self, storage: StorageRef, *, root_device: str) -> None:
        """Remove a volume; removing one that does not exist is not an error."""

    def authenticate(self, storage: StorageRef, *, root_device: str,
                     machine: MachineRef | None) -> None:
        """Allow exactly ``machine`` to mount the volume (``None``: nobody but the storage);
        asking again for the same machine changes nothing."""

    def list_volumes(self, storage: StorageRef) -> list[VolumeInfo]:
        """Every volume on the storage. Raises ``HostUnreachable`` if it does not answer."""

    # Optional (not part of the isinstance check; see ``SupportsBootParameters``):
    # ``boot_parameters(storage, *, root_device, root_fs_type, deployment_type)``


@runtime_checkable
class SupportsBootParameters(Protocol):
    """The optional, read-only part of a ``StorageDriver``: how a network-booted machine
    mounts an image's root (openQRM's root-mount hook and deployment parameters).

    The boot face puts each pair on the kernel command line as ``qrm.<key>=<value>`` (keys:
    lower-case letters, digits, ``_``; values without blanks or quotes). ``root`` names the
    method the resource agent carries out: ``none`` (stay in the ramdisk), ``nfs`` (with
    ``nfsroot=<server>:<path>`` and optional ``nfsopts``) or ``local`` (with ``rootdev`` and
    ``rootfstype``); docs/boot.md lists them. A driver without the method: no root mount.
    Called inside a transaction: it must not change anything nor touch the database."""

    def boot_parameters(self, storage: StorageRef, *, root_device: str, root_fs_type: str,
                        deployment_type: str) -> Mapping[str, str]:
        """The root-mount parameters for a machine booting the image on ``root_device``."""


@runtime_checkable
class VirtualizationDriver(Protocol):
    """VMs on hypervisor hosts (module docstring: idempotent by name, no database access)."""

    #: the VM virtualization type this driver creates (``VirtualizationType.name``)
    vm_type: str

    def create_vm(self, host: HostRef, spec: VmSpec) -> None:
        """Create VM ``spec.name`` on ``host`` and power it on (network boot first). A VM of
        that name exists already: nothing happens. Raises ``CapacityError`` when the host has
        no room."""

    def start_vm(self, host: HostRef, name: str) -> None:
        """Power the VM on (running already: nothing happens)."""

    def stop_vm(self, host: HostRef, name: str) -> None:
        """Power the VM off (stopped or missing already: nothing happens)."""

    def reboot_vm(self, host: HostRef, name: str) -> None:
        """Reset the VM so it network-boots its assigned kernel again (a stopped VM is
        powered on)."""

    def remove_vm(self, host: HostRef, name: str) -> None:
        """Destroy the VM and what the driver made for it; a missing VM is not an error."""

    def list_vms(self, host: HostRef) -> list[VmInfo]:
        """Every VM on the host. Raises ``HostUnreachable`` if the host does not answer."""


__all__ = [
    "NAME_PREFIX", "HostRef", "HostUnreachable", "MachineRef", "StorageDriver", "StorageRef",
    "SupportsBootParameters",
    "VirtualizationDriver", "VmInfo", "VmSpec", "VolumeInfo",
]
