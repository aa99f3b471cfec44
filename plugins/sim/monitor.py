"""The simulated machines' agents: what real agents would report every few seconds.

The simulated datacenter (``plugins.sim.store``) says which machines are powered and booted;
each one that the engine knows (a ``Resource`` with its MAC) reports through
``ResourceReportService`` like a real agent: ``active`` when it was told to boot an image,
``idle`` otherwise, with a plausible load and its uptime since the boot completed, so the
health check (stale after 240 s) sees it alive. Simulated hosts report as long as they are
switched on and the engine has not switched them off. Machines without a resource row are
someone else's: they are skipped. The engine's database is only read here, and written only
by the report service.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.datacenter.models import Resource, ResourceState
from engine.db import utcnow
from engine.monitoring.services import ResourceReportService
from engine.security import Actor
from plugins.sim import store as state
from plugins.sim.store import HostRecord, MachineRecord, open_store

ACTOR = Actor("plugin", "sim")
#: the load one busy CPU of a VM puts on its host
HOST_LOAD_PER_VM_CPU = 0.25
#: the hypervisor's own load
HOST_BASE_LOAD = 0.1
#: a simulated agent reports a change at once and otherwise this often, like a real one
#: (the health check calls a machine silent after 240 s); a monitor run on every kick thus
#: costs what changed, not what exists
REPORT_EVERY = dt.timedelta(seconds=30)


def _due(resource: Resource, status: ResourceState, now: dt.datetime) -> bool:
    return (resource.state is not status or resource.last_report_at is None
            or now - resource.last_report_at >= REPORT_EVERY)


def run_monitor(request: Any, *, now: dt.datetime | None = None) -> None:
    """Send the report of every booted simulated machine and every running simulated host."""
    now = now or utcnow()
    with open_store(request.registry.settings).read() as db:
        machines = state.physical_where(db, "powered = 1") + state.vms_where(db, "powered = 1")
        hosts = [host for host in state.all_hosts(db) if host.powered]
    resources = _resources_by_mac(request.dbsession, machines, hosts)
    reports = request.find_service(ResourceReportService)
    vm_cpus_by_host: dict[str, int] = defaultdict(int)
    for machine in machines:
        if machine.host_mac is not None:
            vm_cpus_by_host[machine.host_mac] += machine.cpus
        resource = next((resources[mac] for mac in machine.macs if mac in resources), None)
        if resource is not None and machine.booted(now.timestamp()):
            status = ResourceState.ACTIVE if resource.image_id is not None else ResourceState.IDLE
            if _due(resource, status, now):
                _report_machine(reports, machine, resource, now)
    for host in hosts:
        resource = resources.get(host.mac)
        if resource is not None and resource.state is not ResourceState.OFF:
            status = (ResourceState.IDLE if resource.state is ResourceState.IDLE
                      else ResourceState.ACTIVE)
            if _due(resource, status, now):
                _report_host(reports, resource, vm_cpus_by_host[host.mac], now)


def _resources_by_mac(db: Session, machines: list[MachineRecord],
                      hosts: list[HostRecord]) -> dict[str, Resource]:
    macs = {mac for machine in machines for mac in machine.macs} | {host.mac for host in hosts}
    if not macs:
        return {}
    return {resource.mac: resource
            for resource in db.scalars(select(Resource).where(Resource.mac.in_(sorted(macs))))}


def _report_machine(reports: ResourceReportService, machine: MachineRecord,
                    resource: Resource, now: dt.datetime) -> None:
    assert machine.boot_ready_at is not None  # booted
    uptime = max(now.timestamp() - machine.boot_ready_at, 0.0)
    # A machine told to boot an image runs it once booted; otherwise it sits in the ramdisk.
    status = ResourceState.ACTIVE if resource.image_id is not None else ResourceState.IDLE
    reports.report(resource, state=status, actor=ACTOR, load=_machine_load(resource, status),
                   uptime_s=int(uptime))


def _report_host(reports: ResourceReportService, resource: Resource, vm_cpus: int,
                 now: dt.datetime) -> None:
    # A host runs its hypervisor (active) unless an admin keeps it idle for other use.
    status = ResourceState.IDLE if resource.state is ResourceState.IDLE else ResourceState.ACTIVE
    load = HOST_BASE_LOAD + HOST_LOAD_PER_VM_CPU * vm_cpus
    since = resource.created_at or now
    reports.report(resource, state=status, actor=ACTOR, load=_decimal(load),
                   uptime_s=int(max(now - since, dt.timedelta(0)).total_seconds()))


def _machine_load(resource: Resource, status: ResourceState) -> Decimal:
    if status is ResourceState.IDLE:
        return _decimal(random.uniform(0.0, 0.1))
    return _decimal(random.uniform(0.2, 0.8) * max(resource.cpus, 1))


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(value, 2)))
