"""Where a machine is reached over SSH, and the worker process's SSH pool.

A resource and a storage host name their SSH target in the database (``ssh_host``,
``ssh_port``, ``ssh_user``, ``ssh_key``); what they leave unset comes from the resource's IP
address (a storage host: its resource's) and the ``qrm.ssh.*`` settings. ``ssh_key`` is a
key *reference* — a file name under ``qrm.ssh.key_dir``, or an absolute path — never key
material. Host keys are pinned in the ``ssh_host_key`` table (:class:`DbHostKeyStore`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.commands.models import SshHostKey
from engine.commands.ssh import SshPool, SshTarget, fingerprint
from engine.datacenter.models import Resource, Storage
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor

POOL_KEY = "qrm.commands.ssh_pool"
_pool_lock = threading.Lock()


def ssh_target(settings: Mapping[str, Any], machine: Resource | Storage) -> SshTarget:
    """The SSH target of a resource or a storage host; ValueError says why it has none (no
    address, a bad setting or key reference)."""
    host = machine.ssh_host
    if not host:
        if isinstance(machine, Storage):
            host = machine.resource.ip if machine.resource is not None else None
            if not host:
                raise ValueError(f"storage {machine.id} ({machine.name}) has no SSH host "
                                 "and no resource with an IP address")
        else:
            host = machine.ip
            if not host:
                raise ValueError(f"resource {machine.id} ({machine.label}) has no IP address")
    return SshTarget.from_settings(settings, host, port=machine.ssh_port,
                                   user=machine.ssh_user, key=machine.ssh_key)


class DbHostKeyStore:
    """Host keys pinned in the ``ssh_host_key`` table, each look-up and pin in a short
    transaction of its own (the worker holds none while a command runs)."""

    actor = Actor.system("commands")

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def pinned(self, host: str, port: int) -> tuple[str, str] | None:
        return run_in_transaction(self.registry, _pinned, host=host, port=port)

    def pin(self, host: str, port: int, key_type: str, key_base64: str) -> tuple[str, str]:
        try:
            return run_in_transaction(self.registry, _pin, host=host, port=port,
                                      key_type=key_type, key_base64=key_base64)
        except IntegrityError:  # another worker pinned one first: that one counts
            pinned = self.pinned(host, port)
            if pinned is None:
                raise
            return pinned

    def refused(self, target: SshTarget, offered: tuple[str, str],
                pinned: tuple[str, str]) -> None:
        def log(request: Any) -> None:
            request.find_service(EventService).log(
                source="commands", name="ssh.host_key_changed", actor=self.actor,
                level=EventLevel.ERROR, object_type="ssh_host_key",
                message=f"host key of {target.name} changed: it offers {offered[0]} "
                f"{fingerprint(offered[1])}, the pinned key is {pinned[0]} "
                f"{fingerprint(pinned[1])}; connection refused")

        run_in_transaction(self.registry, log)


def _pinned(request: Any, *, host: str, port: int) -> tuple[str, str] | None:
    row = request.dbsession.scalar(
        select(SshHostKey).where(SshHostKey.host == host, SshHostKey.port == port))
    return (row.key_type, row.key_base64) if row is not None else None


def _pin(request: Any, *, host: str, port: int, key_type: str,
         key_base64: str) -> tuple[str, str]:
    existing = _pinned(request, host=host, port=port)
    if existing is not None:
        return existing
    request.dbsession.add(SshHostKey(host=host, port=port, key_type=key_type,
                                     key_base64=key_base64))
    request.dbsession.flush()
    request.find_service(EventService).log(
        source="commands", name="ssh.host_key_pinned", actor=DbHostKeyStore.actor,
        level=EventLevel.NOTICE, object_type="ssh_host_key",
        message=f"host key of {host}:{port} pinned: {key_type} {fingerprint(key_base64)}")
    return key_type, key_base64


def worker_pool(registry: Any) -> SshPool:
    """This process's SSH pool (host keys pinned in the database), made on first use."""
    with _pool_lock:
        pool = registry.get(POOL_KEY)
        if pool is None:
            pool = registry[POOL_KEY] = SshPool(DbHostKeyStore(registry))
        return pool
