"""Network boot: what a machine boots (iPXE scripts, pxelinux files), and the resource
agent's registration, token hand-over, reports and commands. docs/boot.md describes the
protocol; the boot face (``boot/``) is a thin HTTP adapter over these two services."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.boot import pxelinux, tokens
from engine.boot.config import ACCEPT_AUTO, HANDOVER_TTL_S, BootSettings, boot_settings
from engine.boot.decisions import BootEntry, check_parameter, render_ipxe
from engine.commands.executors import AGENT_EXECUTOR
from engine.commands.models import Command, CommandState
from engine.datacenter.models import (
    Image,
    Kernel,
    Resource,
    ResourceState,
    VirtualizationKind,
    normalize_mac,
)
from engine.datacenter.refs import storage_ref
from engine.datacenter.services import DatacenterService
from engine.db import utcnow
from engine.errors import (
    AuthenticationFailed,
    PermissionDenied,
    QrmError,
    ValidationError,
)
from engine.events.models import Event, EventLevel
from engine.events.services import EventService
from engine.i18n import _
from engine.monitoring.services import ResourceReportService
from engine.plugins.manager import PluginService
from engine.security import Actor
from engine.validation import check_int

log = logging.getLogger(__name__)

BOOT_ACTOR = Actor.system("boot")
#: the virtualization type of machines that register themselves
PHYSICAL_TYPE = "physical"
#: the commands an agent carries out (anything else is answered with exit code 127)
AGENT_COMMANDS = ("reboot", "halt")


#: an agent that took a command and did not report its outcome gets it again after this
AGENT_CLAIM = dt.timedelta(minutes=5)
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")
REPORTED_STATES = {state.value: state for state in (ResourceState.IDLE, ResourceState.ACTIVE,
                                                    ResourceState.BOOTING)}


def agent_actor(resource: Resource) -> Actor:
    """Who a resource's agent is in the event log."""
    return Actor("agent", f"resource-{resource.id}", resource.id)


def parse_mac(value: Any, *, field: str = "mac") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(_("${field} is required", mapping={"field": field}), field=field)
    try:
        return normalize_mac(value)
    except ValueError:
        raise ValidationError(_("not a MAC address: ${mac}", mapping={"mac": repr(value)}),
                              field=field) from None


class RefusalLog:
    """Refused machine requests go to the event log in a transaction of their own, after
    the refused one ended: the refusal rolls everything else back."""

    def __init__(self, session_factory: Any, transaction_manager: Any) -> None:
        self.session_factory, self.tm = session_factory, transaction_manager

    def record(self, name: str, message: str, *, resource_id: int | None = None) -> None:
        log.warning("boot %s: %s", name, message)
        current = self.tm.get()
        current.addAfterCommitHook(lambda _ok: self._write(name, message, resource_id))
        current.addAfterAbortHook(self._write, args=(name, message, resource_id))

    def _write(self, name: str, message: str, resource_id: int | None) -> None:
        session = self.session_factory()
        try:
            session.add(Event(source="boot", name=name, actor=BOOT_ACTOR.label,
                              level=EventLevel.WARNING, message=message,
                              object_type="resource" if resource_id else None,
                              object_id=resource_id))
            session.commit()
        finally:
            session.close()


# -- what a machine boots -----------------------------------------------------------------
class BootService:
    """Boot decisions per MAC: the iPXE script, the pxelinux files, hand-over codes."""

    def __init__(self, db: Session, *, settings: BootSettings, plugins: PluginService,
                 events: EventService) -> None:
        self.db, self.settings, self.plugins, self.events = db, settings, plugins, events

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> BootService:
        return cls(request.dbsession, settings=boot_settings(request),
                   plugins=request.find_service(PluginService),
                   events=request.find_service(EventService))

    def resource_by_mac(self, mac: str) -> Resource | None:
        return self.db.scalar(select(Resource).where(Resource.mac == mac))

    def entry_for(self, resource: Resource | None, *, mac: str | None) -> BootEntry | None:
        """What ``resource`` (None: an unknown machine with ``mac``) boots; None when the
        kernel it should boot is not there."""
        assigned = (resource is not None and resource.accepted and resource.kernel is not None)
        kernel = resource.kernel if assigned else self.db.scalar(
            select(Kernel).where(Kernel.name == self.settings.default_kernel))
        if kernel is None:
            return None
        parameters = [("url", self.settings.url)]
        if mac:
            parameters.append(("mac", mac))
        if resource is not None and resource.agent_token_hash is not None:
            parameters.append(("id", str(resource.id)))
        parameters.append(("kernel", kernel.name))
        if assigned and resource.image is not None:
            parameters.append(("image", str(resource.image.id)))
            parameters += self.root_parameters(resource.image)
        return BootEntry(kernel=kernel.name, parameters=tuple(parameters),
                         kernel_args=self.settings.kernel_args)

    def root_parameters(self, image: Image) -> list[tuple[str, str]]:
        """The root-mount parameters of ``image`` from its storage driver
        (``StorageDriver.boot_parameters``); none: the machine stays in its ramdisk."""
        if image.storage is None:
            return [("root", "none")]
        try:
            driver = self.plugins.storage_driver(image.storage.storage_type)
            supply = getattr(driver, "boot_parameters", None)
            given = supply(storage_ref(image.storage), root_device=image.root_device,
                           root_fs_type=image.root_fs_type,
                           deployment_type=image.deployment_type.name) if supply else {}
            checked = [check_parameter(key, str(value)) for key, value in given.items()]
        except (QrmError, ValueError) as error:
            message = getattr(error, "message", str(error))
            self.events.log(source="boot", name="boot.root_parameters", actor=BOOT_ACTOR,
                            obj=image, level=EventLevel.ERROR,
                            message=f"image {image.name}: no root-mount parameters ({message});"
                            " its machine stays in the ramdisk")
            return [("root", "none")]
        if not any(key == "root" for key, _value in checked):
            checked.insert(0, ("root", "none"))
        return checked

    def ipxe_script(self, mac_text: Any) -> str:
        """The iPXE script for the machine with this MAC. A resource the engine rebooted
        gets a one-time hand-over code in its kernel parameters (once per reboot)."""
        mac = parse_mac(mac_text)
        resource = self.resource_by_mac(mac)
        entry = self.entry_for(resource, mac=mac)
        if entry is not None and resource is not None:
            code = self.issue_handover(resource)
            if code is not None:
                entry = dataclasses.replace(
                    entry, parameters=(*entry.parameters, ("handover", code)))
        return render_ipxe(entry, base_url=self.settings.url,
                           comment=self._describe(resource, mac, entry))

    def _describe(self, resource: Resource | None, mac: str, entry: BootEntry | None) -> str:
        who = f"resource {resource.id} ({mac})" if resource is not None else f"unknown {mac}"
        if entry is None:
            return f"{who}: kernel {self.settings.default_kernel} is missing"
        return f"{who} boots kernel {entry.kernel}"

    def issue_handover(self, resource: Resource) -> str | None:
        """A fresh hand-over code if the engine rebooted ``resource`` and its boot script
        was not fetched since (stored hashed, valid ``HANDOVER_TTL_S``, single use)."""
        now = utcnow()
        window = resource.boot_window_until
        if resource.agent_token_hash is None or window is None or window < now:
            return None
        code = tokens.new_secret()
        resource.handover_hash = tokens.digest(code)
        resource.handover_expires_at = now + dt.timedelta(seconds=HANDOVER_TTL_S)
        resource.boot_window_until = None
        self.events.log(source="boot", name="boot.handover_issued", actor=BOOT_ACTOR,
                        obj=resource, level=EventLevel.INFO,
                        message=f"resource {resource.id}: boot script with a hand-over code "
                        f"(valid {HANDOVER_TTL_S // 60} minutes)")
        self.db.flush()
        return code

    # -- classic PXE ----------------------------------------------------------------------
    def pxelinux_files(self) -> dict[str, str]:
        """Every pxelinux file (name -> text), derived from the rows."""
        files = {"default": pxelinux.render(self.entry_for(None, mac=None),
                                            reason="unknown machines: registration")}
        for resource in self.db.scalars(select(Resource).order_by(Resource.id)):
            entry = self.entry_for(resource, mac=resource.mac)
            files[pxelinux.file_name(resource.mac)] = pxelinux.render(
                entry, reason=f"resource {resource.id}")
        return files

    def write_pxelinux(self) -> dict[str, list[str]] | None:
        """Write the pxelinux tree into ``qrm.boot.tftp_root`` (unset: nothing to do)."""
        if self.settings.tftp_root is None:
            return None
        return pxelinux.write_tree(self.settings.tftp_root, self.pxelinux_files(),
                                   kernel_dir=self.settings.kernel_dir)


def pxelinux_job(request: Any) -> None:
    """``boot.pxelinux``: write the pxelinux files (kicked after every change of a resource
    or kernel; the interval is the safety net)."""
    result = request.find_service(BootService).write_pxelinux()
    if result and (result["written"] or result["removed"]):
        log.info("pxelinux files written %s, removed %s", result["written"], result["removed"])


# -- the resource agent -------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MachineFacts:
    """What a registering machine says about itself."""

    macs: tuple[str, ...]
    cpus: int
    memory_mb: int
    nics: int
    hostname: str = ""

    @classmethod
    def parse(cls, form: Any) -> MachineFacts:
        raw = form.get("macs") or form.get("mac") or ""
        macs = tuple(dict.fromkeys(parse_mac(part, field="mac")
                                   for part in str(raw).replace(" ", ",").split(",") if part))
        if not macs:
            raise ValidationError(_("${field} is required", mapping={"field": "mac"}),
                                  field="mac")
        hostname = str(form.get("hostname") or "").strip()
        if hostname and not HOSTNAME_RE.match(hostname):
            raise ValidationError(_("not a host name: ${name}", mapping={"name": repr(hostname)}),
                                  field="hostname")
        return cls(macs=macs, cpus=check_int(form.get("cpus"), field="cpus", minimum=1),
                   memory_mb=check_int(form.get("memory_mb"), field="memory_mb", minimum=1),
                   nics=check_int(form.get("nics") or len(macs), field="nics", minimum=1),
                   hostname=hostname)


@dataclasses.dataclass(frozen=True)
class Report:
    """One agent report, checked: every field named in the agent's words."""

    state: ResourceState
    load: Decimal
    memory_used_mb: int
    uptime_s: int
    command_id: int | None = None
    exit_code: int | None = None
    output: str = ""

    @classmethod
    def parse(cls, form: Any) -> Report:
        state_text = str(form.get("state") or "idle")
        if state_text not in REPORTED_STATES:
            raise ValidationError(_("state must be one of ${states}",
                                    mapping={"states": ", ".join(REPORTED_STATES)}),
                                  field="state")
        try:
            load = Decimal(str(form.get("load")))
        except (InvalidOperation, ValueError):
            load = Decimal("NaN")
        if not load.is_finite() or not 0 <= load < 1000000:
            raise ValidationError(_("load must be a number (the 1-minute load average)"),
                                  field="load")
        command_id = form.get("command_id")
        return cls(
            state=REPORTED_STATES[state_text], load=load.quantize(Decimal("0.01")),
            memory_used_mb=check_int(form.get("memory_used_mb"), field="memory_used_mb"),
            uptime_s=check_int(form.get("uptime_s"), field="uptime_s"),
            command_id=check_int(command_id, field="command_id") if command_id else None,
            exit_code=(check_int(form.get("exit_code"), field="exit_code", minimum=-255,
                                 maximum=255) if command_id else None),
            output=str(form.get("output") or "")[:4000],
        )


@dataclasses.dataclass(frozen=True)
class Registration:
    resource: Resource
    #: the agent's new token: shown this once, stored hashed
    token: str


class AgentService:
    """The resource agent's side of the engine: registration, the hand-over of a token
    after a reboot, authenticated reports, commands fetched with reports, acceptance."""

    def __init__(self, db: Session, *, settings: BootSettings, datacenter: DatacenterService,
                 reports: ResourceReportService, events: EventService,
                 refusals: RefusalLog) -> None:
        self.db, self.settings, self.datacenter = db, settings, datacenter
        self.reports, self.events, self.refusals = reports, events, refusals

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> AgentService:
        return cls(request.dbsession, settings=boot_settings(request),
                   datacenter=request.find_service(DatacenterService),
                   reports=request.find_service(ResourceReportService),
                   events=request.find_service(EventService),
                   refusals=RefusalLog(request.registry["dbsession_factory"], request.tm))

    def _by_mac(self, mac: str) -> Resource | None:
        return self.db.scalar(select(Resource).where(Resource.mac == mac))

    def _new_token(self, resource: Resource) -> str:
        token = tokens.new_secret()
        resource.agent_token_hash = tokens.digest(token)
        return token

    # -- registration and hand-over -------------------------------------------------------
    def register(self, facts: MachineFacts, *, ip: str | None = None) -> Registration:
        """Register a machine booted into the registration entry: an unknown MAC becomes a
        new resource (idle, or waiting for an admin under ``qrm.boot.accept_new =
        manual``); a resource an admin added without a token is claimed. A MAC that has
        registered already is refused (a replay or a forged MAC): after a reboot the agent
        needs the hand-over code of its boot script."""
        mac = facts.macs[0]
        resource = self._by_mac(mac)
        if resource is not None and resource.agent_token_hash is not None:
            self.refusals.record(
                "boot.registration_refused",
                f"a second registration for MAC {mac} (resource {resource.id}, registered "
                f"already) from {ip or 'an unknown address'} was refused: a replay or a "
                "forged MAC", resource_id=resource.id)
            raise PermissionDenied(_("MAC ${mac} is registered already; a registered "
                                     "machine needs its hand-over code",
                                     mapping={"mac": mac}), field="mac")
        if resource is None:
            resource = self.datacenter.add_resource(
                mac=mac, kind=VirtualizationKind.PHYSICAL, virtualization_type=PHYSICAL_TYPE,
                actor=BOOT_ACTOR, cpus=facts.cpus, memory_mb=facts.memory_mb,
                nics=facts.nics, ip=ip)
            resource.accepted = self.settings.accept_new == ACCEPT_AUTO
        resource.cpus, resource.memory_mb, resource.nics = facts.cpus, facts.memory_mb, facts.nics
        resource.hostname = facts.hostname or resource.hostname
        resource.macs = list(facts.macs)
        token = self._new_token(resource)
        self.events.log(source="boot", name="boot.registered", actor=agent_actor(resource),
                        obj=resource, level=EventLevel.NOTICE,
                        message=f"resource {resource.id} ({mac}, {facts.cpus} CPU, "
                        f"{facts.memory_mb} MB, {facts.nics} NIC) registered"
                        + ("" if resource.accepted else "; waiting for an admin's acceptance"))
        self._came_up(resource, ip=ip)
        return Registration(resource, token)

    def exchange(self, mac_text: Any, code: Any, *, ip: str | None = None) -> Registration:
        """Trade the one-time hand-over code of a boot script for a fresh token."""
        mac = parse_mac(mac_text)
        resource = self._by_mac(mac)
        now = utcnow()
        if (resource is None or not tokens.matches(str(code or ""), resource.handover_hash)
                or resource.handover_expires_at is None or resource.handover_expires_at < now):
            self.refusals.record(
                "boot.handover_refused",
                f"a hand-over for MAC {mac} from {ip or 'an unknown address'} was refused: "
                "no such code, used already or expired",
                resource_id=resource.id if resource is not None else None)
            raise PermissionDenied(_("the hand-over code is not valid (used already or "
                                     "expired)"), field="handover")
        resource.handover_hash = resource.handover_expires_at = None
        token = self._new_token(resource)
        self.events.log(source="boot", name="boot.handover", actor=agent_actor(resource),
                        obj=resource, level=EventLevel.INFO,
                        message=f"resource {resource.id}: hand-over code exchanged for a new "
                        "token")
        self._came_up(resource, ip=ip)
        return Registration(resource, token)

    def handover_code(self, mac_text: Any, boot: BootService) -> str:
        """The hand-over code for a machine booted by pxelinux (whose files carry none):
        issued on the same terms as in an iPXE script."""
        mac = parse_mac(mac_text)
        resource = self._by_mac(mac)
        code = boot.issue_handover(resource) if resource is not None else None
        if code is None:
            self.refusals.record(
                "boot.handover_refused",
                f"a hand-over code for MAC {mac} was asked for outside a reboot by the engine",
                resource_id=resource.id if resource is not None else None)
            raise PermissionDenied(_("no hand-over is due for MAC ${mac}",
                                     mapping={"mac": mac}), field="mac")
        return code

    def _came_up(self, resource: Resource, *, ip: str | None) -> None:
        if ip:
            resource.ip = ip
        resource.last_report_at = utcnow()
        self.db.flush()

    # -- reports ----------------------------------------------------------------------------
    def authenticate(self, resource_id: Any, token: str | None) -> Resource:
        """The resource whose agent holds ``token``; refused (and logged) otherwise."""
        if not token:
            self.refusals.record("boot.report_refused",
                                 f"a report for resource {resource_id!r} without a token")
            raise AuthenticationFailed(_("a report needs the resource's token "
                                         "(Authorization: Bearer …)"), field="token")
        number = check_int(resource_id, field="id", minimum=1)
        resource = self.db.get(Resource, number)
        if resource is None or not tokens.matches(token, resource.agent_token_hash):
            self.refusals.record("boot.report_refused",
                                 f"a report for resource {number} with a wrong token",
                                 resource_id=resource.id if resource is not None else None)
            raise PermissionDenied(_("the token is not valid for resource ${id}",
                                     mapping={"id": number}), field="token")
        return resource

    def report(self, resource: Resource, report: Report, *,
               ip: str | None = None) -> dict[str, str]:
        """Record a report and answer it: the interval until the next one, whether the
        resource is accepted, and the next command for the agent (if any)."""
        actor = agent_actor(resource)
        if report.command_id is not None:
            self._record_outcome(resource, report, actor=actor)
        resource.memory_used_mb = report.memory_used_mb
        if resource.accepted and not self._reboot_pending(resource):
            self.reports.report(resource, state=report.state, actor=actor, load=report.load,
                                uptime_s=report.uptime_s, ip=ip)
        else:
            # waiting for an admin, or a reboot the engine asked for is under way: the
            # figures are kept, the state is not (a late report of the old boot)
            resource.load, resource.uptime_s = report.load, report.uptime_s
            resource.last_report_at = utcnow()
            resource.record_load(report.load, resource.last_report_at)
        reply = {"interval": str(self.settings.report_interval),
                 "accepted": "1" if resource.accepted else "0"}
        command = self._next_command(resource, actor=actor)
        if command is not None:
            reply.update(command_id=str(command.id), command=command.argv[0])
        self.db.flush()
        return reply

    def _reboot_pending(self, resource: Resource) -> bool:
        if resource.boot_window_until is not None and resource.boot_window_until >= utcnow():
            return True
        return self.db.scalar(select(Command.id).where(
            Command.resource_id == resource.id, Command.executor == AGENT_EXECUTOR,
            Command.state.in_((CommandState.QUEUED, CommandState.RUNNING))).limit(1)) is not None

    def _next_command(self, resource: Resource, *, actor: Actor) -> Command | None:
        """Claim the resource's next agent command (one whose claim ran out is given again,
        until its attempts are used up)."""
        now = utcnow()
        command = self.db.scalar(select(Command).where(
            Command.resource_id == resource.id, Command.executor == AGENT_EXECUTOR,
            or_(Command.state == CommandState.QUEUED,
                (Command.state == CommandState.RUNNING) & (Command.claimed_until < now)),
        ).order_by(Command.id).limit(1))
        if command is None:
            return None
        if command.attempts >= command.max_attempts:
            self._finish(command, CommandState.FAILED, error="the agent took it "
                         f"{command.attempts} times and never reported an outcome")
            return None
        command.state = CommandState.RUNNING
        command.attempts += 1
        command.started_at = now
        command.claimed_by = actor.label
        command.claimed_until = now + AGENT_CLAIM
        self.events.log(source="commands", name="command.started", actor=actor, obj=command,
                        level=EventLevel.INFO,
                        message=f"command {command.id} handed to the agent of resource "
                        f"{resource.id} (attempt {command.attempts}): {' '.join(command.argv)}")
        return command

    def _record_outcome(self, resource: Resource, report: Report, *, actor: Actor) -> None:
        command = self.db.get(Command, report.command_id)
        if (command is None or command.resource_id != resource.id
                or command.executor != AGENT_EXECUTOR):
            raise ValidationError(_("no command ${id} for this resource",
                                    mapping={"id": report.command_id}), field="command_id")
        if command.state is not CommandState.RUNNING:
            return  # an outcome reported twice (the agent repeated its report)
        command.exit_code = report.exit_code
        command.output = report.output
        if report.exit_code == 0:
            self._finish(command, CommandState.DONE, error=None)
            self.events.log(source="commands", name="command.done", actor=actor, obj=command,
                            level=EventLevel.INFO, message=f"command {command.id} done (exit 0)")
        else:
            self._finish(command, CommandState.FAILED, error=f"exit {report.exit_code}")

    def _finish(self, command: Command, state: CommandState, *, error: str | None) -> None:
        command.state, command.error = state, error
        command.finished_at = utcnow()
        command.claimed_by = command.claimed_until = None
        if state is CommandState.FAILED:
            event = self.events.log(
                source="commands", name="command.failed", actor=BOOT_ACTOR, obj=command,
                level=EventLevel.ERROR, message=f"command {command.id} failed on resource "
                f"{command.resource_id}: {error}: {' '.join(command.argv)}")
            event.command_id = command.id

    # -- for the console ------------------------------------------------------------------
    def waiting(self) -> list[Resource]:
        """Machines that registered themselves and wait for an admin's acceptance."""
        return list(self.db.scalars(select(Resource).where(Resource.accepted.is_(False))
                                    .order_by(Resource.id)))

    def accept(self, resource: Resource, *, actor: Actor) -> Resource:
        """Accept a machine that waits (``qrm.boot.accept_new = manual``): its next report
        makes it an idle resource."""
        if resource.accepted:
            return resource
        resource.accepted = True
        self.events.log(source="boot", name="resource.accepted", actor=actor, obj=resource,
                        message=f"resource {resource.id} ({resource.mac}) accepted")
        self.db.flush()
        return resource

    def forget_registration(self, resource: Resource, *, actor: Actor) -> Resource:
        """Drop a resource's token and hand-over code: its machine may register again by
        MAC (after it lost its ramdisk outside a reboot by the engine, say)."""
        resource.agent_token_hash = resource.handover_hash = None
        resource.handover_expires_at = resource.boot_window_until = None
        self.events.log(source="boot", name="boot.registration_forgotten", actor=actor,
                        obj=resource, level=EventLevel.WARNING,
                        message=f"resource {resource.id}: its agent's token was revoked; the "
                        "machine may register again")
        self.db.flush()
        return resource

