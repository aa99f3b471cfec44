"""Driver protocols: how the engine talks to storage and virtualization, whatever the plugin.

Drivers are returned by the ``qrm_storage_drivers`` / ``qrm_virtualization_drivers`` hooks,
bound to the current request. Every method is idempotent where it takes a name: asking twice
for the same clone or VM returns what the first call made, so an interrupted provisioning
step can simply run again. Failures raise ``engine.errors.CapacityError`` (no room: try
elsewhere) or ``engine.errors.DriverError`` (anything else).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from engine.datacenter.models import Resource, Storage


@runtime_checkable
class StorageDriver(Protocol):
    #: the storage type this driver serves (``Storage.storage_type``)
    storage_type: str

    def create_volume(self, storage: Storage, *, name: str, size_mb: int) -> str:
        """Create an empty volume; return its root-device identifier."""

    def remove_volume(self, storage: Storage, *, root_device: str) -> None:
        """Remove a volume; removing one that does not exist is not an error."""

    def clone_volume(self, storage: Storage, *, source_root_device: str, name: str,
                     size_mb: int) -> str:
        """Make a writable copy-on-write clone named ``name`` of a volume; return its
        root-device identifier. If ``name`` exists already (an earlier attempt), return it."""

    def snapshot_volume(self, storage: Storage, *, source_root_device: str, name: str) -> str:
        """Make a read-only snapshot named ``name``; return its root-device identifier."""

    def resize_volume(self, storage: Storage, *, root_device: str, size_mb: int) -> None:
        """Grow a volume to ``size_mb``."""

    def authenticate(self, storage: Storage, *, root_device: str,
                     resource: Resource | None) -> None:
        """Allow exactly ``resource`` to mount the volume (``None``: nobody but the storage)."""

    def list_root_devices(self, storage: Storage) -> list[str]:
        """The root-device identifiers of every volume on the storage."""


@runtime_checkable
class VirtualizationDriver(Protocol):
    #: the VM virtualization type this driver creates (``VirtualizationType.name``)
    vm_type: str

    def create_vm(self, host: Resource, vm: Resource, *, disk_mb: int) -> None:
        """Create and power on VM ``vm`` (its row exists: MAC, CPUs, memory, NICs) on ``host``.
        Idempotent per ``vm.id``. Raises CapacityError when the host has no room."""

    def start_vm(self, vm: Resource) -> None:
        """Power the VM on."""

    def stop_vm(self, vm: Resource) -> None:
        """Power the VM off."""

    def reboot_vm(self, vm: Resource) -> None:
        """Reset the VM so it network-boots its assigned kernel again."""

    def remove_vm(self, vm: Resource) -> None:
        """Destroy the VM; removing one that does not exist is not an error."""
