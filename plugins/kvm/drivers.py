"""The ``kvm`` virtualization driver: VMs as libvirt domains on KVM hosts.

Each host is reached at its libvirt URI (``qemu+ssh://root@HOST/system``, ``qemu:///system``
for the engine's own machine; ``plugins.kvm.settings``). Connections are kept open, one per
URI and process (``POOL``), and opened again when they broke. Every method is idempotent by
the domain name the engine gives (``qrm-vm-<resource id>``), as ``engine.plugins.drivers``
requires:

* ``create_vm`` defines the domain (``plugins.kvm.domain``: memory, CPUs, one NIC per
  persisted MAC, network boot first, the qcow2 disk if the spec names one) and starts it. A
  domain of that name exists already: nothing happens — unless it was defined and never
  started (a crash between the two): then it is started. No room on the host (its own CPUs
  and memory, ``getInfo``, minus those of its running domains): ``CapacityError``, nothing
  defined.
* ``start_vm``, ``stop_vm`` (a hard power-off), ``reboot_vm`` (power-off and on, so that a
  disk attached meanwhile is there), ``remove_vm`` (power-off, undefine with its managed save
  and NVRAM, its serial log on a local host); a missing domain is fine for stop and remove.
* ``list_vms``: every domain of the host, with its MACs, CPUs and memory.

libvirt that cannot be reached (connection refused, an SSH transport that fails, a broken
connection) raises ``HostUnreachable``; any other libvirt error ``DriverError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from engine.errors import CapacityError, DriverError
from engine.plugins.drivers import HostRef, HostUnreachable, VmInfo, VmSpec
from plugins.kvm import domain as domains
from plugins.kvm.settings import HostSettings, host_settings

log = logging.getLogger(__name__)

VM_TYPE = "kvm-vm"
#: the namespace of the plugin's own metadata in a domain definition
METADATA_NS = "https://qrm-cloud.org/xmlns/kvm/1"
METADATA_KEY = "qrm"
ET.register_namespace(METADATA_KEY, METADATA_NS)

_silenced: list[bool] = []


def libvirt_module() -> Any:
    """The libvirt binding, its default error printer silenced (errors are still raised)."""
    try:
        import libvirt
    except ImportError:
        raise DriverError("the libvirt-python binding is not installed (it builds against "
                          "Debian's libvirt-dev and pkg-config)") from None
    if not _silenced:
        libvirt.registerErrorHandler(lambda _context, _error: None, None)
        _silenced.append(True)
    return libvirt


def _unreachable_code(libvirt: Any, error: Any) -> bool:
    """Whether a libvirt error means the connection, not the request, failed."""
    codes = {libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_NO_CONNECT,
             getattr(libvirt, "VIR_ERR_RPC", -1), getattr(libvirt, "VIR_ERR_AUTH_FAILED", -1),
             getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", -1)}
    return error.get_error_code() in codes or error.get_error_domain() in (
        libvirt.VIR_FROM_RPC, getattr(libvirt, "VIR_FROM_REMOTE", -1))


class ConnectionPool:
    """One open libvirt connection per URI, shared by the threads of the process."""

    def __init__(self) -> None:
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> Any:
        libvirt = libvirt_module()
        with self._lock:
            connection = self._connections.get(uri)
            if connection is not None:
                try:
                    if connection.isAlive():
                        return connection
                except libvirt.libvirtError:
                    pass
                self._forget(uri)
            try:
                connection = libvirt.open(uri)
            except libvirt.libvirtError as error:
                # whatever keeps us from opening it (no daemon, no route, SSH refused, a
                # test node file gone): the host does not answer, its domains are unknown
                raise HostUnreachable(f"cannot connect to libvirt at {uri}: "
                                      f"{error.get_error_message()}") from None
            self._connections[uri] = connection
            return connection

    def drop(self, uri: str) -> None:
        """Close the connection to ``uri`` (it broke, or the test is over)."""
        with self._lock:
            self._forget(uri)

    def close(self) -> None:
        with self._lock:
            for uri in list(self._connections):
                self._forget(uri)

    def _forget(self, uri: str) -> None:
        connection = self._connections.pop(uri, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


#: the process's libvirt connections
POOL = ConnectionPool()


class KvmDriver:
    """VMs on KVM hosts through libvirt (module docstring)."""

    vm_type = VM_TYPE

    def __init__(self, request: Any = None, *, pool: ConnectionPool | None = None) -> None:
        # Only the registry is kept: its settings, and the plugin's rows read in
        # transactions of their own (plugins.kvm.settings), never the request's session.
        self.registry = getattr(request, "registry", None)
        self.pool = pool if pool is not None else POOL

    # -- the protocol -------------------------------------------------------------------
    def create_vm(self, host: HostRef, spec: VmSpec) -> None:
        settings = self.settings(host)
        if spec.disk is not None and not str(spec.disk).startswith("/"):
            raise DriverError(f"the disk of VM {spec.name} must be an absolute path, not "
                              f"{spec.disk!r}")
        with self.connection(host, settings) as (libvirt, connection):
            existing = _lookup(libvirt, connection, spec.name)
            if existing is not None:
                if not existing.isActive() and not _was_started(libvirt, existing):
                    self._start(libvirt, connection, host, existing)
                return
            self._check_room(libvirt, connection, host, cpus=spec.cpus,
                             memory_mb=spec.memory_mb)
            xml = domains.domain_xml(spec, settings)
            try:
                dom = connection.defineXML(xml)
            except libvirt.libvirtError as error:
                if _lookup(libvirt, connection, spec.name) is None:
                    raise
                log.info("domain %s was defined meanwhile: %s", spec.name, error)
                return
            _set_started(libvirt, dom, started=False)
            try:
                self._start(libvirt, connection, host, dom)
            except (libvirt.libvirtError, DriverError):
                # not left defined-but-dead: the next attempt starts from scratch
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
                raise

    def start_vm(self, host: HostRef, name: str) -> None:
        with self.connection(host) as (libvirt, connection):
            dom = self._existing(libvirt, connection, host, name)
            if not dom.isActive():
                self._start(libvirt, connection, host, dom)

    def stop_vm(self, host: HostRef, name: str) -> None:
        with self.connection(host) as (libvirt, connection):
            dom = _lookup(libvirt, connection, name)
            if dom is not None:
                _power_off(libvirt, dom)

    def reboot_vm(self, host: HostRef, name: str) -> None:
        with self.connection(host) as (libvirt, connection):
            dom = self._existing(libvirt, connection, host, name)
            _power_off(libvirt, dom)
            self._start(libvirt, connection, host, dom)

    def remove_vm(self, host: HostRef, name: str) -> None:
        settings = self.settings(host)
        with self.connection(host, settings) as (libvirt, connection):
            dom = _lookup(libvirt, connection, name)
            if dom is None:
                return
            _power_off(libvirt, dom)
            flags = 0
            for flag in ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE",
                         "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA", "VIR_DOMAIN_UNDEFINE_NVRAM",
                         "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA"):
                flags |= getattr(libvirt, flag, 0)
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as error:
                if error.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG,
                                                  libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                dom.undefine()  # a driver without those flags (libvirt's test driver)
        if settings.serial_dir and settings.local:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(settings.serial_dir, f"{name}.log"))

    def list_vms(self, host: HostRef) -> list[VmInfo]:
        with self.connection(host) as (_libvirt, connection):
            listed = []
            for dom in sorted(connection.listAllDomains(0), key=lambda dom: dom.name()):
                info = dom.info()
                listed.append(VmInfo(
                    name=dom.name(), state="running" if dom.isActive() else "stopped",
                    macs=domains.macs_of(dom.XMLDesc(0)), cpus=int(info[3]),
                    memory_mb=int(info[1]) // 1024))
            return listed

    # -- beyond the protocol: the qcow2 storage attaches its volumes through these --------
    def attach_disk(self, host: HostRef, name: str, path: str) -> None:
        """Make ``path`` the disk ``vda`` of domain ``name`` from its next power-on (the
        engine's reboot into the appliance: ``reboot_vm`` powers off and on); it is the
        disk already: nothing happens."""
        with self.connection(host) as (libvirt, connection):
            dom = self._existing(libvirt, connection, host, name)
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if domains.disk_on_target(xml) == path:
                return
            connection.defineXML(_with_disk(xml, path))

    def detach_disk(self, host: HostRef, path: str, *, keep: str | None = None) -> list[str]:
        """Take ``path`` off every domain of the host that has it (but domain ``keep``),
        from their next power-on; return their names."""
        detached = []
        with self.connection(host) as (libvirt, connection):
            for dom in connection.listAllDomains(0):
                if dom.name() == keep:
                    continue
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                if path in domains.disks_of(xml):
                    connection.defineXML(_with_disk(xml, None, remove=path))
                    detached.append(dom.name())
        return detached

    def disk_users(self, host: HostRef, path: str) -> list[str]:
        """Domains of the host whose definition has ``path`` as a disk."""
        with self.connection(host) as (libvirt, connection):
            return sorted(dom.name() for dom in connection.listAllDomains(0)
                          if path in domains.disks_of(dom.XMLDesc(
                              libvirt.VIR_DOMAIN_XML_INACTIVE)))

    def capacity(self, host: HostRef) -> tuple[int, int, int, int]:
        """The host's CPUs and memory (MB), and those its running domains take."""
        with self.connection(host) as (libvirt, connection):
            return _capacity(libvirt, connection)

    # -- helpers ----------------------------------------------------------------------------
    def settings(self, host: HostRef) -> HostSettings:
        return host_settings(self.registry, host)

    @contextlib.contextmanager
    def connection(self, host: HostRef,
                   settings: HostSettings | None = None) -> Iterator[tuple[Any, Any]]:
        """``(libvirt, connection)`` to the host; libvirt's errors translated."""
        settings = settings or self.settings(host)
        libvirt = libvirt_module()
        connection = self.pool.get(settings.uri)
        try:
            yield libvirt, connection
        except libvirt.libvirtError as error:
            message = error.get_error_message() or str(error)
            if _unreachable_code(libvirt, error):
                self.pool.drop(settings.uri)
                raise HostUnreachable(f"host {host.name or host.id} ({settings.uri}): "
                                      f"{message}") from None
            raise DriverError(f"host {host.name or host.id}: libvirt: {message}") from None

    def _existing(self, libvirt: Any, connection: Any, host: HostRef, name: str) -> Any:
        dom = _lookup(libvirt, connection, name)
        if dom is None:
            raise DriverError(f"no VM {name} on host {host.name or host.id}")
        return dom

    def _start(self, libvirt: Any, connection: Any, host: HostRef, dom: Any) -> None:
        info = dom.info()
        self._check_room(libvirt, connection, host, cpus=int(info[3]),
                         memory_mb=int(info[1]) // 1024)
        dom.create()
        _set_started(libvirt, dom, started=True)

    @staticmethod
    def _check_room(libvirt: Any, connection: Any, host: HostRef, *, cpus: int,
                    memory_mb: int) -> None:
        total_cpus, total_memory, used_cpus, used_memory = _capacity(libvirt, connection)
        free_cpus, free_memory = total_cpus - used_cpus, total_memory - used_memory
        if cpus > free_cpus or memory_mb > free_memory:
            raise CapacityError(
                f"host {host.name or host.id} has {max(free_cpus, 0)} CPU(s) and "
                f"{max(free_memory, 0)} MB free; the VM needs {cpus} CPU(s) and "
                f"{memory_mb} MB")


def _capacity(libvirt: Any, connection: Any) -> tuple[int, int, int, int]:
    """(CPUs, memory MB) of the host (``getInfo``), and those its running domains take."""
    _model, memory_mb, cpus, *_rest = connection.getInfo()
    used_cpus = used_memory = 0
    for dom in connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        info = dom.info()
        used_cpus += int(info[3])
        used_memory += int(info[1]) // 1024
    return int(cpus), int(memory_mb), used_cpus, used_memory


def _lookup(libvirt: Any, connection: Any, name: str) -> Any:
    try:
        return connection.lookupByName(name)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _power_off(libvirt: Any, dom: Any) -> None:
    if not dom.isActive():
        return
    try:
        dom.destroy()
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or dom.isActive():
            raise  # "not running" is what we wanted


def _set_started(libvirt: Any, dom: Any, *, started: bool) -> None:
    """Record in the definition whether the domain has been started once."""
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    f"<vm started='{'yes' if started else 'no'}'/>", METADATA_KEY,
                    METADATA_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def _was_started(libvirt: Any, dom: Any) -> bool:
    """False only for a domain this driver defined and never started."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS,
                            libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError:
        return True  # not ours, or from before: leave it as it is
    return domains.parse_xml(text).get("started") != "no"


def _with_disk(xml: str, path: str | None, *, remove: str | None = None) -> str:
    """The definition ``xml`` with ``path`` as its disk ``vda`` (replacing the one there),
    or (``path`` None) without the disk whose file is ``remove``."""
    domain = domains.parse_xml(xml)
    devices = domain.find("devices")
    if devices is None:
        devices = ET.SubElement(domain, "devices")
    for disk in devices.findall("disk"):
        target, source = disk.find("target"), disk.find("source")
        file = source.get("file") if source is not None else None
        on_vda = target is not None and target.get("dev") == domains.DISK_TARGET
        if (path is not None and on_vda) or (remove is not None and file == remove):
            devices.remove(disk)
    if path is not None:
        devices.insert(0, domains.disk_element(path))
        # libvirt puts <boot dev='hd'/> into a definition whose devices carry no boot order
        # (a pass-through NIC); it cannot stay beside the disk's own
        for os_element in domain.findall("os"):
            for boot in os_element.findall("boot"):
                os_element.remove(boot)
    return ET.tostring(domain, encoding="unicode")


__all__ = ["POOL", "VM_TYPE", "ConnectionPool", "KvmDriver", "libvirt_module"]
