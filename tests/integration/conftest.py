"""Fixtures for tests against a real OpenSSH sshd: started per test as a foreground child on
127.0.0.1 (a free port), with its own host key and authorized_keys in ``tmp_path``, logging
to a file that is attached to the report of a failed test; stopped by its PID.

Every test here also has a hard timeout (``HARD_TIMEOUT_S``; a module can override the
``hard_timeout_s`` fixture): SIGALRM fails the test, and a faulthandler dump ends the run if
even that does not get through.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import getpass
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HARD_TIMEOUT_S = 60
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class HardTimeout(Exception):
    """A test ran past its hard timeout."""


@pytest.fixture
def hard_timeout_s() -> int:
    return HARD_TIMEOUT_S


@pytest.fixture(autouse=True)
def hard_timeout(hard_timeout_s: int) -> Iterator[None]:
    """Fail the test after ``hard_timeout_s`` (SIGALRM interrupts blocking calls of the main
    thread); if the test is stuck where that cannot reach, dump every thread and exit."""

    def expire(_signum: int, _frame: Any) -> None:
        raise HardTimeout(f"the test ran longer than {hard_timeout_s} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, hard_timeout_s)
    faulthandler.dump_traceback_later(hard_timeout_s + 30, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class KeyPair:
    private_path: pathlib.Path
    #: ``ssh-ed25519 AAAA…``
    public_line: str

    @property
    def key_type(self) -> str:
        return self.public_line.split()[0]

    @property
    def base64(self) -> str:
        return self.public_line.split()[1]


def make_key(path: pathlib.Path) -> KeyPair:
    """A new ed25519 key pair in OpenSSH format (private key mode 0600, as sshd demands)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    path.touch(mode=0o600)
    path.write_bytes(private)
    path.with_suffix(".pub").write_text(public + "\n")
    return KeyPair(path, public)


@dataclasses.dataclass
class Sshd:
    """A running sshd: where it listens, its host key, the client key it accepts."""

    port: int
    user: str
    host_key: KeyPair
    client_key: KeyPair
    log_path: pathlib.Path
    process: subprocess.Popen

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.key_type} {self.host_key.base64}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _require_sshd() -> None:
    if os.path.exists(SSHD):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("sshd is not installed (scripts/install-system-deps.sh installs "
                    "openssh-server)")
    pytest.skip("sshd is not installed (apt-get install openssh-server)")


def _start_sshd(directory: pathlib.Path, host_key: KeyPair, client_key: KeyPair) -> Sshd:
    (directory / "authorized_keys").write_text(client_key.public_line + "\n")
    (directory / "authorized_keys").chmod(0o600)
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key.private_path}
PidFile {directory / 'sshd.pid'}
AuthorizedKeysFile {directory / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# tmp_path sits below world-writable /tmp, which StrictModes would refuse
StrictModes no
UseDNS no
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
""")
    if os.geteuid() == 0:
        # the privilege separation directory sshd insists on when run as root
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log_path = directory / "sshd.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    sshd = Sshd(port, getpass.getuser(), host_key, client_key, log_path, process)
    try:
        _wait_for_banner(sshd)
    except RuntimeError:
        stop_sshd(sshd)
        raise
    return sshd


def _wait_for_banner(sshd: Sshd, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if sshd.process.poll() is not None:
            raise RuntimeError(f"sshd exited with {sshd.process.returncode}:\n{sshd.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", sshd.port), timeout=1) as connection:
                if connection.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.01)  # polling for the listener, bounded by the deadline
    raise RuntimeError(f"sshd did not answer within {within_s} s:\n{sshd.log_text()}")


def stop_sshd(sshd: Sshd) -> None:
    """Stop the sshd we started, by its PID (the session processes exit with it)."""
    if sshd.process.poll() is None:
        os.kill(sshd.process.pid, signal.SIGTERM)
        try:
            sshd.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(sshd.process.pid, signal.SIGKILL)
            sshd.process.wait(timeout=10)


@pytest.fixture
def sshd(tmp_path: pathlib.Path) -> Iterator[Sshd]:
    """A real OpenSSH sshd on 127.0.0.1 that lets the test's client key in as the current
    user (root on CI)."""
    _require_sshd()
    directory = tmp_path / "sshd"
    directory.mkdir()
    host_key = make_key(directory / "host_key")
    client_key = make_key(directory / "client_key")
    for tries_left in reversed(range(3)):  # the free port may be taken before sshd binds it
        try:
            server = _start_sshd(directory, host_key, client_key)
            break
        except RuntimeError:
            if not tries_left:
                raise
    try:
        yield server
    finally:
        stop_sshd(server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Attach sshd's log to the report of a test that failed while one ran."""
    report = yield
    server = getattr(item, "funcargs", {}).get("sshd")
    if report.failed and isinstance(server, Sshd):
        report.sections.append((f"sshd log ({report.when})", server.log_text()))
    return report


@pytest.fixture(autouse=True)
def fresh_ssh_pool(app_config: Any) -> Iterator[None]:
    """Each test ends with the worker's pooled SSH connections closed (the registry
    outlives the test, its sshd does not)."""
    from engine.commands.targets import POOL_KEY

    yield
    pool = app_config.registry.pop(POOL_KEY, None)
    if pool is not None:
        pool.close()
