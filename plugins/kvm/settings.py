"""The settings of a KVM host and of a qcow2 storage, as plain values for the drivers.

A driver gets a ``HostRef`` or ``StorageRef``. Their ``settings`` mapping may carry
everything (callers that know it, the tests): ``uri``, ``domain_type``, ``interface_xml``,
``image_dir``, ``serial_dir`` for a host; ``directory``, ``uri``, ``executor`` (``local`` or
``ssh``), ``ssh_host``, ``ssh_port``, ``ssh_user``, ``ssh_key``, ``rootdev`` for a storage.
When it does not name the ``uri`` (a host) or the ``directory`` (a storage), the plugin's own
row is read (``kvm_host``, and the storage's ``Storage`` row for its SSH target) in a short
transaction of its own, never the caller's — as the command worker reads pinned host keys.

A qcow2 storage lives on a KVM host (``Storage.resource``): its volumes are files in the
host's ``image_dir``, its commands run on that host — with the ``local`` executor when the
host's libvirt URI names no remote machine (``qemu:///system``), else over SSH to the
storage's SSH target (``Storage.ssh_*``, falling back to its resource's IP address and the
``qrm.ssh.*`` settings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.commands.ssh import SshTarget
from engine.errors import DriverError
from engine.plugins.drivers import HostRef, StorageRef

#: libvirt domain types a host may use (``test``: libvirt's test driver)
DOMAIN_TYPES = ("kvm", "qemu", "test")
#: each NIC of a VM, unless the host names its own template
DEFAULT_INTERFACE_XML = ("<interface type='network'><source network='default'/>"
                         "<mac address='$mac'/><model type='virtio'/></interface>")
#: where a host keeps its qcow2 volumes unless it names a directory
DEFAULT_IMAGE_DIR = "/var/lib/libvirt/images/qrm"
#: the device a VM sees its qcow2 disk as (the first virtio disk)
DEFAULT_ROOTDEV = "/dev/vda"
EXECUTORS = ("local", "ssh")


@dataclasses.dataclass(frozen=True)
class HostSettings:
    """How to reach one KVM host and what its domains look like."""

    uri: str
    domain_type: str = "kvm"
    interface_xml: str = DEFAULT_INTERFACE_XML
    image_dir: str = DEFAULT_IMAGE_DIR
    #: a directory on the host for each VM's serial console log (None: a pty)
    serial_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.uri:
            raise DriverError("a KVM host needs a libvirt URI")
        if self.domain_type not in DOMAIN_TYPES:
            raise DriverError(f"domain type {self.domain_type!r} is not one of "
                              f"{', '.join(DOMAIN_TYPES)}")

    @property
    def local(self) -> bool:
        """Whether the URI names no remote machine (libvirt on the engine's machine)."""
        return is_local_uri(self.uri)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any],
                     defaults: Mapping[str, Any] | None = None) -> HostSettings:
        defaults = defaults or {}
        return cls(uri=str(values.get("uri") or ""),
                   domain_type=str(values.get("domain_type") or "kvm"),
                   interface_xml=str(values.get("interface_xml") or DEFAULT_INTERFACE_XML),
                   image_dir=str(values.get("image_dir")
                                 or defaults.get("qrm.kvm.image_dir") or DEFAULT_IMAGE_DIR),
                   serial_dir=(values.get("serial_dir") or defaults.get("qrm.kvm.serial_dir")
                               or None))


@dataclasses.dataclass(frozen=True)
class StorageSettings:
    """Where a qcow2 storage's files are and how commands reach them."""

    directory: str
    executor: str = "local"
    ssh: SshTarget | None = None
    #: the libvirt URI of the host whose VMs get these volumes as disks
    uri: str | None = None
    rootdev: str = DEFAULT_ROOTDEV

    def __post_init__(self) -> None:
        if not self.directory.startswith("/"):
            raise DriverError(f"the qcow2 directory {self.directory!r} is not an absolute "
                              "path")
        if self.executor not in EXECUTORS:
            raise DriverError(f"executor {self.executor!r} is not one of "
                              f"{', '.join(EXECUTORS)}")
        if self.executor == "ssh" and self.ssh is None:
            raise DriverError("a qcow2 storage reached over SSH needs an SSH target")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any],
                     registry_settings: Mapping[str, Any]) -> StorageSettings:
        uri = values.get("uri") or None
        executor = values.get("executor") or (
            "ssh" if uri and not is_local_uri(uri) else "local")
        target = None
        if executor == "ssh":
            host = values.get("ssh_host") or (urlsplit(uri).hostname if uri else None)
            if not host:
                raise DriverError("a qcow2 storage reached over SSH needs an SSH host")
            try:
                target = SshTarget.from_settings(
                    registry_settings, host, port=values.get("ssh_port"),
                    user=values.get("ssh_user"), key=values.get("ssh_key"))
            except ValueError as error:
                raise DriverError(str(error)) from None
        return cls(directory=str(values.get("directory") or "").rstrip("/") or "",
                   executor=executor, ssh=target, uri=uri,
                   rootdev=str(values.get("rootdev") or DEFAULT_ROOTDEV))


def is_local_uri(uri: str) -> bool:
    """``qemu:///system``, ``test:///…``: no host named, libvirt on this machine."""
    return not urlsplit(uri).hostname


def registry_settings(registry: Any) -> Mapping[str, Any]:
    return getattr(registry, "settings", None) or {}


def host_settings(registry: Any, host: HostRef) -> HostSettings:
    """The host's settings: from ``host.settings`` if they name the URI, else its
    ``kvm_host`` row (read in a transaction of its own)."""
    values: Mapping[str, Any] = host.settings
    if not values.get("uri"):
        values = _load(registry, _host_values, resource_id=host.id)
        if values is None:
            raise DriverError(f"host {host.name or host.id} is not a KVM host (it has no "
                              "libvirt URI)")
    return HostSettings.from_mapping(values, registry_settings(registry))


def storage_settings(registry: Any, storage: StorageRef) -> StorageSettings:
    """The storage's settings: from ``storage.settings`` if they name the directory, else
    from its rows (the storage, its KVM host) read in a transaction of their own."""
    values: Mapping[str, Any] = storage.settings
    if not values.get("directory"):
        values = _load(registry, _storage_values, storage_id=storage.id)
    return StorageSettings.from_mapping(values, registry_settings(registry))


def _load(registry: Any, func: Any, **kw: Any) -> Any:
    if registry is None or not hasattr(registry, "get") or "dbsession_factory" not in registry:
        raise DriverError("the KVM settings are not in the call and there is no database to "
                          "read them from")
    from engine.scheduler.runner import run_in_transaction

    return run_in_transaction(registry, func, **kw)


def host_values(row: Any) -> dict[str, Any]:
    """A ``kvm_host`` row as a settings mapping."""
    return {"uri": row.uri, "domain_type": row.domain_type,
            "interface_xml": row.interface_xml, "image_dir": row.image_dir}


def _host_values(request: Any, *, resource_id: int) -> dict[str, Any] | None:
    from plugins.kvm.models import KvmHost

    row = request.dbsession.get(KvmHost, resource_id)
    return host_values(row) if row is not None else None


def _storage_values(request: Any, *, storage_id: int) -> dict[str, Any]:
    from engine.commands.targets import ssh_target
    from engine.datacenter.models import Storage
    from plugins.kvm.models import KvmHost

    storage = request.dbsession.get(Storage, storage_id)
    if storage is None:
        raise DriverError(f"no storage {storage_id}")
    host = (request.dbsession.get(KvmHost, storage.resource_id)
            if storage.resource_id is not None else None)
    if host is None:
        raise DriverError(f"qcow2 storage {storage.name} is not on a KVM host (its resource "
                          "must be a KVM host)")
    settings = HostSettings.from_mapping(host_values(host),
                                         registry_settings(request.registry))
    values: dict[str, Any] = {"directory": settings.image_dir, "uri": settings.uri,
                              "executor": "local" if settings.local else "ssh"}
    if not settings.local:
        try:
            target = ssh_target(request.registry.settings, storage)
        except ValueError as error:
            if not urlsplit(settings.uri).hostname:
                raise DriverError(str(error)) from None
            target = None  # the host the libvirt URI names, with the qrm.ssh.* defaults
        if target is not None:
            values.update(ssh_host=target.host, ssh_port=target.port, ssh_user=target.user,
                          ssh_key=target.key_file)
    return values


__all__ = ["DEFAULT_IMAGE_DIR", "DEFAULT_INTERFACE_XML", "DEFAULT_ROOTDEV", "DOMAIN_TYPES",
           "HostSettings", "StorageSettings", "host_settings", "host_values", "is_local_uri",
           "storage_settings"]
