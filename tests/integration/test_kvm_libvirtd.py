"""The kvm plugin against a real libvirtd with its QEMU driver (domain type ``qemu``: TCG),
started by the fixture as a child in the foreground (with virtlogd), never as a service.
A VM is defined and started with a qcow2 clone as its disk, listed, attached, rebooted,
stopped and removed; nothing is left in libvirt or on disk.

The set-up libvirtd needs on a machine without systemd (the ``libvirt-qemu`` user, a
``/etc/libvirt/qemu.conf`` without cgroups, namespaces or a security driver) is made by
``scripts/install-system-deps.sh``."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from engine.errors import CapacityError
from engine.plugins.drivers import HostRef, MachineRef, StorageRef, VmSpec
from plugins.kvm.drivers import ConnectionPool, KvmDriver, libvirt_module
from plugins.kvm.qcow2 import Qcow2StorageDriver

pytestmark = pytest.mark.heavy

URI = "qemu:///system"
SOCKET = pathlib.Path("/run/libvirt/libvirt-sock")
QEMU_CONF = pathlib.Path("/etc/libvirt/qemu.conf")
LIBVIRTD, VIRTLOGD = "/usr/sbin/libvirtd", "/usr/sbin/virtlogd"
#: names no one else uses on this machine
FIRST, SECOND = "qrm-vm-90001", "qrm-vm-90002"


@pytest.fixture
def hard_timeout_s() -> int:
    return 240


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (scripts/install-system-deps.sh sets it up)")
    pytest.skip(what)


class Daemons:
    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen] = []

    def log_text(self) -> str:
        parts = []
        for path in sorted(self.directory.glob("*.log")):
            parts.append(f"== {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        for name in (FIRST, SECOND):
            qemu_log = pathlib.Path(f"/var/log/libvirt/qemu/{name}.log")
            if qemu_log.exists():
                parts.append(f"== {qemu_log}\n{qemu_log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def start(self, argv: list[str], log_name: str) -> subprocess.Popen:
        with (self.directory / log_name).open("ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


def _answers() -> bool:
    libvirt = libvirt_module()
    try:
        libvirt.open(URI).close()
    except libvirt.libvirtError:
        return False
    return True


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    for program in (LIBVIRTD, VIRTLOGD):
        if not os.path.exists(program):
            _missing(f"{program} is missing (libvirt-daemon, libvirt-daemon-driver-qemu)")
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        _missing("qemu-system-x86_64 or qemu-img is missing")
    if os.geteuid() != 0:
        _missing("libvirtd's QEMU driver (qemu:///system) needs root")
    if "security_driver" not in (QEMU_CONF.read_text() if QEMU_CONF.exists() else ""):
        _missing(f"{QEMU_CONF} is not set up for libvirtd without systemd")
    if SOCKET.exists() and _answers():
        pytest.fail(f"a libvirtd answers on {SOCKET} already; the test starts its own")
    daemons = Daemons(tmp_path_factory.mktemp("libvirtd"))
    try:
        daemons.start([VIRTLOGD], "virtlogd.log")
        libvirtd = daemons.start([LIBVIRTD], "libvirtd.log")
        deadline = time.monotonic() + 60
        while not (SOCKET.exists() and _answers()):
            if libvirtd.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"libvirtd did not come up:\n{daemons.log_text()}")
            time.sleep(0.2)  # polling for the daemon, bounded by the deadline
        yield daemons
    finally:
        _remove_leftovers()
        daemons.stop()


def _remove_leftovers() -> None:
    libvirt = libvirt_module()
    with contextlib.suppress(libvirt.libvirtError):
        connection = libvirt.open(URI)
        for dom in connection.listAllDomains(0):
            if dom.name() in (FIRST, SECOND):
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
        connection.close()


@contextlib.contextmanager
def logs_on_failure(daemons: Daemons) -> Iterator[None]:
    """A failure carries the daemons' and the VMs' logs."""
    try:
        yield
    except Exception as error:
        raise AssertionError(f"{error}\n{daemons.log_text()}") from error


def qemu_pid(name: str) -> int | None:
    path = pathlib.Path(f"/run/libvirt/qemu/{name}.pid")
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    return pid if pid and os.path.exists(f"/proc/{pid}") else None


def qemu_cmdline(name: str) -> list[str]:
    pid = qemu_pid(name)
    assert pid is not None, f"no qemu process for {name}"
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def locked_by_qemu(path: str) -> bool:
    """Whether a running qemu holds the image's write lock (qemu-img info without -U)."""
    result = subprocess.run(["qemu-img", "info", path], capture_output=True, text=True,
                            timeout=30, check=False)
    return result.returncode != 0 and "lock" in result.stderr


def test_a_vm_with_a_qcow2_clone_disk_runs_and_leaves_nothing_behind(libvirtd, tmp_path):
    with logs_on_failure(libvirtd):
        exercise(tmp_path)


def exercise(tmp_path: pathlib.Path) -> None:
    pool = ConnectionPool()
    kvm = KvmDriver(pool=pool)
    host = HostRef(id=1, name="local-kvm", mac="52:54:00:00:90:00", settings={
        "uri": URI, "domain_type": "qemu", "serial_dir": str(tmp_path),
        "interface_xml": "<interface type='user'><model type='virtio'/></interface>"})
    volumes = tmp_path / "volumes"
    storage = StorageRef(id=1, name="local-qcow2", storage_type="qcow2", settings={
        "directory": str(volumes), "uri": URI, "executor": "local"})
    qcow2 = Qcow2StorageDriver()
    import plugins.kvm.drivers as kvm_drivers

    saved_pool, kvm_drivers.POOL = kvm_drivers.POOL, pool  # the storage attaches through it
    try:
        golden = qcow2.create_volume(storage, name="golden", size_mb=64)
        clone = qcow2.clone_volume(storage, source_root_device=golden, name="qrm-img-90001",
                                   size_mb=128)
        second = qcow2.clone_volume(storage, source_root_device=golden,
                                    name="qrm-img-90002", size_mb=64)

        # the host's own figures bound what it takes
        cpus, memory_mb, used_cpus, used_memory = kvm.capacity(host)
        with pytest.raises(CapacityError):
            kvm.create_vm(host, VmSpec(name=FIRST, cpus=cpus + 1, memory_mb=256,
                                       macs=("52:54:00:00:90:01",)))
        assert [vm.name for vm in kvm.list_vms(host) if vm.name in (FIRST, SECOND)] == []
        assert memory_mb > 256

        # a VM with its clone as disk
        kvm.create_vm(host, VmSpec(name=FIRST, cpus=1, memory_mb=256,
                                   macs=("52:54:00:00:90:01",), disk=clone))
        kvm.create_vm(host, VmSpec(name=FIRST, cpus=1, memory_mb=256,
                                   macs=("52:54:00:00:90:01",), disk=clone))
        listed = {vm.name: vm for vm in kvm.list_vms(host)}
        assert (listed[FIRST].state, listed[FIRST].macs, listed[FIRST].memory_mb) == (
            "running", ("52:54:00:00:90:01",), 256)
        cmdline = " ".join(qemu_cmdline(FIRST))
        assert clone in cmdline
        assert "52:54:00:00:90:01" in cmdline
        assert locked_by_qemu(clone)
        assert kvm.capacity(host)[2:] == (used_cpus + 1, used_memory + 256)

        # a VM created without a disk gets its volume from the storage, and after the
        # engine's reboot it runs with it
        kvm.create_vm(host, VmSpec(name=SECOND, cpus=1, memory_mb=256,
                                   macs=("52:54:00:00:90:02",)))
        assert second not in " ".join(qemu_cmdline(SECOND))
        qcow2.authenticate(storage, root_device=second,
                           machine=MachineRef(id=90002, mac="52:54:00:00:90:02", kind="vm"))
        kvm.reboot_vm(host, SECOND)
        assert second in " ".join(qemu_cmdline(SECOND))
        assert locked_by_qemu(second)

        # stop, remove: nothing left
        kvm.stop_vm(host, FIRST)
        assert {vm.name: vm.state for vm in kvm.list_vms(host)}[FIRST] == "stopped"
        assert qemu_pid(FIRST) is None
        assert not locked_by_qemu(clone)
        for name in (FIRST, SECOND):
            kvm.remove_vm(host, name)
            kvm.remove_vm(host, name)
        for root_device in (clone, second, golden):
            qcow2.remove_volume(storage, root_device=root_device)
        assert [vm.name for vm in kvm.list_vms(host) if vm.name in (FIRST, SECOND)] == []
        assert qemu_pid(SECOND) is None
        assert list(volumes.iterdir()) == []
        assert not (tmp_path / f"{FIRST}.log").exists()
    finally:
        kvm_drivers.POOL = saved_pool
        pool.close()
