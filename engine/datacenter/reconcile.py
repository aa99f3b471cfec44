"""Reconciliation: what the hosts and storages really hold, compared with our rows.

The ``datacenter.reconcile`` job lists the VMs of every hypervisor host and the volumes of
every storage (``list_vms`` / ``list_volumes``), with no database transaction open, and then
compares:

* an object named with the engine's prefix (``qrm-vm-<id>``, ``qrm-img-<id>``) that no row
  knows is an **orphan**: reported in the event log, and removed (a recorded call, like any
  other) when ``qrm.reconcile.remove_orphans`` is true;
* a row whose object is missing has **vanished**: the row is marked (``missing_since``) and
  the appliance using it goes to ``error``;
* a host or storage that does not answer is **skipped**: nothing is concluded about it.

Rows with calls still under way (or finished after the listing began) are left alone, so a
VM being created or removed is never mistaken for a vanished or an orphaned one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from pyramid.settings import asbool
from sqlalchemy import select

from engine.datacenter.calls import CallService
from engine.datacenter.models import (
    Appliance,
    ApplianceState,
    CallState,
    DriverCall,
    Image,
    Resource,
    Storage,
    VirtualizationKind,
    VirtualizationType,
)
from engine.datacenter.refs import host_ref, storage_ref, vm_name
from engine.db import utcnow
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.plugins.drivers import NAME_PREFIX, HostUnreachable
from engine.plugins.manager import PluginService
from engine.plugins.models import PluginState
from engine.security import Actor

log = logging.getLogger(__name__)

ACTOR = Actor.system("reconcile")
REMOVE_ORPHANS_SETTING = "qrm.reconcile.remove_orphans"
VM_PREFIX = f"{NAME_PREFIX}vm-"
VOLUME_PREFIX = f"{NAME_PREFIX}img-"


@dataclasses.dataclass
class Findings:
    """What one reconciliation found (also returned by the job, for tests and the CLI)."""

    orphans: list[str] = dataclasses.field(default_factory=list)
    vanished: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Target:
    kind: str  # "host" or "storage"
    id: int
    label: str
    driver: str
    ref: Any


def _targets(request: Any) -> tuple[list[_Target], tuple[str, ...]]:
    db = request.dbsession
    targets = []
    vm_types = list(db.scalars(select(VirtualizationType).where(
        VirtualizationType.kind == VirtualizationKind.VM,
        VirtualizationType.host_type_id.is_not(None))))
    for vm_type in vm_types:
        for host in db.scalars(select(Resource).where(
                Resource.virtualization_type_id == vm_type.host_type_id).order_by(Resource.id)):
            targets.append(_Target("host", host.id, host.label, vm_type.name, host_ref(host)))
    for storage in db.scalars(select(Storage).order_by(Storage.id)):
        targets.append(_Target("storage", storage.id, storage.name, storage.storage_type,
                               storage_ref(storage)))
    names = tuple(request.find_service(PluginService).names_in(PluginState.STARTED))
    return targets, names


def _list(registry: Any, target: _Target, plugins: tuple[str, ...]) -> list[Any] | None:
    """The target's objects; None if no started plugin serves it. No transaction open."""
    from pyramid.scripting import prepare

    env = prepare(registry=registry)
    try:
        relay = registry["plugins"].relay(plugins)
        if target.kind == "host":
            for drivers in relay.qrm_virtualization_drivers(request=env["request"]):
                for driver in drivers:
                    if driver.vm_type == target.driver:
                        return list(driver.list_vms(target.ref))
            return None
        for drivers in relay.qrm_storage_drivers(request=env["request"]):
            for driver in drivers:
                if driver.storage_type == target.driver:
                    return list(driver.list_volumes(target.ref))
        return None
    finally:
        env["closer"]()


def _busy_keys(request: Any, since: dt.datetime) -> set[str]:
    """Keys of calls under way, or done since the listing began."""
    return set(request.dbsession.scalars(select(DriverCall.key).where(
        (DriverCall.state == CallState.PENDING) | (DriverCall.done_at >= since))))


def _busy(keys: set[str], kind: str, row_id: int) -> bool:
    marker = f":{kind}:{row_id}"
    return any(marker in key and (key.endswith(marker) or f"{marker}:" in key) for key in keys)


def _compare(request: Any, target: _Target, objects: list[Any], since: dt.datetime,
             findings: Findings) -> None:
    busy = _busy_keys(request, since)
    if target.kind == "host":
        _compare_host(request, target, objects, busy, findings)
    else:
        _compare_storage(request, target, objects, busy, findings)


def _compare_host(request: Any, target: _Target, objects: list[Any], busy: set[str],
                  findings: Findings) -> None:
    db = request.dbsession
    rows = {vm_name(vm.id): vm for vm in db.scalars(
        select(Resource).where(Resource.host_id == target.id))}
    present = {info.name for info in objects}
    for name in sorted(present - rows.keys()):
        if not name.startswith(VM_PREFIX) or db.scalar(select(Resource.id).where(
                Resource.id == _suffix_id(name, VM_PREFIX))) is not None:
            continue
        _orphan(request, findings, target, f"VM {name} on host {target.label}",
                name=name, removal=("remove_vm", {"name": name}))
    for name, vm in rows.items():
        _check_present(request, findings, vm, name in present,
                       busy=_busy(busy, "resource", vm.id),
                       what=f"VM {name} (resource {vm.id}) is gone from host {target.label}",
                       appliances=select(Appliance).where(Appliance.resource_id == vm.id))


def _compare_storage(request: Any, target: _Target, objects: list[Any], busy: set[str],
                     findings: Findings) -> None:
    db = request.dbsession
    rows = {image.root_device: image for image in db.scalars(
        select(Image).where(Image.storage_id == target.id, Image.root_device != ""))}
    present = {info.root_device: info for info in objects}
    for root_device in sorted(present.keys() - rows.keys()):
        info = present[root_device]
        if not info.name.startswith(VOLUME_PREFIX):
            continue
        image_id = _suffix_id(info.name, VOLUME_PREFIX)
        if image_id is not None and (db.get(Image, image_id) is not None
                                     or _busy(busy, "image", image_id)):
            continue  # its row exists (its root device is being recorded)
        _orphan(request, findings, target, f"volume {root_device} on storage {target.label}",
                name=info.name, removal=("remove_volume", {"root_device": root_device}))
    for root_device, image in rows.items():
        _check_present(request, findings, image, root_device in present,
                       busy=_busy(busy, "image", image.id),
                       what=f"the volume {root_device} of image {image.name} is gone from "
                       f"storage {target.label}",
                       appliances=select(Appliance).where(Appliance.image_id == image.id))


def _suffix_id(name: str, prefix: str) -> int | None:
    tail = name[len(prefix):]
    return int(tail) if tail.isdigit() else None


def _orphan(request: Any, findings: Findings, target: _Target, what: str, *, name: str,
            removal: tuple[str, dict[str, Any]]) -> None:
    """Report an orphan, and record its removal if the settings say so."""
    findings.orphans.append(what)
    remove = asbool(request.registry.settings.get(REMOVE_ORPHANS_SETTING, False))
    request.find_service(EventService).log(
        source="datacenter", name="reconcile.orphan", actor=ACTOR, level=EventLevel.WARNING,
        object_type="datacenter", message=f"{what} is not known to the engine; "
        + ("it is being removed" if remove else
           f"it is left alone ({REMOVE_ORPHANS_SETTING} is off)"))
    if remove:
        calls = request.find_service(CallService)
        operation, arguments = removal
        with calls.owned_by(None):
            calls.record(f"remove-orphan:{target.kind}:{target.id}:{name}", operation,
                         driver=target.driver, target=target.ref, arguments=arguments,
                         actor=ACTOR)


def _check_present(request: Any, findings: Findings, row: Any, present: bool, *, busy: bool,
                   what: str, appliances: Any) -> None:
    """A VM's or image's row against the listing: found again, or vanished (reported once,
    and not while a call about it is under way)."""
    if present:
        row.missing_since = None
    elif row.missing_since is None and not busy:
        row.missing_since = utcnow()
        _vanished(request, findings, row, what, appliances=appliances)


def _vanished(request: Any, findings: Findings, row: Any, what: str, *,
              appliances: Any) -> None:
    findings.vanished.append(what)
    events = request.find_service(EventService)
    events.log(source="datacenter", name="reconcile.vanished", actor=ACTOR,
               level=EventLevel.ERROR, obj=row, message=what)
    for appliance in request.dbsession.scalars(appliances):
        appliance.state = ApplianceState.ERROR
        events.log(source="datacenter", name="appliance.error", actor=ACTOR, obj=appliance,
                   level=EventLevel.ERROR, message=f"appliance {appliance.name}: {what}")


def reconcile(registry: Any) -> Findings:
    """Compare every host and storage with the rows (module docstring)."""
    from engine.scheduler.runner import run_in_transaction

    findings = Findings()
    since = utcnow()
    targets, plugins = run_in_transaction(registry, _targets)
    for target in targets:
        try:
            objects = _list(registry, target, plugins)
        except HostUnreachable as error:
            findings.skipped.append(f"{target.kind} {target.label}")
            run_in_transaction(registry, lambda request, t=target, e=error: request.find_service(
                EventService).log(source="datacenter", name="reconcile.skipped", actor=ACTOR,
                                  level=EventLevel.WARNING, object_type=t.kind,
                                  object_id=t.id, message=f"{t.kind} {t.label} does not "
                                  f"answer ({e.message}); not reconciled"))
            continue
        if objects is None:
            continue  # no started plugin serves it
        run_in_transaction(registry, _compare, target=target, objects=objects, since=since,
                           findings=findings)
    return findings


def reconcile_job(request: Any) -> Findings:
    """``datacenter.reconcile``: see ``reconcile``."""
    return reconcile(request.registry)


__all__ = ["Findings", "reconcile", "reconcile_job"]
