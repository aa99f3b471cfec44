"""End to end: a real qemu VM (TCG) network-boots the boot face's iPXE script into the
project's initramfs (built by ``qrm boot build-initrd`` from the cloud kernel package),
registers as an unknown machine, becomes an idle resource with its MAC, CPUs and memory,
and reports; an admin then assigns it another kernel and reboots it (through the engine's
services), and it boots that kernel.

The guest reaches nothing but the test's server: ``-netdev user,restrict=on`` with the
boot file on ``http://10.0.2.100/`` and a ``guestfwd`` of that address to the real app on
127.0.0.1 (waitress, a committing database). Each boot has a hard deadline; the serial log
and the server's log are attached to every failure."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyramid.router import Router
from waitress.server import create_server

from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from tests.conftest import stop_server

pytestmark = pytest.mark.heavy

MAC = "52:54:00:51:0a:01"
CPUS, MEMORY_MB = 2, 256
KERNEL_CACHE = pathlib.Path(os.environ.get("QRM_KERNEL_CACHE", "/var/cache/qrm-test"))
#: one boot, from qemu's start (or the reboot) to the agent's first report; a TCG boot
#: takes about 10 s on an idle 2-core machine
BOOT_TIMEOUT_S = 120
POLL_S = 0.2
#: the iPXE option ROM qemu gives a virtio-net card (package ipxe-qemu)
IPXE_ROM = pathlib.Path("/usr/lib/ipxe/qemu/efi-virtio.rom")
ADMIN = Actor.admin("root-admin")


def tools() -> tuple[str, pathlib.Path]:
    qemu = shutil.which("qemu-system-x86_64")
    kernels = sorted((KERNEL_CACHE / "kernel" / "boot").glob("vmlinuz-*"))
    missing = [name for name, found in (("qemu-system-x86_64 (qemu-system-x86)", qemu),
                                        ("busybox (busybox-static)", shutil.which("busybox")),
                                        (f"{KERNEL_CACHE}/kernel/boot/vmlinuz-*", kernels))
               if not found]
    if not IPXE_ROM.exists():
        missing.append(f"{IPXE_ROM} (ipxe-qemu)")
    if missing:
        message = (f"missing for the network-boot test: {', '.join(missing)}; run "
                   "scripts/install-system-deps.sh as root")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert qemu is not None
    return qemu, kernels[-1]


class AccessLog:
    """WSGI middleware: one line per request (method, path, status) in the server log."""

    def __init__(self, app: Any, log: logging.Logger) -> None:
        self.app, self.log = app, log

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = environ.get("QUERY_STRING")
        path = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")

        def logged(status: str, headers: Any, *args: Any) -> Any:
            self.log.info("%s %s -> %s", environ.get("REQUEST_METHOD"), path, status)
            return start_response(status, headers, *args)

        return self.app(environ, logged)


@pytest.fixture
def initrd_build(tmp_path: pathlib.Path) -> Iterator[tuple[subprocess.Popen[str], pathlib.Path]]:
    """``qrm boot build-initrd`` from the kernel package's modules, started before the
    database is set up and waited for by ``boot_server``."""
    tools()
    initrd = tmp_path / "initrd.gz"
    build = subprocess.Popen(
        [str(pathlib.Path(sys.executable).with_name("qrm")), "boot", "build-initrd",
         "--modules", str(KERNEL_CACHE / "kernel"), "--out", str(initrd)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield build, initrd
    finally:
        if build.poll() is None:
            build.kill()
        build.communicate(timeout=10)


@pytest.fixture
def boot_server(initrd_build: tuple[subprocess.Popen[str], pathlib.Path],
                committing_registry: Any, tmp_path: pathlib.Path) -> Iterator[dict[str, Any]]:
    """The real app on waitress (127.0.0.1, a free port) over a committing database, with
    kernels ``default`` and ``second``; everything it logs goes to ``server.log``."""
    from engine.boot.kernels import KernelFileService

    qemu, vmlinuz = tools()
    committing_registry.settings.update({
        "qrm.boot.url": "http://10.0.2.100",
        "qrm.boot.kernel_dir": str(tmp_path / "kernels"),
        "qrm.boot.report_interval": "1",
        "qrm.boot.kernel_args": "console=ttyS0 quiet loglevel=3 panic=-1",
    })
    build, initrd = initrd_build
    output, _ = build.communicate(timeout=60)
    assert build.returncode == 0, f"qrm boot build-initrd failed:\n{output}"
    for name in ("default", "second"):
        run_in_transaction(committing_registry, lambda request, name=name: request.find_service(
            KernelFileService).add(name, vmlinuz=vmlinuz, initrd=initrd,
                                   actor=Actor.system("test")))

    server_log = tmp_path / "server.log"
    handler = logging.FileHandler(server_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    access = logging.getLogger("qrm.test.access")
    server = create_server(AccessLog(Router(committing_registry), access), host="127.0.0.1",
                           port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield {"registry": committing_registry, "port": server.effective_port, "qemu": qemu,
               "log": server_log}
    finally:
        stop_server(server)
        thread.join(10)
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def tail(path: pathlib.Path, size: int = 8000) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(none)"
    return text[-size:]


@contextlib.contextmanager
def logs_on_failure(*logs: pathlib.Path) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        attached = "".join(f"\n\n===== {path.name} (end) =====\n{tail(path)}" for path in logs)
        raise AssertionError(f"{error}{attached}") from error


class Machine:
    """The VM: qemu under ``timeout``, its console in ``serial.log``."""

    def __init__(self, qemu: str, port: int, serial: pathlib.Path, *, boots: int) -> None:
        self.serial = serial
        netdev = (f"user,id=n0,restrict=on,bootfile=http://10.0.2.100/boot/ipxe?mac={MAC},"
                  f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {port}")
        with serial.open("wb") as out:
            self.process = subprocess.Popen(
                ["timeout", "-s", "KILL", str(boots * BOOT_TIMEOUT_S + 10), qemu,
                 "-accel", "tcg", "-m", str(MEMORY_MB), "-smp", str(CPUS), "-nographic",
                 "-boot", "n", "-netdev", netdev,
                 "-device", f"virtio-net-pci,netdev=n0,mac={MAC}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        logging.getLogger("qrm.test.access").info("qemu started (pid %s)", self.process.pid)

    def console(self) -> str:
        return self.serial.read_text(errors="replace")

    def wait(self, what: str, check: Callable[[], Any], deadline: float) -> Any:
        """Poll ``check`` until it gives a true value; fail at ``deadline`` or when qemu
        ended."""
        while True:
            value = check()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"qemu ended (exit {self.process.returncode}) before "
                                     f"{what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {BOOT_TIMEOUT_S} s of the boot")
            time.sleep(POLL_S)

    def wait_console(self, marker: str, deadline: float, *, after: str = "") -> None:
        """Wait for ``marker`` on the console (after the first ``after``)."""
        def seen() -> bool:
            console = self.console()
            start = console.find(after)
            return start >= 0 and marker in console[start:]
        self.wait(repr(marker) + " on the console", seen, deadline)

    def stop(self) -> None:
        """Kill ``timeout``, qemu and qemu's ``busybox nc`` children: the process group of
        the ``timeout`` this test started (killing ``timeout`` alone leaves qemu running)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def test_unknown_machine_registers_reports_and_boots_its_assigned_kernel(boot_server,
                                                                         tmp_path):
    from engine.commands.models import Command, CommandState
    from engine.datacenter.models import Resource, ResourceState
    from engine.datacenter.services import DatacenterService

    registry = boot_server["registry"]
    serial = tmp_path / "serial.log"

    def resource_row(request: Any) -> dict[str, Any] | None:
        resource = request.dbsession.query(Resource).filter_by(mac=MAC).one_or_none()
        if resource is None:
            return None
        return {"id": resource.id, "state": resource.state, "cpus": resource.cpus,
                "memory_mb": resource.memory_mb, "nics": resource.nics,
                "kernel": resource.kernel.name if resource.kernel else None,
                "uptime_s": resource.uptime_s, "load": resource.load,
                "last_report_at": resource.last_report_at, "accepted": resource.accepted}

    def reported(since: dt.datetime | None = None) -> Callable[[], dict[str, Any] | None]:
        """The resource once its agent's first report (load and uptime) is in (after
        ``since``) and it is idle."""
        def check() -> dict[str, Any] | None:
            row = run_in_transaction(registry, resource_row)
            if (row is None or row["uptime_s"] is None or row["state"] is not ResourceState.IDLE
                    or (since is not None and row["last_report_at"] <= since)):
                return None
            return row
        return check

    started = time.monotonic()
    machine = Machine(boot_server["qemu"], boot_server["port"], serial, boots=2)
    try:
        with logs_on_failure(serial, boot_server["log"]):
            # 1. the unknown machine boots the registration entry and becomes an idle resource
            row = machine.wait("idle resource with a report", reported(),
                               started + BOOT_TIMEOUT_S)
            first_boot_s = time.monotonic() - started
            machine.wait_console(f"qrm-agent: reported id={row['id']} state=idle",
                                 started + BOOT_TIMEOUT_S)
            assert (row["cpus"], row["memory_mb"], row["nics"]) == (CPUS, MEMORY_MB, 1)
            assert row["accepted"]
            assert row["kernel"] is None
            console = machine.console()
            assert "QRM Cloud: booting kernel default" in console
            assert f"qrm-agent: registered id={row['id']} kernel=default via=registration" \
                in console
            resource_id = row["id"]

            # 2. an admin assigns kernel "second" and reboots the resource
            def assign_and_reboot(request: Any) -> dt.datetime:
                resource = request.dbsession.get(Resource, resource_id)
                datacenter = request.find_service(DatacenterService)
                datacenter.assign_kernel(resource, datacenter.kernel("second"), actor=ADMIN)
                datacenter.reboot(resource, actor=ADMIN)
                return resource.last_report_at

            before_reboot = run_in_transaction(registry, assign_and_reboot)
            rebooted = time.monotonic()

            # 3. the agent takes the reboot with a report, the machine boots "second", the
            # agent there trades the boot script's hand-over code for a new token and reports
            row = machine.wait("report from the second boot", reported(before_reboot),
                               rebooted + BOOT_TIMEOUT_S)
            second_boot_s = time.monotonic() - rebooted
            machine.wait_console(f"qrm-agent: reported id={resource_id} state=idle",
                                 rebooted + BOOT_TIMEOUT_S, after="qrm-agent: command ")
            assert row["id"] == resource_id
            assert row["kernel"] == "second"
            console = machine.console()
            second = console[console.index("qrm-agent: command "):]
            assert "QRM Cloud: booting kernel second" in second
            assert f"qrm-agent: registered id={resource_id} kernel=second via=handover" in second
            assert f"qrm-agent: reported id={resource_id} state=idle" in second
            served = tail(boot_server["log"], 10 ** 6)
            for file in ("vmlinuz", "initrd"):
                assert f"GET /boot/kernels/second/{file} -> 200" in served

            def reboot_command(request: Any) -> tuple[str, CommandState, int | None]:
                command = request.dbsession.query(Command).filter_by(
                    resource_id=resource_id).one()
                return command.argv[0], command.state, command.exit_code

            assert run_in_transaction(registry, reboot_command) == (
                "reboot", CommandState.DONE, 0)
            print(f"first boot to report {first_boot_s:.1f} s, reboot to report "
                  f"{second_boot_s:.1f} s")
    finally:
        machine.stop()
