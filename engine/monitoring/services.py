"""Resource reports (agents, simulated machines) and the health check."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.datacenter.models import Resource, ResourceState
from engine.datacenter.services import AppliancesService
from engine.db import utcnow
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.plugins.manager import PluginService
from engine.scheduler.kick import kick_after_commit
from engine.security import Actor

#: a resource that has not reported for this long is marked ``error``
#: (setting ``qrm.monitoring.timeout``, seconds)
STALE_AFTER = dt.timedelta(seconds=240)
TIMEOUT_SETTING = "qrm.monitoring.timeout"


def stale_after(settings: Any) -> dt.timedelta:
    """How long a resource may stay silent: ``qrm.monitoring.timeout`` or 240 s."""
    value = settings.get(TIMEOUT_SETTING) if settings else None
    return dt.timedelta(seconds=int(value)) if value else STALE_AFTER
#: states whose resources are expected to report
SUPERVISED = (ResourceState.IDLE, ResourceState.ACTIVE, ResourceState.BOOTING,
              ResourceState.TRANSITION)
REPORTABLE = (ResourceState.IDLE, ResourceState.ACTIVE, ResourceState.BOOTING)


class ResourceStateChanged:
    """Pyramid event: a resource reported a new state (``registry.notify``); the cloud makes
    the requests waiting for it due."""

    def __init__(self, request: Any, resource: Resource, previous: ResourceState) -> None:
        self.request, self.resource, self.previous = request, resource, previous


class ResourceReportService:
    """What a resource says about itself moves the engine on (boot finished, appliance up)."""

    def __init__(self, db: Session, *, appliances: AppliancesService, events: EventService,
                 plugins: PluginService, request: Any) -> None:
        self.db, self.appliances, self.events = db, appliances, events
        self.plugins, self.request = plugins, request

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> ResourceReportService:
        return cls(request.dbsession, appliances=request.find_service(AppliancesService),
                   events=request.find_service(EventService),
                   plugins=request.find_service(PluginService), request=request)

    def report(self, resource: Resource, *, state: ResourceState, actor: Actor,
               load: Decimal | None = None, uptime_s: int | None = None,
               ip: str | None = None) -> Resource:
        """Record a report: ``idle`` (booted the ramdisk), ``active`` (runs its image) or
        ``booting``. Only these fields are written (no mass assignment)."""
        if state not in REPORTABLE:
            raise ValueError(f"a resource cannot report itself {state.value}")
        previous = resource.state
        resource.state = state
        resource.last_report_at = utcnow()
        if load is not None:
            resource.load = load
            resource.record_load(load, resource.last_report_at)
        if uptime_s is not None:
            resource.uptime_s = uptime_s
        if ip:
            resource.ip = ip
        if previous is not state:
            self.events.log(source="monitoring", name=f"resource.{state.value}", actor=actor,
                            obj=resource, level=EventLevel.INFO,
                            message=f"resource {resource.id} is {state.value} "
                            f"(was {previous.value})")
            self.appliances.resource_reported(resource, actor=actor)
            self.request.registry.notify(ResourceStateChanged(self.request, resource, previous))
            kick_after_commit(self.request, "cloud.sweep")
        self.db.flush()
        return resource

    def check_health(self, *, now: dt.datetime | None = None) -> list[Resource]:
        """Mark resources that stopped reporting as ``error`` (once: edge-triggered) and tell
        the plugins (``qrm_resource_failed``)."""
        now = now or utcnow()
        timeout = stale_after(getattr(self.request, "registry", None)
                              and self.request.registry.settings)
        stale = list(self.db.scalars(
            select(Resource).where(Resource.state.in_(SUPERVISED),
                                   Resource.last_report_at < now - timeout)
        ))
        actor = Actor.system("monitoring")
        for resource in stale:
            resource.state = ResourceState.ERROR
            self.events.log(source="monitoring", name="resource.error", actor=actor,
                            obj=resource, level=EventLevel.ERROR,
                            message=f"resource {resource.id} has not reported since "
                            f"{resource.last_report_at:%Y-%m-%d %H:%M:%S} UTC")
            self.plugins.hook.qrm_resource_failed(request=self.request, resource=resource)
        self.db.flush()
        return stale


def health_job(request: Any) -> None:
    """``monitoring.health``: mark stale resources as failed."""
    request.find_service(ResourceReportService).check_health()


def plugins_monitor_job(request: Any) -> None:
    """``plugins.monitor``: every started plugin's periodic work."""
    request.find_service(PluginService).started_hook.qrm_monitor(request=request)
