"""KVM host liveness: each KVM host's libvirt is asked what it has, as an agent would report.

Run by the ``plugins.monitor`` job (hook ``qrm_monitor``) while the plugin is started. For
every KVM host resource (kind host, virtualization type ``kvm``, with its ``kvm_host`` row)
that is not switched off, the host's libvirt (its URI, through the driver's connection pool)
is asked ``getInfo`` and its list of domains — reads only, nothing is ever written to
libvirt:

* it answers: the host reports itself through ``ResourceReportService`` — ``active`` (it
  runs its hypervisor), or ``idle`` when an admin keeps it idle — with its capacity: the
  resource's CPUs and memory become the host's own figures (``getInfo``), and its load is the
  share of those CPUs its running domains take. A host in ``unknown`` (just added) or
  ``error`` (libvirt was silent before) thus becomes usable with its first answer.
* it does not answer (``HostUnreachable``, or any libvirt error): the host is marked
  ``error`` once (edge-triggered, as the health check does), with an event naming the
  error, and the plugins are told (``qrm_resource_failed``), as monitoring does for a
  resource that stopped reporting.

A host that answered less than ``REPORT_EVERY`` ago in the state it should have is not asked
again (the health check calls a resource silent after 240 s).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from engine.datacenter.models import (
    Resource,
    ResourceState,
    VirtualizationKind,
    VirtualizationType,
)
from engine.datacenter.refs import host_ref
from engine.db import utcnow
from engine.errors import DriverError
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.monitoring.services import ResourceReportService
from engine.plugins.drivers import HostRef
from engine.plugins.manager import PluginService
from engine.security import Actor
from plugins.kvm.drivers import POOL, ConnectionPool, KvmDriver
from plugins.kvm.models import KvmHost
from plugins.kvm.settings import host_values

ACTOR = Actor("plugin", "kvm")
HOST_TYPE = "kvm"
REPORT_EVERY = dt.timedelta(seconds=30)


def kvm_hosts(db: Any) -> list[Any]:
    """Every KVM host resource with its ``kvm_host`` row, but those switched off."""
    return list(db.execute(
        select(Resource, KvmHost).join(KvmHost, KvmHost.resource_id == Resource.id)
        .join(VirtualizationType, VirtualizationType.id == Resource.virtualization_type_id)
        .where(Resource.kind == VirtualizationKind.HOST, VirtualizationType.name == HOST_TYPE,
               Resource.state != ResourceState.OFF)
        .order_by(Resource.id)))


def _wanted(resource: Resource) -> ResourceState:
    # a host runs its hypervisor (active) unless an admin keeps it idle for other use
    return ResourceState.IDLE if resource.state is ResourceState.IDLE else ResourceState.ACTIVE


def _due(resource: Resource, now: dt.datetime) -> bool:
    return (resource.state is not _wanted(resource) or resource.last_report_at is None
            or now - resource.last_report_at >= REPORT_EVERY)


def ask(driver: KvmDriver, host: HostRef) -> dict[str, int]:
    """What the host's libvirt says of itself: its CPUs and memory, those its running
    domains take, and how many domains it has. HostUnreachable / DriverError otherwise."""
    with driver.connection(host) as (_libvirt, connection):
        _model, memory_mb, cpus, *_rest = connection.getInfo()
        used_cpus = used_memory = running = 0
        domains = connection.listAllDomains(0)
        for dom in domains:
            if dom.isActive():
                info = dom.info()
                running += 1
                used_cpus += int(info[3])
                used_memory += int(info[1]) // 1024
    return {"cpus": int(cpus), "memory_mb": int(memory_mb), "used_cpus": used_cpus,
            "used_memory_mb": used_memory, "domains": len(domains), "running": running}


def run_monitor(request: Any, *, now: dt.datetime | None = None,
                pool: ConnectionPool | None = None) -> dict[int, str]:
    """Ask every due KVM host; returns ``{resource id: "up" | "down"}`` of those asked."""
    now = now or utcnow()
    driver = KvmDriver(request, pool=pool if pool is not None else POOL)
    reports = request.find_service(ResourceReportService)
    asked: dict[int, str] = {}
    for resource, row in kvm_hosts(request.dbsession):
        if not _due(resource, now):
            continue
        ref = host_ref(resource)
        ref = HostRef(id=ref.id, name=ref.name, mac=ref.mac, ip=ref.ip,
                      settings=host_values(row))
        try:
            figures = ask(driver, ref)
        except DriverError as error:  # HostUnreachable is one
            asked[resource.id] = "down"
            _failed(request, resource, str(error))
            continue
        asked[resource.id] = "up"
        resource.cpus, resource.memory_mb = figures["cpus"], figures["memory_mb"]
        load = Decimal(str(round(figures["used_cpus"] / max(figures["cpus"], 1), 2)))
        reports.report(resource, state=_wanted(resource), actor=ACTOR, load=load)
    request.dbsession.flush()
    return asked


def _failed(request: Any, resource: Resource, reason: str) -> None:
    """Mark the host ``error`` once, log why and tell the plugins (as the health check)."""
    if resource.state is ResourceState.ERROR:
        return
    resource.state = ResourceState.ERROR
    request.find_service(EventService).log(
        source="kvm", name="kvm.host_unreachable", actor=ACTOR, obj=resource,
        level=EventLevel.ERROR,
        message=f"KVM host {resource.label}: libvirt does not answer: {reason}")
    request.dbsession.flush()
    request.find_service(PluginService).hook.qrm_resource_failed(request=request,
                                                                 resource=resource)


__all__ = ["REPORT_EVERY", "ask", "kvm_hosts", "run_monitor"]
