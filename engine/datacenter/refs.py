"""Plain values for drivers, built from rows (drivers never see the database session)."""

from __future__ import annotations

from engine.datacenter.models import Resource, Storage
from engine.plugins.drivers import HostRef, MachineRef, StorageRef


def host_ref(host: Resource) -> HostRef:
    """What a virtualization driver needs to know of hypervisor host ``host``."""
    return HostRef(id=host.id, name=host.label, mac=host.mac, ip=host.ip,
                   settings=dict(getattr(host, "settings", None) or {}))


def storage_ref(storage: Storage) -> StorageRef:
    """What a storage driver needs to know of ``storage``."""
    return StorageRef(id=storage.id, name=storage.name, storage_type=storage.storage_type,
                      capacity_mb=storage.capacity_mb or 0,
                      settings=dict(getattr(storage, "settings", None) or {}))


def machine_ref(resource: Resource) -> MachineRef:
    """The machine a storage authorisation or a power command is about."""
    return MachineRef(id=resource.id, mac=resource.mac, name=resource.label,
                      kind=resource.kind.value, ip=resource.ip)


def vm_name(resource_id: int) -> str:
    """The name of VM resource ``resource_id`` on its host: derived from the row, so a
    repeated create finds the VM the first attempt made."""
    return f"qrm-vm-{resource_id}"


def volume_name(image_id: int) -> str:
    """The name of the volume of image ``image_id`` that the engine made (a clone)."""
    return f"qrm-img-{image_id}"
