"""The remote command queue: services enqueue argv lists; the worker runs them.

A queued command may run more than once (see :mod:`engine.commands.worker`): enqueue only
idempotent commands, ones that leave the target as they found it when run a second time.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import paramiko
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.commands.models import Command, CommandState, SshHostKey
from engine.commands.ssh import CONNECT_TIMEOUT_S, check_key_reference, fingerprint
from engine.datacenter.models import Resource, Storage
from engine.db import utcnow
from engine.errors import DriverError, InvalidState, NotFound, ValidationError
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.i18n import _
from engine.paging import DEFAULT_SIZE, KeysetPager, Page
from engine.security import Actor

#: the console's command queue: newest first
COMMAND_PAGER = KeysetPager(Command.id, descending=True)


@dataclasses.dataclass(frozen=True)
class HostKeyOffer:
    """The key an SSH endpoint offers, and what is pinned for it."""

    host: str
    port: int
    key_type: str
    key_base64: str
    #: the key pinned for the endpoint (``(type, base64)``), or None
    pinned: tuple[str, str] | None = None

    @property
    def fingerprint(self) -> str:
        """``SHA256:…``, as ``ssh-keygen -lf`` shows it."""
        return fingerprint(self.key_base64)

    @property
    def status(self) -> str:
        """``new`` (nothing pinned), ``pinned`` (this key is), ``changed`` (another is)."""
        if self.pinned is None:
            return "new"
        return "pinned" if self.pinned == (self.key_type, self.key_base64) else "changed"

    @property
    def pinned_fingerprint(self) -> str | None:
        return fingerprint(self.pinned[1]) if self.pinned else None


def offered_host_key(host: str, port: int, *,
                     timeout: float = CONNECT_TIMEOUT_S) -> tuple[str, str]:
    """The host key ``host:port`` offers in the SSH handshake (``(type, base64)``); nothing
    is authenticated, nothing runs. DriverError when it cannot be had."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise DriverError(_("cannot reach ${host}:${port}: ${reason}", mapping={
            "host": host, "port": port, "reason": error.strerror or str(error)})) from None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = transport.handshake_timeout = timeout
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return key.get_name(), key.get_base64()
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise DriverError(_("${host}:${port} did not complete the SSH handshake: ${reason}",
                            mapping={"host": host, "port": port,
                                     "reason": str(error) or type(error).__name__})) from None
    finally:
        transport.close()
        sock.close()


class CommandService:
    def __init__(self, db: Session, *, events: EventService) -> None:
        self.db, self.events = db, events

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> CommandService:
        return cls(request.dbsession, events=request.find_service(EventService))

    def enqueue(self, resource: Resource | None, argv: list[str], *, actor: Actor,
                executor: str = "ssh", timeout_s: int = 30,
                storage: Storage | None = None) -> Command:
        """Queue ``argv`` to run on ``resource`` or the storage host ``storage`` (over SSH)
        or locally; never a shell string.

        The command must be idempotent: the worker may run it more than once."""
        if not argv or not all(isinstance(arg, str) for arg in argv):
            raise ValueError("argv must be a non-empty list of strings")
        command = Command(resource_id=resource.id if resource else None,
                          storage_id=storage.id if storage else None, argv=list(argv),
                          executor=executor, timeout_s=timeout_s, actor=actor.label)
        self.db.add(command)
        self.db.flush()
        where = (f"storage {storage.id}" if storage else f"resource {resource.id}" if resource
                 else "the engine")
        self.events.log(source="commands", name="command.queued", actor=actor, obj=command,
                        level=EventLevel.INFO,
                        message=f"command {command.id} queued for {where}: {' '.join(argv)}")
        return command

    def get(self, command_id: int) -> Command:
        command = self.db.get(Command, command_id)
        if command is None:
            raise NotFound(f"no command {command_id}")
        return command

    def list(self, *, state: CommandState | None = None, limit: int = 200) -> list[Command]:
        """The newest commands first (only those in ``state``, if given)."""
        query = select(Command).order_by(Command.id.desc()).limit(limit)
        if state is not None:
            query = query.where(Command.state == state)
        return list(self.db.scalars(query))

    def page(self, *, state: CommandState | None = None, after: str | None = None,
             before: str | None = None, size: int = DEFAULT_SIZE) -> Page:
        """One page of ``list()``: newest first, only those in ``state`` if given."""
        query = select(Command)
        if state is not None:
            query = query.where(Command.state == state)
        return COMMAND_PAGER.page(self.db, query, after=after, before=before, size=size)

    def counts(self) -> dict[CommandState, int]:
        """How many commands are in each state."""
        rows = self.db.execute(select(Command.state, func.count()).group_by(Command.state))
        counts = dict.fromkeys(CommandState, 0)
        for state, count in rows:
            counts[state] = count
        return counts

    def set_ssh_target(self, machine: Resource | Storage, *, actor: Actor,
                       host: str | None = None, port: int | None = None,
                       user: str | None = None, key: str | None = None) -> None:
        """Name the SSH target of a resource or storage host (None: the default: the IP
        address, ``qrm.ssh.port``, ``.user``, ``.key_file``). ``key`` is a key file's name
        under ``qrm.ssh.key_dir`` or an absolute path, never key material."""
        if port is not None and not 0 < int(port) < 65536:
            raise ValidationError(f"SSH port {port} is out of range", field="ssh_port")
        try:
            key = check_key_reference(key)
        except ValueError as error:
            raise ValidationError(str(error), field="ssh_key") from None
        if host is not None and (not host.strip() or len(host) > 255 or " " in host.strip()):
            raise ValidationError(f"{host!r} is not a host name or address", field="ssh_host")
        machine.ssh_host = host.strip() if host else None
        machine.ssh_port = int(port) if port is not None else None
        machine.ssh_user = user or None
        machine.ssh_key = key
        kind = "storage" if isinstance(machine, Storage) else "resource"
        target = f"{machine.ssh_user or '(default user)'}@{machine.ssh_host or '(its IP)'}"
        if machine.ssh_port:
            target += f":{machine.ssh_port}"
        self.events.log(source="commands", name="ssh.target_set", actor=actor, obj=machine,
                        level=EventLevel.NOTICE,
                        message=f"SSH target of {kind} {machine.id}: {target}"
                        + (f", key {key}" if key else ""))

    # -- host keys: the admin confirms the first key of an endpoint ---------------------------
    def pinned_host_key(self, host: str, port: int) -> SshHostKey | None:
        return self.db.scalar(select(SshHostKey).where(SshHostKey.host == host,
                                                       SshHostKey.port == port))

    def fetch_host_key(self, host: str, port: int) -> HostKeyOffer:
        """The key ``host:port`` offers now, with the one pinned for it (if any): what the
        admin is shown before confirming (``confirm_host_key``)."""
        key_type, key_base64 = offered_host_key(host, port)
        row = self.pinned_host_key(host, port)
        return HostKeyOffer(host, port, key_type, key_base64,
                            (row.key_type, row.key_base64) if row is not None else None)

    def confirm_host_key(self, host: str, port: int, *, confirmed_fingerprint: str,
                         actor: Actor) -> SshHostKey:
        """Pin the key ``host:port`` offers, which the admin confirmed by its fingerprint.
        The key is fetched again: if it is not the one shown, or another key is pinned
        already, nothing is pinned (InvalidState). Confirming the pinned key again is
        fine."""
        offer = self.fetch_host_key(host, port)
        if offer.fingerprint != (confirmed_fingerprint or "").strip():
            raise InvalidState(_("${host}:${port} now offers a different key (${offered}) "
                                 "than the one confirmed (${confirmed}): nothing pinned",
                                 mapping={"host": host, "port": port,
                                          "offered": offer.fingerprint,
                                          "confirmed": confirmed_fingerprint}),
                               field="fingerprint")
        row = self.pinned_host_key(host, port)
        if row is not None:
            if offer.status == "pinned":
                return row
            raise InvalidState(_("another key is pinned for ${host}:${port} (${pinned}); it "
                                 "offers ${offered}: nothing pinned",
                                 mapping={"host": host, "port": port,
                                          "pinned": offer.pinned_fingerprint,
                                          "offered": offer.fingerprint}),
                               field="fingerprint")
        row = SshHostKey(host=host, port=port, key_type=offer.key_type,
                         key_base64=offer.key_base64)
        self.db.add(row)
        self.db.flush()
        self.events.log(source="commands", name="ssh.host_key_pinned", actor=actor,
                        level=EventLevel.NOTICE, obj=row,
                        message=f"host key of {host}:{port} confirmed and pinned: "
                        f"{offer.key_type} {offer.fingerprint}")
        return row

    def rerun(self, command_id: int, *, actor: Actor) -> Command:
        """Queue a failed command again, with a fresh set of attempts."""
        command = self.get(command_id)
        if command.state is not CommandState.FAILED:
            raise InvalidState(f"command {command_id} is {command.state.value}, not failed")
        command.state = CommandState.QUEUED
        command.attempts = 0
        command.not_before = utcnow()
        command.finished_at = command.exit_code = command.error = None
        command.claimed_by = command.claimed_until = None
        self.events.log(source="commands", name="command.rerun", actor=actor, obj=command,
                        level=EventLevel.NOTICE, message=f"command {command.id} queued again")
        return command
