"""The simulated machines' agents: what real agents would report every few seconds.

A powered machine whose boot has completed reports ``active`` when it was told to boot an
image and ``idle`` otherwise; it keeps reporting with a plausible load so the health check
(stale after 240 s) sees it alive. Simulated hosts report as long as they are not switched off.
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
from plugins.sim.models import SimHost, SimMachine

ACTOR = Actor("plugin", "sim")
#: the load one busy CPU of a VM puts on its host
HOST_LOAD_PER_VM_CPU = 0.25
#: the hypervisor's own load
HOST_BASE_LOAD = 0.1


def run_monitor(request: Any, *, now: dt.datetime | None = None) -> None:
    """Finish due boots and send every running simulated machine's and host's report."""
    now = now or utcnow()
    reports = request.find_service(ResourceReportService)
    vm_cpus_by_host: dict[int, int] = defaultdict(int)
    for machine, resource in _powered_machines(request.dbsession):
        if machine.host_id is not None:
            vm_cpus_by_host[machine.host_id] += resource.cpus
        if machine.boot_ready_at is not None and machine.boot_ready_at > now:
            continue  # still in firmware and boot loader: no agent runs yet
        _report_machine(reports, machine, resource, now)
    for resource in _running_hosts(request.dbsession):
        _report_host(reports, resource, vm_cpus_by_host[resource.id], now)


def _powered_machines(db: Session) -> list[tuple[SimMachine, Resource]]:
    rows = db.execute(select(SimMachine, Resource)
                      .join(Resource, Resource.id == SimMachine.resource_id)
                      .where(SimMachine.powered.is_(True))
                      .order_by(SimMachine.resource_id))
    return [(machine, resource) for machine, resource in rows]


def _running_hosts(db: Session) -> list[Resource]:
    return list(db.scalars(select(Resource)
                           .join(SimHost, SimHost.resource_id == Resource.id)
                           .where(Resource.state != ResourceState.OFF)
                           .order_by(Resource.id)))


def _report_machine(reports: ResourceReportService, machine: SimMachine, resource: Resource,
                    now: dt.datetime) -> None:
    if machine.boot_ready_at is not None:
        uptime = now - machine.boot_ready_at
        machine.boot_ready_at = None  # the boot is over
    else:
        uptime = _uptime_since_last_report(resource, now)
    # A machine told to boot an image runs it once booted; otherwise it sits in the ramdisk.
    state = ResourceState.ACTIVE if resource.image_id is not None else ResourceState.IDLE
    reports.report(resource, state=state, actor=ACTOR, load=_machine_load(resource, state),
                   uptime_s=int(uptime.total_seconds()))


def _report_host(reports: ResourceReportService, resource: Resource, vm_cpus: int,
                 now: dt.datetime) -> None:
    # A host runs its hypervisor (active) unless an admin keeps it idle for other use.
    state = ResourceState.IDLE if resource.state is ResourceState.IDLE else ResourceState.ACTIVE
    load = HOST_BASE_LOAD + HOST_LOAD_PER_VM_CPU * vm_cpus
    since = resource.created_at or now
    reports.report(resource, state=state, actor=ACTOR, load=_decimal(load),
                   uptime_s=int(max(now - since, dt.timedelta(0)).total_seconds()))


def _uptime_since_last_report(resource: Resource, now: dt.datetime) -> dt.timedelta:
    uptime = dt.timedelta(seconds=resource.uptime_s or 0)
    if resource.last_report_at is not None:
        uptime += max(now - resource.last_report_at, dt.timedelta(0))
    return uptime


def _machine_load(resource: Resource, state: ResourceState) -> Decimal:
    if state is ResourceState.IDLE:
        return _decimal(random.uniform(0.0, 0.1))
    return _decimal(random.uniform(0.2, 0.8) * max(resource.cpus, 1))


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(value, 2)))
