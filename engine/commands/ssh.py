"""Running an argument vector on another machine over SSH (paramiko), host key checked.

The command worker uses it for ``ssh`` commands; plugins that drive a machine over SSH (KVM
hosts, LVM storage hosts) use the same :class:`SshTarget` and :func:`run`::

    target = SshTarget.from_settings(request.registry.settings, host=resource.ip)
    exit_code, stdout, stderr = run(target, ["lvs", "--reportformat", "json"], timeout=30)

The remote command line is ``shlex.join(argv)``: each element of ``argv`` reaches the remote
program as one argument, whatever spaces, quotes or ``;`` it holds. Nothing here ever builds a
shell string out of pieces.

Errors (all :class:`engine.errors.DriverError`):

* :class:`SshUnreachable` — no connection (refused, no route, timed out, the SSH handshake
  broke off): nothing ran; trying again later may work.
* :class:`SshHostKeyRefused` — the host's key is unknown (policy ``reject``) or differs from
  the one on record (any policy): nothing ran.
* :class:`SshAuthenticationFailed` — the host refused our key: nothing ran.
* :class:`SshTimeout` — the command ran out of time; its channel was closed after asking
  sshd to kill it (see :func:`_kill` for what that reaches).
* :class:`SshConnectionLost` — the connection broke while the command ran: it may or may not
  have done its work.
* :class:`SshError` — anything else (an unreadable key file, say).
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from engine.commands.errors import CommandTimeout
from engine.errors import DriverError

log = logging.getLogger(__name__)

#: ``reject``: unknown and changed host keys are refused (the default);
#: ``accept-new``: the first key seen for a host is recorded, a changed one is refused
HOST_KEY_POLICIES = ("reject", "accept-new")

#: connecting (TCP, SSH handshake, authentication: each step) waits at most this long, and
#: never longer than the command's own timeout
CONNECT_TIMEOUT_S = 10.0

#: at most this much of stdout and of stderr is kept (the rest is read and dropped)
MAX_OUTPUT_BYTES = 1024 * 1024

_READ_SIZE = 32768
_POLL_S = 0.05


class SshError(DriverError):
    """Running a command over SSH failed."""


class SshUnreachable(SshError):
    """No SSH connection to the host (refused, no route, timed out, handshake broken off)."""


class SshHostKeyRefused(SshError):
    """The host's key is unknown (policy ``reject``) or not the one on record."""


class SshAuthenticationFailed(SshError):
    """The host did not accept our key."""


class SshConnectionLost(SshError):
    """The connection broke while the command ran (it may have done its work)."""


class SshTimeout(SshError, CommandTimeout):
    """The command ran out of time; it was killed and its channel closed."""


@dataclasses.dataclass(frozen=True)
class SshTarget:
    """Where and as whom to run: a host and the client side of the SSH configuration."""

    host: str
    port: int = 22
    user: str = "root"
    #: the private key to log in with; None: the keys in ``~/.ssh`` of the engine's user
    key_file: str | None = None
    #: the known_hosts file host keys are checked against (and, with accept-new, added to)
    known_hosts: str | None = None
    policy: str = "reject"

    def __post_init__(self) -> None:
        if self.policy not in HOST_KEY_POLICIES:
            raise ValueError(f"unknown host key policy {self.policy!r} "
                             f"(one of {', '.join(HOST_KEY_POLICIES)})")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], host: str) -> SshTarget:
        """The target ``host`` with ``qrm.ssh.port``, ``.user``, ``.key_file``,
        ``.known_hosts`` and ``.host_key_policy`` from the settings."""
        return cls(host=host, port=int(settings.get("qrm.ssh.port") or 22),
                   user=settings.get("qrm.ssh.user") or "root",
                   key_file=settings.get("qrm.ssh.key_file") or None,
                   known_hosts=settings.get("qrm.ssh.known_hosts") or None,
                   policy=(settings.get("qrm.ssh.host_key_policy") or "reject").strip())

    @property
    def name(self) -> str:
        """The host as known_hosts names it: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def run(target: SshTarget, argv: Sequence[str], timeout: float,
        input: bytes | str | None = None) -> tuple[int, bytes, bytes]:
    """Run ``argv`` on ``target`` and return ``(exit_code, stdout, stderr)``.

    ``timeout`` bounds the whole run (connecting included; each step of connecting waits at
    most ``CONNECT_TIMEOUT_S``). ``input`` is sent to the command's stdin, which is closed
    afterwards (at once without ``input``). The exit code is -1 when the command ended
    without one (killed by a signal). Raises the errors listed in the module docstring."""
    if not argv or not all(isinstance(arg, str) for arg in argv):
        raise ValueError("argv must be a non-empty list of strings")
    deadline = time.monotonic() + timeout
    client = connect(target, timeout=min(timeout, CONNECT_TIMEOUT_S))
    try:
        return _execute(client, target, shlex.join(argv), deadline=deadline, timeout=timeout,
                        input=input.encode() if isinstance(input, str) else input)
    finally:
        client.close()


def connect(target: SshTarget, *, timeout: float) -> paramiko.SSHClient:
    """An authenticated client connected to ``target``, its host key checked (the caller
    closes it)."""
    pkey = _load_key(target.key_file)
    client = paramiko.SSHClient()
    if target.known_hosts and os.path.exists(target.known_hosts):
        try:
            client.get_host_keys().load(target.known_hosts)
        except OSError as error:
            raise SshError(f"cannot read {target.known_hosts}: {_describe(error)}") from error
    client.set_missing_host_key_policy(
        _AcceptNewPolicy(target) if target.policy == "accept-new" else _RejectPolicy(target))
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
    return client


def _connect_error(target: SshTarget, error: BaseException) -> BaseException:
    if isinstance(error, SshError):
        return error
    if isinstance(error, paramiko.BadHostKeyException):
        return SshHostKeyRefused(
            f"host key of {target.name} changed: it offers {error.key.get_name()} "
            f"{error.key.fingerprint}, {target.known_hosts} has "
            f"{error.expected_key.get_name()} {error.expected_key.fingerprint}; refused")
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


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        raise SshHostKeyRefused(
            f"unknown host key for {hostname} ({key.get_name()} {key.fingerprint}); refused: "
            f"add it to {self.target.known_hosts or 'a known_hosts file (qrm.ssh.known_hosts)'}"
            " or set qrm.ssh.host_key_policy = accept-new")


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record the first key of a host in the known_hosts file (under a lock, so that two
    workers meeting the same new host agree on one key)."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        path = self.target.known_hosts
        if not path:
            raise SshHostKeyRefused(
                f"unknown host key for {hostname}; refused: accept-new needs a known_hosts "
                "file to record it in (qrm.ssh.known_hosts)")
        try:
            self._record(path, hostname, key)
        except OSError as error:
            raise SshHostKeyRefused(f"new host key of {hostname} not accepted: cannot write "
                                    f"{path}: {_describe(error)}") from error
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("new host key for %s accepted and written to %s: %s %s", hostname, path,
                    key.get_name(), key.fingerprint)


    @staticmethod
    def _record(path: str, hostname: str, key: paramiko.PKey) -> None:
        with open(path, "a+", encoding="ascii") as known_hosts:
            fcntl.flock(known_hosts, fcntl.LOCK_EX)
            recorded = paramiko.HostKeys()
            recorded.load(path)
            keys = recorded.lookup(hostname)
            if keys is not None:  # another worker recorded it meanwhile
                if keys.get(key.get_name()) != key:
                    raise SshHostKeyRefused(
                        f"host key of {hostname} changed: it offers {key.get_name()} "
                        f"{key.fingerprint}, {path} has another; refused")
                return
            known_hosts.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            known_hosts.flush()
            os.fsync(known_hosts.fileno())


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
        channel = transport.open_session(timeout=max(deadline - time.monotonic(), 0.1))
        channel.exec_command(command_line)
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise SshUnreachable(
            f"{target.name}: could not start the command: {_describe(error)}") from error
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
