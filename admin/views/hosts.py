"""Hosts: the KVM hosts and storage hosts of the ``kvm`` and ``lvm-storage`` plugins.

* the list of both, with the forms to add a KVM host (name, address, MAC, CPUs, memory,
  libvirt URI, domain type, SSH target) and a storage host (``lvm-storage`` with its volume
  group, clone mode, export kind and server; or ``qcow2`` on a KVM host);
* a KVM host in detail: its capacity (the monitor's figures from libvirt, and libvirt's own
  now), its VMs as libvirt lists them and as the engine knows them;
* a storage host in detail: its settings, its volumes as the driver lists them (a clear
  message when the host does not answer) and the golden images on it;
* the host key confirmation of either: the key the SSH endpoint offers is fetched and shown
  by its SHA256 fingerprint; once the admin confirms it, it is pinned
  (``CommandService.confirm_host_key``), and the command worker and the plugins' SSH
  connections accept exactly that key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.view import view_config
from sqlalchemy import select

from admin.i18n import _, error_text, translate
from admin.rendering import flash, template
from admin.views import acting_admin, form_errors, matched_id
from engine.commands.models import SshHostKey
from engine.commands.services import CommandService
from engine.commands.ssh import SshPool, SshUnreachable
from engine.commands.targets import ssh_target
from engine.datacenter.models import (
    Image,
    Resource,
    ResourceState,
    Storage,
    VirtualizationKind,
    VirtualizationType,
)
from engine.datacenter.refs import storage_ref
from engine.datacenter.services import DatacenterService
from engine.db import utcnow
from engine.errors import QrmError, ValidationError
from engine.events.services import EventService
from engine.permissions import Permissions
from engine.plugins.drivers import HostRef, HostUnreachable
from engine.plugins.manager import PluginService

KVM_TYPE = "kvm"
STORAGE_TYPES = ("lvm-storage", "qcow2")
DOMAIN_TYPES = ("kvm", "qemu")
CLONE_MODES = ("snapshot", "copy")
EXPORT_KINDS = ("nfs", "iscsi")
KVM_FIELDS = ("name", "ip", "mac", "cpus", "memory_mb", "uri", "domain_type", "ssh_host",
              "ssh_port", "ssh_user")
STORAGE_FIELDS = ("name", "storage_type", "host", "ssh_host", "ssh_port", "ssh_user",
                  "capacity_mb", "volume_group", "clone", "export", "server")

#: a refusal about a field, said in the words of the form (the services' own wording is
#: about their parameter names)
FIELD_MESSAGES = {
    "name": _("Give the host a name (letters, digits, '.', '_', '-')."),
    "storage": _("A storage of this name exists already, or the name is not valid "
                 "(letters, digits, '.', '_', '-')."),
    "ip": _("The IP address is not a valid IPv4 or IPv6 address."),
    "mac": _("The MAC address is not valid (six pairs of hex digits, such as "
             "52:54:00:12:34:56), or another resource has it already."),
    "cpus": _("CPUs must be a whole number, 0 or more."),
    "memory_mb": _("Memory must be a whole number of megabytes, 0 or more."),
    "capacity_mb": _("Capacity must be a whole number of megabytes, 0 or more."),
    "uri": _("The libvirt URI must start with qemu://, qemu+ssh:// (or another qemu+ "
             "transport) and hold no blanks."),
    "domain_type": _("The domain type must be kvm or qemu."),
    "ssh_host": _("The SSH host is not a host name or address."),
    "ssh_port": _("The SSH port must be a number from 1 to 65535."),
    "ssh_user": _("The SSH user must be a user name without blanks."),
    "storage_type": _("The storage type must be lvm-storage or qcow2."),
    "host": _("A qcow2 storage lives on a KVM host: choose one."),
    "volume_group": _("The volume group is not a valid LVM name (letters, digits, '+', '_', "
                      "'.', '-'; at most 127; not starting with '-'; for iSCSI only "
                      "lower-case letters, digits, '.', '-')."),
    "clone": _("The clone mode must be snapshot or copy."),
    "export": _("The export must be nfs or iscsi."),
    "server": _("The server is not a host name or address."),
}


def _field_error(request: Any, error: QrmError, fields: tuple[str, ...]) -> dict[str, str]:
    """``form_errors``, with the form's own words for a field it knows."""
    errors = form_errors(request, error, fields)
    if error.field in fields and error.field in FIELD_MESSAGES:
        errors[error.field] = translate(request, FIELD_MESSAGES[error.field])
    elif error.field == "storage" and "name" in fields:
        errors.pop("_form", None)
        errors["name"] = translate(request, FIELD_MESSAGES["storage"])
    return errors


def _invalid(field: str) -> ValidationError:
    return ValidationError(f"{field} is not valid", field=field)


def _whole(value: str, field: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    value = (value or "").strip() or "0"
    if not value.isdigit() or int(value) < minimum or (maximum and int(value) > maximum):
        raise _invalid(field)
    return int(value)


def _optional_port(value: str) -> int | None:
    return _whole(value, "ssh_port", minimum=1, maximum=65535) if (value or "").strip() else None


def _word(value: str, field: str) -> str | None:
    value = (value or "").strip()
    if value and (len(value) > 64 or any(c.isspace() for c in value)):
        raise _invalid(field)
    return value or None


# -- reading --------------------------------------------------------------------------------
def _kvm_hosts(request: Any) -> list[tuple[Resource, Any]]:
    from plugins.kvm.models import KvmHost

    return list(request.dbsession.execute(
        select(Resource, KvmHost).outerjoin(KvmHost, KvmHost.resource_id == Resource.id)
        .join(VirtualizationType, VirtualizationType.id == Resource.virtualization_type_id)
        .where(Resource.kind == VirtualizationKind.HOST, VirtualizationType.name == KVM_TYPE)
        .order_by(Resource.id)))


def _storages(request: Any) -> list[Storage]:
    return list(request.dbsession.scalars(
        select(Storage).where(Storage.storage_type.in_(STORAGE_TYPES)).order_by(Storage.id)))


def _kvm_host(request: Any) -> tuple[Resource, Any]:
    from plugins.kvm.models import KvmHost

    resource = request.dbsession.get(Resource, matched_id(request))
    if (resource is None or resource.kind is not VirtualizationKind.HOST
            or resource.virtualization_type.name != KVM_TYPE):
        raise HTTPNotFound()
    return resource, request.dbsession.get(KvmHost, resource.id)


def _storage(request: Any) -> Storage:
    storage = request.dbsession.get(Storage, matched_id(request))
    if storage is None or storage.storage_type not in STORAGE_TYPES:
        raise HTTPNotFound()
    return storage


def _lvm_row(request: Any, storage: Storage) -> Any:
    if storage.storage_type != "lvm-storage":
        return None
    from plugins.lvm.models import LvmStorage

    return request.dbsession.get(LvmStorage, storage.id)


def _endpoint(request: Any, machine: Resource | Storage, row: Any = None
              ) -> tuple[str, int] | None:
    """The SSH endpoint (host, port) of a KVM host or storage host; None: it needs none (a
    KVM host on this machine) or names none."""
    settings = request.registry.settings
    try:
        target = ssh_target(settings, machine)
        return target.host, target.port
    except ValueError:
        pass
    uri = getattr(row, "uri", None)
    if uri and urlsplit(uri).hostname:
        parts = urlsplit(uri)
        return parts.hostname, parts.port or int(settings.get("qrm.ssh.port") or 22)
    return None


def _key_state(request: Any, endpoint: tuple[str, int] | None) -> str:
    """``none`` (no SSH endpoint), ``pinned`` or ``unconfirmed``."""
    if endpoint is None:
        return "none"
    pinned = request.find_service(CommandService).pinned_host_key(*endpoint)
    return "pinned" if pinned is not None else "unconfirmed"


def _list_page(request: Any, **forms: Any) -> dict[str, Any]:
    hosts = []
    for resource, row in _kvm_hosts(request):
        hosts.append({"resource": resource, "row": row,
                      "vms": len(request.find_service(DatacenterService).vms_on(resource)),
                      "key": _key_state(request, _endpoint(request, resource, row))})
    storages = []
    for storage in _storages(request):
        images = request.dbsession.scalar(
            select(Image.id).where(Image.storage_id == storage.id).limit(1))
        storages.append({"storage": storage, "lvm": _lvm_row(request, storage),
                         "has_images": images is not None,
                         "key": _key_state(request, _endpoint(request, storage))})
    plugins = request.find_service(PluginService).states()
    return {"hosts": hosts, "storages": storages, "forms": forms,
            "kvm_hosts": [entry["resource"] for entry in hosts],
            "plugin_states": {name: state.value for name, state in plugins.items()},
            "domain_types": DOMAIN_TYPES, "storage_types": STORAGE_TYPES,
            "clone_modes": CLONE_MODES, "export_kinds": EXPORT_KINDS}


@view_config(route_name="admin.hosts", request_method="GET", renderer=template("hosts"),
             permission=Permissions.ADMIN_VIEW)
def host_list(request: Any) -> dict[str, Any]:
    return _list_page(request)


# -- adding ---------------------------------------------------------------------------------
@view_config(route_name="admin.hosts.kvm.add", request_method="POST",
             renderer=template("hosts"), permission=Permissions.ADMIN_MANAGE)
def add_kvm_host(request: Any) -> Any:
    values = {field: request.POST.get(field, "").strip() for field in KVM_FIELDS}
    actor = acting_admin(request)
    try:
        from plugins.kvm.hosts import configure_host, default_uri

        if not values["name"] or len(values["name"]) > 100:
            raise _invalid("name")
        ip = values["ip"] or None
        if ip is not None:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise _invalid("ip") from None
        cpus = _whole(values["cpus"], "cpus")
        memory_mb = _whole(values["memory_mb"], "memory_mb")
        if values["domain_type"] not in DOMAIN_TYPES:
            raise _invalid("domain_type")
        port = _optional_port(values["ssh_port"])
        user = _word(values["ssh_user"], "ssh_user")
        service = request.find_service(DatacenterService)
        try:
            service.virtualization_type(KVM_TYPE)
        except QrmError:
            raise ValidationError(translate(request, _(
                "The kvm plugin is not enabled: enable and start it first (qrm plugins "
                "enable kvm, qrm plugins start kvm).")), field=None) from None
        resource = service.add_resource(
            mac=values["mac"], kind=VirtualizationKind.HOST, virtualization_type=KVM_TYPE,
            actor=actor, name=values["name"], cpus=cpus, memory_mb=memory_mb, ip=ip,
            state=ResourceState.UNKNOWN)
        if values["ssh_host"] or port or user:
            request.find_service(CommandService).set_ssh_target(
                resource, actor=actor, host=values["ssh_host"] or None, port=port, user=user)
        # the default URI follows the SSH target just set
        configure_host(request, resource, actor=actor,
                       uri=values["uri"] or default_uri(resource, request.registry.settings),
                       domain_type=values["domain_type"])
    except QrmError as error:
        return _list_page(request, kvm={"values": values,
                                        "errors": _field_error(request, error, KVM_FIELDS)})
    flash(request, translate(request, _("KVM host ${name} added: it becomes active once its "
                                        "libvirt answers the monitor."),
                             name=values["name"]))
    return HTTPSeeOther(location=request.route_path("admin.hosts.kvm", id=resource.id))


@view_config(route_name="admin.hosts.storage.add", request_method="POST",
             renderer=template("hosts"), permission=Permissions.ADMIN_MANAGE)
def add_storage_host(request: Any) -> Any:
    values = {field: request.POST.get(field, "").strip() for field in STORAGE_FIELDS}
    actor = acting_admin(request)
    try:
        storage_type = values["storage_type"]
        if storage_type not in STORAGE_TYPES:
            raise _invalid("storage_type")
        host = None
        if storage_type == "qcow2":
            host_id = values["host"]
            host = (request.dbsession.get(Resource, int(host_id)) if host_id.isdigit()
                    else None)
            if host is None or host.virtualization_type.name != KVM_TYPE:
                raise _invalid("host")
        capacity_mb = _whole(values["capacity_mb"], "capacity_mb")
        port = _optional_port(values["ssh_port"])
        user = _word(values["ssh_user"], "ssh_user")
        lvm_values = None
        if storage_type == "lvm-storage":
            from plugins.lvm.settings import check_settings

            # checked before anything is written
            lvm_values = check_settings(volume_group=values["volume_group"],
                                        clone=values["clone"] or "snapshot",
                                        export=values["export"] or "nfs",
                                        server=values["server"])
        storage = request.find_service(DatacenterService).add_storage(
            values["name"], storage_type=storage_type, actor=actor, capacity_mb=capacity_mb,
            resource=host)
        if values["ssh_host"] or port or user:
            request.find_service(CommandService).set_ssh_target(
                storage, actor=actor, host=values["ssh_host"] or None, port=port, user=user)
        if lvm_values is not None:
            from plugins.lvm.settings import configure_storage

            configure_storage(request, storage, actor=actor, **lvm_values)
    except QrmError as error:
        return _list_page(request, storage={
            "values": values, "errors": _field_error(request, error, STORAGE_FIELDS)})
    flash(request, translate(request, _("Storage host ${name} added."), name=values["name"]))
    return HTTPSeeOther(location=request.route_path("admin.hosts.storage", id=storage.id))


# -- one host -------------------------------------------------------------------------------
@view_config(route_name="admin.hosts.kvm", request_method="GET",
             renderer=template("kvm_host"), permission=Permissions.ADMIN_VIEW)
def kvm_host_detail(request: Any) -> dict[str, Any]:
    resource, row = _kvm_host(request)
    engine_vms = request.find_service(DatacenterService).vms_on(resource)
    live = {"vms": None, "capacity": None, "error": None}
    if row is not None:
        from plugins.kvm.drivers import KvmDriver
        from plugins.kvm.settings import host_values

        ref = HostRef(id=resource.id, name=resource.label, mac=resource.mac, ip=resource.ip,
                      settings=host_values(row))
        driver = KvmDriver(request)
        try:
            live["capacity"] = driver.capacity(ref)
            live["vms"] = driver.list_vms(ref)
        except QrmError as error:
            live["error"] = error_text(request, error)
    endpoint = _endpoint(request, resource, row)
    return {"resource": resource, "row": row, "engine_vms": engine_vms, "live": live,
            "vm_cpus": sum(vm.cpus for vm in engine_vms),
            "vm_memory_mb": sum(vm.memory_mb for vm in engine_vms),
            "endpoint": endpoint, "key": _key_state(request, endpoint), "now": utcnow(),
            "events": request.find_service(EventService).recent(
                limit=10, object_type="resource", object_id=resource.id)}


@view_config(route_name="admin.hosts.storage", request_method="GET",
             renderer=template("storage_host"), permission=Permissions.ADMIN_VIEW)
def storage_host_detail(request: Any) -> dict[str, Any]:
    storage = _storage(request)
    volumes, volume_error, unreachable = None, None, False
    try:
        volumes = _list_volumes(request, storage)
    except QrmError as error:
        volume_error = error_text(request, error)
        unreachable = isinstance(error, HostUnreachable | SshUnreachable)
    images = list(request.dbsession.scalars(
        select(Image).where(Image.storage_id == storage.id).order_by(Image.name)))
    endpoint = _endpoint(request, storage)
    return {"storage": storage, "lvm": _lvm_row(request, storage), "volumes": volumes,
            "volume_error": volume_error, "unreachable": unreachable,
            "golden": [image for image in images if image.is_master],
            "clones": [image for image in images if not image.is_master],
            "endpoint": endpoint, "key": _key_state(request, endpoint),
            "events": request.find_service(EventService).recent(
                limit=10, object_type="storage", object_id=storage.id)}


class _RequestHostKeys:
    """Pinned host keys read (and, under ``accept-new``, pinned) in the page's own
    transaction: the drivers' stores open transactions of their own, which on SQLite would
    wait for this one's lock."""

    def __init__(self, request: Any) -> None:
        self.commands = request.find_service(CommandService)

    def pinned(self, host: str, port: int) -> tuple[str, str] | None:
        row = self.commands.pinned_host_key(host, port)
        return (row.key_type, row.key_base64) if row is not None else None

    def pin(self, host: str, port: int, key_type: str, key_base64: str) -> tuple[str, str]:
        pinned = self.pinned(host, port)
        if pinned is not None:
            return pinned
        self.commands.db.add(SshHostKey(host=host, port=port, key_type=key_type,
                                        key_base64=key_base64))
        self.commands.db.flush()
        return key_type, key_base64

    def refused(self, target: Any, offered: tuple[str, str], pinned: tuple[str, str]) -> None:
        pass


def _list_volumes(request: Any, storage: Storage) -> list[Any]:
    """The driver's ``list_volumes``, its settings (the plugin's rows, the SSH target) and
    pinned host keys read in the page's transaction, over a pool of the page's own."""
    request.find_service(PluginService).storage_driver(storage.storage_type)  # started?
    pool = SshPool(_RequestHostKeys(request))
    try:
        ref = storage_ref(storage)
        if storage.storage_type == "qcow2":
            from plugins.kvm.qcow2 import Qcow2StorageDriver
            from plugins.kvm.settings import _storage_values

            ref = dataclasses.replace(ref, settings=_storage_values(request,
                                                                   storage_id=storage.id))
            return Qcow2StorageDriver(request, ssh_pool=pool).list_volumes(ref)
        from plugins.lvm.driver import LvmStorageDriver
        from plugins.lvm.settings import row_values

        row = _lvm_row(request, storage)
        settings: dict[str, Any] = row_values(row) if row is not None else {}
        try:
            target = ssh_target(request.registry.settings, storage)
            settings.update(ssh_host=target.host, ssh_port=target.port, ssh_user=target.user,
                            ssh_key=target.key_file)
        except ValueError:
            pass  # the ini settings may name one; else the driver says what is missing
        return LvmStorageDriver(request, pool=pool).list_volumes(
            dataclasses.replace(ref, settings={**settings, **ref.settings}))
    finally:
        pool.close()


# -- host key confirmation --------------------------------------------------------------------
def _machine_for_key(request: Any) -> tuple[str, Any, tuple[str, int] | None, str]:
    """(kind, machine, endpoint, back address) of the host-key route matched."""
    if request.matched_route.name.startswith("admin.hosts.kvm"):
        resource, row = _kvm_host(request)
        return ("kvm", resource, _endpoint(request, resource, row),
                request.route_path("admin.hosts.kvm", id=resource.id))
    storage = _storage(request)
    return ("storage", storage, _endpoint(request, storage),
            request.route_path("admin.hosts.storage", id=storage.id))


@view_config(route_name="admin.hosts.kvm.hostkey", request_method="GET",
             renderer=template("host_key"), permission=Permissions.ADMIN_MANAGE)
@view_config(route_name="admin.hosts.storage.hostkey", request_method="GET",
             renderer=template("host_key"), permission=Permissions.ADMIN_MANAGE)
def host_key(request: Any) -> dict[str, Any]:
    kind, machine, endpoint, back = _machine_for_key(request)
    offer, problem = None, None
    if endpoint is None:
        problem = translate(request, _("This host has no SSH address: set its SSH host or "
                                       "IP address first."))
    else:
        try:
            offer = request.find_service(CommandService).fetch_host_key(*endpoint)
        except QrmError as error:
            problem = error_text(request, error)
            request.response.status = 502
    return {"kind": kind, "machine": machine, "endpoint": endpoint, "offer": offer,
            "problem": problem, "back": back,
            "name": machine.label if kind == "kvm" else machine.name}


@view_config(route_name="admin.hosts.kvm.hostkey", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
@view_config(route_name="admin.hosts.storage.hostkey", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def confirm_host_key(request: Any) -> HTTPSeeOther:
    _kind, _machine, endpoint, back = _machine_for_key(request)
    if endpoint is None:
        raise HTTPNotFound()
    try:
        row = request.find_service(CommandService).confirm_host_key(
            *endpoint, confirmed_fingerprint=request.POST.get("fingerprint", ""),
            actor=acting_admin(request))
    except QrmError as error:
        request.tm.doom()
        flash(request, error_text(request, error), error=True)
        return HTTPSeeOther(location=request.path)
    from engine.commands.ssh import fingerprint

    flash(request, translate(request, _("Host key of ${endpoint} pinned: ${fingerprint}."),
                             endpoint=f"{endpoint[0]}:{endpoint[1]}",
                             fingerprint=fingerprint(row.key_base64)))
    return HTTPSeeOther(location=back)
