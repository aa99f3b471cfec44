"""End to end on a real libvirtd (QEMU driver, domain type ``qemu``): a cloud request is
submitted and approved through the service layer; the engine places a VM on the KVM host,
which libvirt defines and starts; it network-boots the boot face's iPXE script into the
project's initramfs, registers and reports idle; the engine clones the qcow2 golden image,
makes the clone the VM's disk and reboots it into the appliance; the VM mounts its clone as
root (``qrm.root=local``), the image reports active, the request becomes active and is
charged. Deprovisioning removes the domain and the clone: nothing is left in libvirt or on
disk. The second test dies between libvirt's ``create_vm`` and its record, and converges on
one VM with no orphan.

The VM's NIC is QEMU user networking passed through libvirt (``<qemu:commandline>``): its
boot file is the boot face's script, and ``guestfwd`` relays 10.0.2.100:80 to the test's
server on 127.0.0.1. The boot URL names its port (``http://10.0.2.100:80``)."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from billing.models import LedgerEntry
from engine.cloud.models import CloudRequest, ProductType, RequestStatus
from engine.cloud.provisioning import _advance_one, owner_of
from engine.cloud.services import CloudRequestService, ProductService
from engine.datacenter import calls as outside
from engine.datacenter.models import (
    DriverCall,
    Image,
    Resource,
    ResourceState,
    VirtualizationKind,
)
from engine.datacenter.services import DatacenterService
from engine.db import utcnow
from engine.plugins.manager import PluginService
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from plugins.kvm.drivers import POOL, libvirt_module
from plugins.kvm.hosts import configure_host
from tests.conftest import run_jobs
from tests.integration.test_kvm_libvirtd import URI, Daemons, libvirtd  # noqa: F401

KERNEL_CACHE = pathlib.Path(os.environ.get("QRM_KERNEL_CACHE", "/var/cache/qrm-test"))
ADMIN = Actor.admin("admin")
JOBS = ("plugins.monitor", "cloud.sweep", "datacenter.calls", "billing.charge")
#: each test boots three times (idle, the appliance, idle again) under TCG on shared cores
BUDGET_S = 540

pytestmark = pytest.mark.heavy


@pytest.fixture
def hard_timeout_s() -> int:
    return BUDGET_S + 60


#: the golden image's /sbin/init: the image's own agent, which goes on with the id and token
#: the ramdisk's agent left in /etc/qrm/agent.conf, reports active, and carries out commands
IMAGE_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
. /etc/qrm/agent.conf
echo "qrm-image: root $(awk '$2 == "/" { print $1 }' /proc/mounts) for resource $id"
echo "written by resource $id" > /written-by
sync
report() {
    uptime=$(cut -d . -f 1 /proc/uptime)
    wget -q -O /tmp/reply --header "Authorization: Bearer $token" \
        --post-data "id=$id&state=active&load=0.1&memory_used_mb=16&uptime_s=$uptime$1" \
        "$url/boot/report"
}
said=""
while :; do
    if report; then
        [ -n "$said" ] || { echo "qrm-image: reported id=$id state=active"; said=1; }
        command_id=$(sed -n 's/^command_id=//p' /tmp/reply)
        if [ -n "$command_id" ]; then
            command=$(sed -n 's/^command=//p' /tmp/reply)
            echo "qrm-image: command $command_id: $command"
            report "&command_id=$command_id&exit_code=0"
            sync
            if [ "$command" = halt ]; then poweroff -f; else reboot -f; fi
        fi
    fi
    sleep 2
done
"""


def tools() -> tuple[pathlib.Path, str]:
    kernels = sorted((KERNEL_CACHE / "kernel" / "boot").glob("vmlinuz-*"))
    busybox = shutil.which("busybox")
    missing = [name for name, found in (("the kernel package", kernels),
                                         ("busybox-static", busybox),
                                         ("mkfs.ext4", shutil.which("mkfs.ext4")),
                                         ("qemu-img", shutil.which("qemu-img"))) if not found]
    if missing:
        message = f"{', '.join(missing)} missing: run scripts/install-system-deps.sh as root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return kernels[-1], busybox


def golden_image(directory: pathlib.Path, busybox: str) -> pathlib.Path:
    """A 32 MB ext4 root (busybox and the image's agent) as a qcow2 file."""
    root = directory / "golden-root"
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp"):
        (root / sub).mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    (root / "sbin" / "init").write_text(IMAGE_INIT)
    (root / "sbin" / "init").chmod(0o755)
    (root / "etc" / "qrm-image").write_text("golden\n")
    raw = directory / "golden.raw"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "golden", "-d", str(root), str(raw), "32M"],
                   check=True, timeout=60)
    target = directory / "volumes" / "golden.qcow2"
    target.parent.mkdir()
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                    str(target)], check=True, timeout=60)
    raw.unlink()
    return target


def interface_template(port: int) -> str:
    """QEMU user networking, its boot file the boot face's script, 10.0.2.100:80 relayed
    to the test's server."""
    netdev = ("user,id=n$index,restrict=on,bootfile=http://10.0.2.100:80/boot/ipxe?mac=$mac,"
              f"guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 {port}")
    return ("<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
            f"<qemu:arg value='-netdev'/><qemu:arg value='{netdev}'/>"
            "<qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=n$index,"
            "mac=$mac,bootindex=1,bus=pci.0,addr=0x9'/></qemu:commandline>")


@pytest.fixture
def cloud(live_server: Any, libvirtd: Daemons, tmp_path: pathlib.Path) -> Any:  # noqa: F811
    """The demo cloud on a real HTTP server, plus a KVM host (this machine's libvirtd), its
    qcow2 storage with a golden image, the boot kernel and the products to request them."""
    from engine.boot import initrd
    from engine.boot.kernels import KernelFileService

    vmlinuz, busybox = tools()
    registry = live_server.registry
    settings = registry.settings
    settings.update({
        "qrm.boot.url": "http://10.0.2.100:80", "qrm.boot.kernel_dir": str(tmp_path / "k"),
        "qrm.boot.report_interval": "2", "qrm.boot.default_kernel": "kvm-boot",
        "qrm.boot.kernel_args": "console=ttyS0 panic=-1 loglevel=4",
        "qrm.kvm.serial_dir": str(tmp_path)})
    registry["qrm.kicker"].running = True  # only the test drives the engine
    initrd_path = tmp_path / "initrd.gz"
    initrd.build(initrd.find_modules_dir(KERNEL_CACHE / "kernel"), initrd_path)
    golden = golden_image(tmp_path, busybox)

    def setup(request: Any) -> dict[str, Any]:
        plugins = request.find_service(PluginService)
        plugins.act("kvm", "enable", actor=ADMIN)
        plugins.act("kvm", "start", actor=ADMIN)
        kernel = request.find_service(KernelFileService).add(
            "kvm-boot", vmlinuz=vmlinuz, initrd=initrd_path, actor=ADMIN)
        products = request.find_service(ProductService)
        products.add(ProductType.KERNEL, kernel.name, 0, kernel.name, actor=ADMIN)
        products.add(ProductType.RESOURCE, "kvm-vm", 1, "KVM VM", actor=ADMIN)
        datacenter = request.find_service(DatacenterService)
        host = datacenter.add_resource(mac="52:54:00:ee:00:01", kind=VirtualizationKind.HOST,
                                       virtualization_type="kvm", actor=ADMIN, name="kvm-1",
                                       cpus=2, memory_mb=2048, state=ResourceState.ACTIVE)
        configure_host(request, host, actor=ADMIN, uri=URI, domain_type="qemu",
                       interface_xml=interface_template(live_server.port),
                       image_dir=str(golden.parent))
        storage = datacenter.add_storage("kvm-1-disks", storage_type="qcow2", actor=ADMIN,
                                         resource=host)
        datacenter.add_image("kvm-golden", storage=storage, deployment_type="qcow2",
                             root_device=str(golden), size_mb=32, actor=ADMIN)
        return {"host_id": host.id}

    ids = run_in_transaction(registry, setup)
    before = set(domains())
    try:
        yield type("Cloud", (), {"registry": registry, "golden": golden, "tmp": tmp_path,
                                 "libvirtd": libvirtd, **ids})
    finally:
        registry["qrm.kicker"].running = False
        POOL.drop(URI)
        _remove_domains(set(domains()) - before)  # what a failed test left behind


def _remove_domains(names: set[str]) -> None:
    libvirt = libvirt_module()
    connection = libvirt.open(URI)
    try:
        for name in names:
            dom = connection.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    finally:
        connection.close()


def submit(cloud: Any) -> int:
    def go(request: Any) -> int:
        requests = request.find_service(CloudRequestService)
        cloud_request = requests.submit(
            actor=ADMIN, cloud_user="demo", start=None, stop=utcnow() + dt.timedelta(days=1),
            kernel="kvm-boot",
            image="kvm-golden", memory_mb=512, cpus=1, disk_mb=5000, network_cards=1,
            quantity=1, virtualization="kvm-vm")
        requests.approve(cloud_request.id, actor=ADMIN)
        return cloud_request.id

    return run_in_transaction(cloud.registry, go)


def status(cloud: Any, request_id: int) -> RequestStatus:
    return run_in_transaction(cloud.registry, lambda request: request.dbsession.get(
        CloudRequest, request_id).status)


def drive(cloud: Any, until: Callable[[], bool], what: str, deadline: float) -> None:
    """Run the engine's jobs as the scheduler would until ``until()``."""
    while time.monotonic() < deadline:
        run_jobs(cloud.registry, *JOBS, rounds=1)
        if until():
            return
        time.sleep(1)  # the VM boots meanwhile; bounded by the deadline
    raise AssertionError(f"{what}: not reached in time\n{evidence(cloud)}")


def evidence(cloud: Any) -> str:
    parts = []
    for log in sorted(cloud.tmp.glob("qrm-vm-*.log")):
        parts.append(f"== serial {log.name}\n{log.read_text(errors='replace')[-5000:]}")
    parts.append(cloud.libvirtd.log_text())

    def rows(request: Any) -> str:
        calls = request.dbsession.scalars(select(DriverCall).order_by(DriverCall.id)).all()
        return "\n".join(f"call {c.id} {c.operation} {c.key} {c.state.value} {c.error}"
                         for c in calls)

    parts.append(run_in_transaction(cloud.registry, rows))
    return "\n".join(parts)


def domains() -> list[str]:
    libvirt = libvirt_module()
    connection = libvirt.open(URI)
    try:
        return sorted(dom.name() for dom in connection.listAllDomains(0)
                      if dom.name().startswith("qrm-vm-"))
    finally:
        connection.close()


def volumes(cloud: Any) -> list[str]:
    return sorted(path.name for path in cloud.golden.parent.iterdir())


def charges(cloud: Any, request_id: int) -> int:
    return run_in_transaction(cloud.registry, lambda request: request.dbsession.scalar(
        select(func.count(LedgerEntry.id)).where(LedgerEntry.request_id == request_id,
                                                 LedgerEntry.period_start.is_not(None))))


def provision_and_tear_down(cloud: Any, request_id: int, deadline: float) -> None:
    drive(cloud, lambda: status(cloud, request_id) is RequestStatus.ACTIVE, "active",
          deadline)
    [vm] = domains()
    assert charges(cloud, request_id) == 1

    def clone_of(request: Any) -> tuple[str, str]:
        [clone] = request.dbsession.scalars(select(Image).where(
            Image.is_master.is_(False))).all()
        [resource] = request.dbsession.scalars(select(Resource).where(
            Resource.kind == VirtualizationKind.VM)).all()
        assert f"qrm-vm-{resource.id}" == vm
        return clone.root_device, resource.mac

    clone, mac = run_in_transaction(cloud.registry, clone_of)
    assert volumes(cloud) == sorted(["golden.qcow2", pathlib.Path(clone).name])
    serial = (cloud.tmp / f"{vm}.log").read_text(errors="replace")
    assert "qrm-image: root /dev/vda" in serial
    assert "qrm-image: reported id=" in serial
    assert f"mac={mac}" in " ".join(qemu_args(vm))

    run_in_transaction(cloud.registry, lambda request: request.find_service(
        CloudRequestService).deprovision(request_id, actor=ADMIN))
    drive(cloud, lambda: status(cloud, request_id) is RequestStatus.DONE, "done", deadline)
    assert domains() == []
    assert volumes(cloud) == ["golden.qcow2"]
    assert charges(cloud, request_id) == 1


def qemu_args(name: str) -> list[str]:
    pid = int(pathlib.Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_a_request_provisions_a_libvirt_vm_on_a_qcow2_clone_and_leaves_nothing(cloud):
    deadline = time.monotonic() + BUDGET_S
    try:
        provision_and_tear_down(cloud, submit(cloud), deadline)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{evidence(cloud)}") from None


def test_a_crash_between_the_libvirt_call_and_its_record_converges(cloud, engine_clock):
    deadline = time.monotonic() + BUDGET_S
    request_id = submit(cloud)
    registry = cloud.registry
    call_id = None
    for _ in range(30):  # the steps, one at a time, until the VM is to be created
        run_in_transaction(registry, _advance_one, request_id=request_id)
        due = run_in_transaction(registry, outside.due_calls, owner=owner_of(request_id))
        if due:
            call_id = due[0]
            break
    assert call_id is not None
    operation = run_in_transaction(registry, lambda request: request.dbsession.get(
        DriverCall, call_id).operation)
    assert operation == "create_vm"
    claimed = run_in_transaction(registry, outside._claim, call_id=call_id)
    outside._effect(registry, claimed)  # libvirt defines and starts the domain …
    # … and the process dies before the outcome is recorded
    [made] = domains()
    engine_clock.advance(outside.CLAIM_FOR.total_seconds() + 1)  # its claim runs out
    try:
        provision_and_tear_down(cloud, request_id, deadline)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{evidence(cloud)}") from None
    attempts = run_in_transaction(registry, lambda request: request.dbsession.get(
        DriverCall, call_id).attempts)
    assert attempts == 2  # made again under the same name: the domain was there already
    assert made.startswith("qrm-vm-")


@pytest.fixture
def engine_clock(tmp_path: pathlib.Path) -> Any:
    from engine import clock

    movable = clock.OffsetClock(tmp_path / "clock")
    previous = clock.use(movable)
    try:
        yield movable
    finally:
        clock.use(previous)
