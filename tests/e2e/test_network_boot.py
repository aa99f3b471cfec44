"""End to end: a real qemu VM (TCG) network-boots the boot face's iPXE script into the
project's initramfs, registers, reports, and after an admin assigns another kernel and
reboots it, boots that kernel. Two boots, under a hard timeout; the serial log is attached
to a failure."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import threading
import time

import pytest
import waitress

from engine.app import make_config
from engine.db import get_engine, get_session_factory
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from tests.conftest import migrate

pytestmark = pytest.mark.heavy

MAC = "52:54:00:12:34:56"
KERNEL_CACHE = pathlib.Path(os.environ.get("QRM_KERNEL_CACHE", "/var/cache/qrm-test"))
#: the whole test's budget (two TCG boots take about 20 s each on two shared cores)
HARD_TIMEOUT_S = 420


def tools() -> tuple[str, pathlib.Path]:
    qemu = shutil.which("qemu-system-x86_64")
    kernels = sorted((KERNEL_CACHE / "kernel" / "boot").glob("vmlinuz-*"))
    if qemu is None or not kernels or not shutil.which("busybox"):
        message = "qemu-system-x86, busybox-static or the kernel package are missing: run " \
                  "scripts/install-system-deps.sh as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return qemu, kernels[-1]


@pytest.fixture
def boot_server(tmp_path, app_settings):
    """The real app on a real HTTP server on 127.0.0.1, on a database of its own."""
    from engine.boot import initrd
    from engine.boot.kernels import KernelFileService

    qemu, vmlinuz = tools()
    url = f"sqlite:///{tmp_path / 'boot.sqlite'}"
    engine = get_engine({"sqlalchemy.url": url})
    migrate(engine, fresh=False)
    settings = dict(app_settings, **{
        "sqlalchemy.url": url, "qrm.boot.url": "http://10.0.2.100",
        "qrm.boot.kernel_dir": str(tmp_path / "kernels"), "qrm.boot.report_interval": "2",
        "qrm.boot.kernel_args": "console=ttyS0 panic=-1 loglevel=4"})
    config = make_config(settings)
    config.registry["dbsession_factory"] = get_session_factory(engine)
    config.commit()
    initrd_path = tmp_path / "initrd.gz"
    initrd.build(initrd.find_modules_dir(KERNEL_CACHE / "kernel"), initrd_path)
    for name in ("default", "second"):
        run_in_transaction(config.registry, lambda request, name=name: request.find_service(
            KernelFileService).add(name, vmlinuz=vmlinuz, initrd=initrd_path,
                                   actor=Actor.system("test")))
    server = waitress.create_server(config.make_wsgi_app(), host="127.0.0.1", port=0,
                                    threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield {"registry": config.registry, "port": server.effective_port, "qemu": qemu}
    finally:
        server.close()
        thread.join(5)
        engine.dispose()


def wait_for(log: pathlib.Path, marker: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if marker in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"no {marker!r} in the serial log:\n"
                         + log.read_text(errors="replace")[-6000:])


def test_unknown_machine_registers_reports_and_boots_its_assigned_kernel(boot_server,
                                                                         tmp_path):
    from engine.datacenter.models import Resource, ResourceState
    from engine.datacenter.services import DatacenterService

    deadline = time.monotonic() + HARD_TIMEOUT_S - 20
    serial = tmp_path / "serial.log"
    netdev = (f"user,id=n0,restrict=on,bootfile=http://10.0.2.100/boot/ipxe?mac={MAC},"
              f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {boot_server['port']}")
    with serial.open("wb") as out:
        vm = subprocess.Popen(
            ["timeout", str(HARD_TIMEOUT_S), boot_server["qemu"], "-accel", "tcg", "-m", "256",
             "-smp", "2", "-nographic", "-boot", "n", "-netdev", netdev,
             "-device", f"virtio-net-pci,netdev=n0,mac={MAC}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    registry = boot_server["registry"]
    try:
        wait_for(serial, "qrm-agent: registered id=1 kernel=default via=registration", deadline)
        wait_for(serial, "qrm-agent: reported id=1 state=idle", deadline)

        def check_and_reboot(request):
            resource = request.dbsession.query(Resource).filter_by(mac=MAC).one()
            assert (resource.cpus, resource.memory_mb, resource.nics) == (2, 256, 1)
            assert resource.state is ResourceState.IDLE
            assert resource.last_report_at is not None
            datacenter = request.find_service(DatacenterService)
            admin = Actor.admin("root-admin")
            datacenter.assign_kernel(resource, datacenter.kernel("second"), actor=admin)
            datacenter.reboot(resource, actor=admin)

        run_in_transaction(registry, check_and_reboot)
        wait_for(serial, "qrm-agent: command 1: reboot", deadline)
        wait_for(serial, "qrm-agent: registered id=1 kernel=second via=handover", deadline)
        wait_for(serial, "qrm-agent: reported id=1 state=idle", deadline)
        text = serial.read_text(errors="replace")
        assert text.count("qrm-agent: reported id=1") >= 2

        def state(request):
            resource = request.dbsession.query(Resource).filter_by(mac=MAC).one()
            return resource.kernel.name, resource.state

        assert run_in_transaction(registry, state) == ("second", ResourceState.IDLE)
    finally:
        vm.kill()
        vm.wait(10)
