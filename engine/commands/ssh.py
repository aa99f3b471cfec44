"""Running an argument vector on another machine over SSH (paramiko), host keys pinned.

The command worker uses it for ``ssh`` commands; plugins that drive a machine over SSH (KVM
hosts, LVM storage hosts) use the same :class:`SshTarget` and :class:`SshPool`::

    target = ssh_target(request.registry.settings, resource)   # engine.commands.targets
    exit_code, stdout, stderr = worker_pool(request.registry).run(
        target, ["lvs", "--reportformat", "json"], timeout=30)

A pool keeps **one connection per (host, port, user)** and runs every command to that
endpoint over it (one SSH channel per command), opening it again when it broke. Connecting
is bounded by ``CONNECT_TIMEOUT_S`` per step (TCP, handshake, authentication) and by the
command's timeout, which bounds the whole run.

Host keys are **pinned** in a :class:`HostKeyStore` (the worker's is the ``ssh_host_key``
table): the first connection to an endpoint records its key — if the policy is
``accept-new``, or if a known_hosts file (``qrm.ssh.known_hosts``, optional) vouches for it —
and every later connection must offer exactly that key, whatever the policy.

The remote command line is ``shlex.join(argv)``: each element of ``argv`` reaches the remote
program as one argument, whatever spaces, quotes or ``;`` it holds. Nothing here ever builds a
shell string out of pieces.

Errors (all :class:`engine.errors.DriverError`):

* :class:`SshUnreachable` — no connection (refused, no route, timed out, the SSH handshake
  broke off): nothing ran; trying again later may work.
* :class:`SshHostKeyRefused` — the host's key is unknown (policy ``reject``);
  :class:`SshHostKeyChanged` (a subclass) — it differs from the pinned one (any policy):
  nothing ran.
* :class:`SshAuthenticationFailed` — the host refused our key: nothing ran.
* :class:`SshTimeout` — the command ran out of time; its channel was closed after asking
  sshd to kill it (see :func:`_kill` for what that reaches).
* :class:`SshConnectionLost` — the connection broke while the command ran: it may or may not
  have done its work.
* :class:`SshError` — anything else (an unreadable key file, say).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from engine.commands.errors import CommandTimeout
from engine.errors import DriverError

log = logging.getLogger(__name__)

#: ``reject``: a host whose key is not pinned yet (nor in a known_hosts file) is refused
#: (the default); ``accept-new``: its first key is pinned. A key differing from the pinned
#: one is refused under either policy.
HOST_KEY_POLICIES = ("reject", "accept-new")

#: connecting (TCP, SSH handshake, authentication: each step) waits at most this long, and
#: never longer than the command's own timeout
CONNECT_TIMEOUT_S = 10.0

#: a pooled connection sends a keep-alive this often (so idle NAT/firewalls keep it open)
KEEPALIVE_S = 30

#: at most this much of stdout and of stderr is kept (the rest is read and dropped)
MAX_OUTPUT_BYTES = 1024 * 1024

_READ_SIZE = 32768
_POLL_S = 0.05
#: a key reference that names a file under ``qrm.ssh.key_dir``
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")


class SshError(DriverError):
    """Running a command over SSH failed."""


class SshUnreachable(SshError):
    """No SSH connection to the host (refused, no route, timed out, handshake broken off)."""


class SshHostKeyRefused(SshError):
    """The host's key is unknown (policy ``reject``) or not the one pinned."""


class SshHostKeyChanged(SshHostKeyRefused):
    """The host offers a key other than the one pinned for it (``offered`` and ``pinned``
    are ``(key type, base64)``)."""

    def __init__(self, message: str, *, offered: tuple[str, str],
                 pinned: tuple[str, str]) -> None:
        super().__init__(message)
        self.offered, self.pinned = offered, pinned


class SshAuthenticationFailed(SshError):
    """The host did not accept our key."""


class SshConnectionLost(SshError):
    """The connection broke while the command ran (it may have done its work)."""


class SshTimeout(SshError, CommandTimeout):
    """The command ran out of time; it was killed and its channel closed."""


@dataclasses.dataclass(frozen=True)
class SshTarget:
    """Where and as whom to run: an endpoint and the client side of the SSH configuration."""

    host: str
    port: int = 22
    user: str = "root"
    #: the private key to log in with; None: the keys in ``~/.ssh`` of the engine's user
    key_file: str | None = None
    #: an optional known_hosts file vouching for hosts not pinned yet (never written)
    known_hosts: str | None = None
    policy: str = "reject"

    def __post_init__(self) -> None:
        if self.policy not in HOST_KEY_POLICIES:
            raise ValueError(f"unknown host key policy {self.policy!r} "
                             f"(one of {', '.join(HOST_KEY_POLICIES)})")
        if not self.host:
            raise ValueError("an SSH target needs a host")
        if not 0 < self.port < 65536:
            raise ValueError(f"SSH port {self.port} is out of range")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], host: str, *, port: int | None = None,
                      user: str | None = None, key: str | None = None) -> SshTarget:
        """The target ``host``; ``port``, ``user`` and ``key`` (a key reference, see
        :func:`resolve_key`) where given, else ``qrm.ssh.port``, ``.user``, ``.key_file``;
        ``qrm.ssh.known_hosts`` and ``.host_key_policy`` from the settings."""
        return cls(host=host, port=int(port or settings.get("qrm.ssh.port") or 22),
                   user=user or settings.get("qrm.ssh.user") or "root",
                   key_file=resolve_key(settings, key),
                   known_hosts=settings.get("qrm.ssh.known_hosts") or None,
                   policy=(settings.get("qrm.ssh.host_key_policy") or "reject").strip())

    @property
    def name(self) -> str:
        """The endpoint as known_hosts names it: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def endpoint(self) -> tuple[str, int, str]:
        """What a pool keeps one connection for."""
        return self.host, self.port, self.user


def resolve_key(settings: Mapping[str, Any], reference: str | None) -> str | None:
    """The key file a key reference means: an absolute path as it is; a bare file name under
    ``qrm.ssh.key_dir``; none: ``qrm.ssh.key_file`` (or None, ``~/.ssh``). Raises ValueError
    for a reference that is neither (relative paths, ``..``, key material)."""
    if not reference:
        return settings.get("qrm.ssh.key_file") or None
    if os.path.isabs(reference):
        return os.path.normpath(reference)
    if not _KEY_NAME.fullmatch(reference) or reference.startswith(".."):
        raise ValueError(f"SSH key reference {_shorten(reference)!r} is neither a key file's "
                         "name (under qrm.ssh.key_dir) nor an absolute path")
    key_dir = settings.get("qrm.ssh.key_dir")
    if not key_dir:
        raise ValueError(f"SSH key {reference!r} names a file under qrm.ssh.key_dir, "
                         "which is not set")
    return os.path.join(key_dir, reference)


def check_key_reference(reference: str | None) -> str | None:
    """``reference`` if it can be a key reference (for storing one), else ValueError."""
    if reference is None or reference == "":
        return None
    if os.path.isabs(reference) and "\n" not in reference and len(reference) <= 255:
        return reference
    if _KEY_NAME.fullmatch(reference) and not reference.startswith(".."):
        return reference
    raise ValueError(f"SSH key reference {_shorten(reference)!r} is neither a key file's "
                     "name nor an absolute path (never put key material here)")


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "…"


def fingerprint(key_base64: str) -> str:
    """OpenSSH's fingerprint of a public key blob: ``SHA256:…``."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# -- host keys --------------------------------------------------------------------------------
class HostKeyStore(Protocol):
    """Where pinned host keys live (``(key type, base64)`` per host and port)."""

    def pinned(self, host: str, port: int) -> tuple[str, str] | None:
        """The key pinned for the endpoint, or None."""

    def pin(self, host: str, port: int, key_type: str, key_base64: str) -> tuple[str, str]:
        """Pin the key unless one is pinned already; return the key pinned now."""

    def refused(self, target: SshTarget, offered: tuple[str, str],
                pinned: tuple[str, str]) -> None:
        """Told when a host offered a key other than its pinned one."""


class MemoryHostKeyStore:
    """Pinned host keys in a dict (for one-off runs and tests)."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, int], tuple[str, str]] = {}
        self._lock = threading.Lock()

    def pinned(self, host: str, port: int) -> tuple[str, str] | None:
        return self.keys.get((host, port))

    def pin(self, host: str, port: int, key_type: str, key_base64: str) -> tuple[str, str]:
        with self._lock:
            return self.keys.setdefault((host, port), (key_type, key_base64))

    def refused(self, target: SshTarget, offered: tuple[str, str],
                pinned: tuple[str, str]) -> None:
        pass


class _PinningPolicy(paramiko.MissingHostKeyPolicy):
    """Every host key is checked here (the client has no host keys of its own): against the
    pinned one, else the known_hosts file, else the policy."""

    def __init__(self, target: SshTarget, store: HostKeyStore) -> None:
        self.target, self.store = target, store

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        target = self.target
        offered = (key.get_name(), key.get_base64())
        pinned = self.store.pinned(target.host, target.port)
        if pinned is None:
            vouched = self._known_hosts_key(offered[0])
            if vouched is not None and vouched != offered:
                raise SshHostKeyChanged(
                    f"host key of {target.name} changed: it offers {offered[0]} "
                    f"{fingerprint(offered[1])}, {target.known_hosts} has {vouched[0]} "
                    f"{fingerprint(vouched[1])}; refused", offered=offered, pinned=vouched)
            if vouched is None and target.policy != "accept-new":
                raise SshHostKeyRefused(
                    f"unknown host key for {target.name} ({offered[0]} "
                    f"{fingerprint(offered[1])}); refused: pin it (qrm.ssh.host_key_policy "
                    "= accept-new for the first contact, or a known_hosts file in "
                    "qrm.ssh.known_hosts)")
            pinned = self.store.pin(target.host, target.port, *offered)
            if pinned == offered:
                log.warning("host key of %s pinned (%s): %s %s", target.name,
                            "known_hosts" if vouched else "first contact", offered[0],
                            fingerprint(offered[1]))
        if pinned != offered:
            self.store.refused(target, offered, pinned)
            raise SshHostKeyChanged(
                f"host key of {target.name} changed: it offers {offered[0]} "
                f"{fingerprint(offered[1])}, the pinned key is {pinned[0]} "
                f"{fingerprint(pinned[1])}; refused", offered=offered, pinned=pinned)

    def _known_hosts_key(self, key_type: str) -> tuple[str, str] | None:
        path = self.target.known_hosts
        if not path or not os.path.exists(path):
            return None
        recorded = paramiko.HostKeys()
        try:
            recorded.load(path)
        except OSError as error:
            raise SshError(f"cannot read {path}: {_describe(error)}") from error
        keys = recorded.lookup(self.target.name)
        if not keys:
            return None
        key = keys.get(key_type) or next(iter(keys.values()))
        return key.get_name(), key.get_base64()


# -- connections ------------------------------------------------------------------------------
@dataclasses.dataclass
class _Connection:
    target: SshTarget
    client: paramiko.SSHClient

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()


class _StaleConnection(Exception):
    """A pooled connection would not open a channel (it broke while idle)."""


class SshPool:
    """One SSH connection per (host, port, user), kept open and shared by the commands to
    that endpoint; safe to use from several threads (paramiko multiplexes channels).

    ``connects`` counts the connections it opened (for tests and the curious)."""

    def __init__(self, host_keys: HostKeyStore | None = None, *,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.host_keys = host_keys if host_keys is not None else MemoryHostKeyStore()
        self.connect_timeout = connect_timeout
        self.connects = 0
        self._connections: dict[tuple[str, int, str], _Connection] = {}
        self._locks: dict[tuple[str, int, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def run(self, target: SshTarget, argv: Sequence[str], timeout: float,
            input: bytes | str | None = None) -> tuple[int, bytes, bytes]:
        """Run ``argv`` on ``target`` and return ``(exit_code, stdout, stderr)``.

        ``timeout`` bounds the whole run (connecting included). ``input`` is sent to the
        command's stdin, which is closed afterwards (at once without ``input``). The exit
        code is -1 when the command ended without one (killed by a signal). Raises the
        errors listed in the module docstring."""
        if not argv or not all(isinstance(arg, str) for arg in argv):
            raise ValueError("argv must be a non-empty list of strings")
        data = input.encode() if isinstance(input, str) else input
        deadline = time.monotonic() + timeout
        while True:
            connection, fresh = self._connection(target, deadline)
            try:
                return _execute(connection.client, target, shlex.join(argv),
                                deadline=deadline, timeout=timeout, input=data)
            except _StaleConnection as error:
                self._drop(connection)
                if fresh or time.monotonic() >= deadline:
                    raise SshUnreachable(f"{target.name}: could not start the command: "
                                         f"{error}") from None
                log.info("SSH connection to %s broke while idle; connecting again",
                         target.name)
            except SshConnectionLost:
                self._drop(connection)
                raise

    def connection(self, target: SshTarget) -> paramiko.SSHClient | None:
        """The open connection to ``target``'s endpoint, if there is one."""
        connection = self._connections.get(target.endpoint)
        return connection.client if connection is not None and connection.alive else None

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.client.close()

    def _connection(self, target: SshTarget, deadline: float) -> tuple[_Connection, bool]:
        """The endpoint's connection, opened if need be; and whether it is new."""
        with self._lock:
            lock = self._locks.setdefault(target.endpoint, threading.Lock())
        with lock:
            connection = self._connections.get(target.endpoint)
            if connection is not None and connection.alive and connection.target == target:
                return connection, False
            if connection is not None:
                self._drop(connection)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SshUnreachable(f"cannot reach {target.name}: no time left to connect")
            client = connect(target, timeout=min(remaining, self.connect_timeout),
                             host_keys=self.host_keys)
            self.connects += 1
            connection = _Connection(target, client)
            self._connections[target.endpoint] = connection
            return connection, True

    def _drop(self, connection: _Connection) -> None:
        with self._lock:
            if self._connections.get(connection.target.endpoint) is connection:
                del self._connections[connection.target.endpoint]
        connection.client.close()


def run(target: SshTarget, argv: Sequence[str], timeout: float,
        input: bytes | str | None = None, *,
        host_keys: HostKeyStore | None = None) -> tuple[int, bytes, bytes]:
    """Run ``argv`` once on ``target`` over a connection of its own (see
    :meth:`SshPool.run`); host keys are checked against ``host_keys`` (by default only the
    target's known_hosts file, or accepted with ``accept-new``)."""
    pool = SshPool(host_keys)
    try:
        return pool.run(target, argv, timeout, input=input)
    finally:
        pool.close()


def connect(target: SshTarget, *, timeout: float,
            host_keys: HostKeyStore | None = None) -> paramiko.SSHClient:
    """An authenticated client connected to ``target``, its host key checked against
    ``host_keys`` (the caller closes it)."""
    pkey = _load_key(target.key_file)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(
        _PinningPolicy(target, host_keys if host_keys is not None else MemoryHostKeyStore()))
    try:
        client.connect(target.host, port=target.port, username=target.user, pkey=pkey,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       channel_timeout=timeout, allow_agent=False,
                       look_for_keys=pkey is None)
    except BaseException as error:
        client.close()
        translated = _connect_error(target, error)
        if translated is error:
            raise
        raise translated from error
    client.get_transport().set_keepalive(KEEPALIVE_S)
    return client


def _connect_error(target: SshTarget, error: BaseException) -> BaseException:
    if isinstance(error, SshError):
        return error
    if isinstance(error, paramiko.AuthenticationException):
        return SshAuthenticationFailed(
            f"{target.user}@{target.name} refused our key ({error})")
    if isinstance(error, TimeoutError):
        return SshUnreachable(f"cannot reach {target.name}: timed out connecting")
    if isinstance(error, paramiko.SSHException | OSError | EOFError):
        return SshUnreachable(f"cannot reach {target.name}: {_describe(error)}")
    return error


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def _load_key(key_file: str | None) -> paramiko.PKey | None:
    if key_file is None:
        return None
    try:
        return paramiko.PKey.from_path(key_file)
    except (OSError, paramiko.SSHException, ValueError) as error:
        raise SshError(f"cannot read the SSH key {key_file}: {_describe(error)}") from error


class _Capture:
    """Collects one output stream, keeping at most ``MAX_OUTPUT_BYTES``."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kept = self.dropped = 0

    def add(self, data: bytes) -> None:
        room = MAX_OUTPUT_BYTES - self.kept
        if room > 0:
            self.chunks.append(data[:room])
            self.kept += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))

    @property
    def value(self) -> bytes:
        value = b"".join(self.chunks)
        if self.dropped:
            value += f"\n[{self.dropped} more bytes dropped]\n".encode()
        return value


def _execute(client: paramiko.SSHClient, target: SshTarget, command_line: str, *,
             deadline: float, timeout: float, input: bytes | None) -> tuple[int, bytes, bytes]:
    transport = client.get_transport()
    try:
        if transport is None or not transport.is_active():
            raise _StaleConnection("the connection is closed")
        channel = transport.open_session(timeout=max(deadline - time.monotonic(), 0.1))
        channel.exec_command(command_line)
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise _StaleConnection(_describe(error)) from error
    stdout, stderr = _Capture(), _Capture()
    try:
        _send_input(channel, input, deadline)
        _collect(channel, stdout, stderr, deadline)
    except TimeoutError:
        _kill(channel)
        raise SshTimeout(timeout, stdout=stdout.value, stderr=stderr.value) from None
    if channel.exit_status == -1 and not transport.is_active():
        raise SshConnectionLost(f"connection to {target.name} lost while the command ran; "
                                "it may have done its work")
    return channel.exit_status, stdout.value, stderr.value


def _send_input(channel: paramiko.Channel, data: bytes | None, deadline: float) -> None:
    if data:
        channel.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            channel.sendall(data)
        except TimeoutError:
            raise
        except OSError:  # the command exited without reading it all: its outcome tells
            log.debug("the command did not take all of its input", exc_info=True)
    channel.shutdown_write()


def _collect(channel: paramiko.Channel, stdout: _Capture, stderr: _Capture,
             deadline: float) -> None:
    """Read both streams until the command has exited and both are drained; raise
    TimeoutError at the deadline."""
    stdout_open = True
    while (not channel.exit_status_ready() or channel.recv_ready()
           or channel.recv_stderr_ready()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        wait = min(remaining, _POLL_S)
        if stdout_open:
            channel.settimeout(wait)
            try:
                data = channel.recv(_READ_SIZE)
            except TimeoutError:
                data = None
            if data == b"":
                stdout_open = False
            elif data:
                stdout.add(data)
        else:
            channel.status_event.wait(wait)
        while channel.recv_stderr_ready():
            stderr.add(channel.recv_stderr(_READ_SIZE))


def _kill(channel: paramiko.Channel) -> None:
    """Ask sshd to SIGKILL the remote command's process group, then close the channel.

    A command without a terminal does not die when its channel closes; it ends when it next
    writes (SIGPIPE) or by itself. So the RFC 4254 ``signal`` request goes first: OpenSSH's
    sshd honours it for ordinary users (it kills the session's process group) but refuses it
    for root logins ("session signalling requires privilege separation"), where closing is
    all there is. paramiko has no public call for it; the message is built the way Channel
    builds its own requests."""
    try:
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("signal")
        message.add_boolean(False)
        message.add_string("KILL")
        channel.transport._send_user_message(message)
    except Exception:  # the close below still ends our side
        log.debug("could not send the kill signal", exc_info=True)
    channel.close()
