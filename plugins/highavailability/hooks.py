"""The ``highavailability`` plugin's hook implementations (see ``engine.plugins.hookspecs``).

Settings (the application's ini file):

* ``qrm.highavailability.fallback_types``: virtualization types an appliance may fail over to
  after its own, in order, comma separated (``sim-vm``: a physical appliance may go to a
  simulated VM); empty (the default): its own type only;
* ``qrm.highavailability.create_vms``: create a VM when no idle one fits (default true);
* ``qrm.highavailability.hold_down``: seconds after a fail-over during which the appliance is
  not failed over again, and machines that failed are not used as targets (default 600): a
  flapping machine does not bounce its appliance back and forth.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from engine.datacenter.models import (
    Appliance,
    ApplianceState,
    FailOverStep,
    Resource,
    ResourceState,
)
from engine.datacenter.services import AppliancesService
from engine.db import utcnow
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.plugins.hookspecs import hookimpl
from engine.security import Actor

PLUGIN_NAME = "highavailability"
ACTOR = Actor("plugin", PLUGIN_NAME)
SOURCE = f"plugin:{PLUGIN_NAME}"
PREFIX = "qrm.highavailability."
DEFAULT_HOLD_DOWN = dt.timedelta(seconds=600)


def settings_of(request: Any) -> dict[str, Any]:
    """The plugin's settings, with their defaults."""
    settings = request.registry.settings or {}
    types = [name.strip() for name in
             str(settings.get(PREFIX + "fallback_types", "") or "").replace(" ", ",").split(",")
             if name.strip()]
    create_vms = str(settings.get(PREFIX + "create_vms", "true")).strip().lower() not in (
        "false", "0", "no", "off")
    hold_down = settings.get(PREFIX + "hold_down")
    return {"fallback_types": types, "create_vms": create_vms,
            "hold_down": (dt.timedelta(seconds=int(hold_down)) if hold_down not in (None, "")
                          else DEFAULT_HOLD_DOWN)}


@hookimpl
def qrm_plugin_info() -> dict[str, str]:
    return {
        "name": PLUGIN_NAME,
        "type": "management",
        "description": "High availability: an appliance whose machine fails is fenced and "
                       "started on an idle machine or a new VM (N-to-1 standby)",
    }


@hookimpl
def qrm_resource_failed(request: Any, resource: Any) -> None:
    """A resource stopped reporting: fail over the highly available appliance on it."""
    appliance = request.dbsession.scalar(select(Appliance).where(
        Appliance.resource_id == resource.id))
    if appliance is None:
        return  # an idle machine: nothing runs there
    consider(request, appliance, reason=f"resource {resource.id} stopped reporting",
             report=True)


@hookimpl
def qrm_monitor(request: Any) -> None:
    """Every few seconds: a highly available appliance whose machine (or its host) is in
    error, or whose VM vanished, and that is not being failed over, is failed over (also
    once its hold-down is over)."""
    rows = request.dbsession.execute(
        select(Appliance, Resource).join(Resource, Appliance.resource_id == Resource.id)
        .where(Appliance.ha.is_(True),
               Appliance.state.not_in([ApplianceState.STOPPED, ApplianceState.STOPPING])))
    for appliance, resource in rows:
        reason = failure_of(appliance, resource)
        if reason:
            consider(request, appliance, reason=reason, report=False)


def failure_of(appliance: Appliance, resource: Resource) -> str | None:
    if resource.state is ResourceState.ERROR:
        return f"resource {resource.id} is in error"
    if resource.host is not None and resource.host.state in (ResourceState.ERROR,
                                                             ResourceState.OFF):
        return f"host {resource.host.id} of resource {resource.id} failed"
    if resource.missing_since is not None:
        return f"resource {resource.id} vanished from its host"
    if appliance.state is ApplianceState.ERROR:
        return f"appliance {appliance.name} is in error"
    return None


def consider(request: Any, appliance: Appliance, *, reason: str, report: bool) -> Any:
    """Fail ``appliance`` over unless it is not highly available, is being failed over, or
    is held down; ``report``: say why not in an event (once per failure)."""
    events = request.find_service(EventService)
    if not appliance.ha:
        if report:
            events.log(source=SOURCE, name="ha.not-handled", actor=ACTOR, obj=appliance,
                       level=EventLevel.INFO,
                       message=f"appliance {appliance.name} is not highly available: not "
                       f"failing it over ({reason})")
        return None
    if appliance.state in (ApplianceState.STOPPED, ApplianceState.STOPPING):
        return None
    appliances = request.find_service(AppliancesService)
    fail_overs = appliances.fail_overs
    if fail_overs.open_for(appliance) is not None:
        return None
    settings = settings_of(request)
    hold_down = settings["hold_down"]
    last = fail_overs.last_for(appliance)
    if last is not None and last.step is FailOverStep.DONE:
        until = (last.finished_at or last.created_at) + hold_down
        if utcnow() < until:
            if report:
                events.log(source=SOURCE, name="ha.held-down", actor=ACTOR, obj=appliance,
                           level=EventLevel.WARNING,
                           message=f"appliance {appliance.name}: {reason}, but it failed over "
                           f"less than {int(hold_down.total_seconds())} s ago; it is held "
                           f"down until {until:%Y-%m-%d %H:%M:%S} UTC")
            return None
    fo = appliances.fail_over(appliance, reason, actor=ACTOR,
                              types=settings["fallback_types"],
                              create_vms=settings["create_vms"],
                              avoid_failed_within=hold_down)
    events.log(source=SOURCE, name="ha.failover", actor=ACTOR, obj=appliance,
               level=EventLevel.WARNING,
               message=f"appliance {appliance.name}: {reason}; failing it over "
               f"(fail-over {fo.id})")
    return fo
