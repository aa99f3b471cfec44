"""KVM hosts: the ``kvm_host`` row of a host resource (its libvirt URI and settings).

``configure_host`` is what a site (the console, a script, the tests) calls inside its
transaction after adding the resource; a host added without it gets the default row from
``plugins.kvm.hooks.qrm_resource_event``: ``qemu+ssh://<ssh user>@<ssh host or IP>/system``,
or ``qemu:///system`` when the resource names neither (the engine's own machine).
"""

from __future__ import annotations

from typing import Any

from engine.datacenter.models import Resource
from engine.errors import ValidationError
from engine.events.services import EventService
from engine.i18n import _
from engine.security import Actor
from plugins.kvm.models import KvmHost
from plugins.kvm.settings import DOMAIN_TYPES

#: libvirt URI schemes a host may be reached by
URI_SCHEMES = ("qemu", "qemu+ssh", "qemu+libssh", "qemu+libssh2", "qemu+tcp", "qemu+tls",
               "qemu+unix", "test")


def default_uri(resource: Resource, settings: Any = None) -> str:
    """The libvirt URI of a host resource that names none."""
    address = resource.ssh_host or resource.ip
    if not address:
        return "qemu:///system"
    user = resource.ssh_user or (settings or {}).get("qrm.ssh.user") or "root"
    port = f":{resource.ssh_port}" if resource.ssh_port else ""
    return f"qemu+ssh://{user}@{address}{port}/system"


def configure_host(request: Any, resource: Resource, *, actor: Actor, uri: str | None = None,
                   domain_type: str | None = None, interface_xml: str | None = None,
                   image_dir: str | None = None) -> KvmHost:
    """Set the KVM settings of host ``resource`` (what is not given stays, or gets its
    default)."""
    db = request.dbsession
    row = db.get(KvmHost, resource.id)
    if row is None:
        row = KvmHost(resource_id=resource.id, uri=default_uri(resource,
                                                               request.registry.settings),
                      domain_type="kvm")
        db.add(row)
    # the engine's own messages (and their German): the plugin has no catalog of its own
    if uri is not None:
        scheme = uri.partition("://")[0] if "://" in uri else ""
        if scheme not in URI_SCHEMES or len(uri) > 255 or any(c.isspace() for c in uri):
            raise ValidationError(_("${field} must be one of ${choices}", mapping={
                "field": "uri", "choices": ", ".join(f"{s}://…" for s in URI_SCHEMES)}),
                field="uri")
        row.uri = uri
    if domain_type is not None:
        if domain_type not in DOMAIN_TYPES:
            raise ValidationError(_("${field} must be one of ${choices}", mapping={
                "field": "domain_type", "choices": ", ".join(DOMAIN_TYPES)}),
                field="domain_type")
        row.domain_type = domain_type
    if interface_xml is not None:
        row.interface_xml = interface_xml or None
    if image_dir is not None:
        if image_dir and not image_dir.startswith("/"):
            raise ValidationError(_("${setting} is not a file name: ${value}", mapping={
                "setting": "image_dir", "value": repr(image_dir)}), field="image_dir")
        row.image_dir = image_dir.rstrip("/") or None
    db.flush()
    request.find_service(EventService).log(
        source="kvm", name="kvm.host_configured", actor=actor, obj=resource,
        message=f"KVM host {resource.label}: libvirt {row.uri}, domain type {row.domain_type}"
        + (f", qcow2 volumes in {row.image_dir}" if row.image_dir else ""))
    return row


def host_row(request: Any, resource: Resource) -> KvmHost | None:
    return request.dbsession.get(KvmHost, resource.id)


__all__ = ["configure_host", "default_uri", "host_row"]
