"""A real LVM storage host for the tests: a qemu (TCG) VM booted from an initramfs built here
out of this machine's own binaries — busybox, ``/sbin/lvm`` and ``/usr/sbin/sshd`` with the
libraries ``ldd`` names — and the Debian cloud kernel that ``scripts/install-system-deps.sh``
unpacks under ``/var/cache/qrm-test/kernel`` (virtio, device-mapper and snapshot modules).
Its data disks are sparse qcow2 files; its sshd is reached through slirp's
``hostfwd=tcp:127.0.0.1:PORT-:22`` (``restrict=on``: the guest reaches nothing else).

LVM needs device-mapper, which this machine's own kernel lacks: lvm only ever runs inside
the guest. The VM is started with a hard time limit (``timeout``) on top of being killed by
its PID when the fixture ends; its serial log is kept for failure reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from typing import Any

import paramiko

from tests.integration.conftest import KeyPair, make_key

KERNEL_CACHE = pathlib.Path(os.environ.get("QRM_KERNEL_CACHE", "/var/cache/qrm-test")) / "kernel"
#: the ports this suite may use for the VM's forwarded sshd (18499 stays free: the tests'
#: "host down" port)
PORTS = range(18400, 18499)
#: the VM lives at most this long, whatever happens to the test process
VM_LIFETIME_S = 1800
BOOT_TIMEOUT_S = 240
DATA_DISKS = 20
DISK_SIZE = "4G"

MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "failover", "net_failover", "virtio_net", "virtio_blk", "dm-mod",
           "dm-bufio", "dm-snapshot")
BINARIES = ("/sbin/lvm", "/usr/sbin/sshd")
TOOLS = ("qemu-system-x86_64", "qemu-img", "cpio", "busybox", "timeout")

LVM_CONF = """\
devices {
    use_devicesfile = 0
    filter = [ "a|^/dev/vd|", "r|.*|" ]
}
activation {
    udev_sync = 0
    udev_rules = 0
    verify_udev_operations = 1
    monitoring = 0
}
global {
    use_lvmpolld = 0
}
"""

INIT = """\
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /run/sshd /run/lock/lvm /run/lvm /dev/pts /tmp
mount -t devpts devpts /dev/pts
for m in {modules}; do insmod /lib/modules/qrm/$m.ko || echo "QRMHOST: insmod $m failed"; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "QRMHOST: $(ls /dev/vd* 2>/dev/null | wc -l) disks"
/usr/sbin/sshd -e -f /etc/ssh/sshd_config && echo "QRMHOST: sshd started"
exec /bin/sh -c 'while :; do sleep 3600; done'
"""

SSHD_CONFIG = """\
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/host_key
PidFile /run/sshd.pid
AuthorizedKeysFile /etc/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
"""


class StorageHostError(RuntimeError):
    """The storage host VM could not be built or did not come up."""


def missing_tools() -> list[str]:
    """What this machine lacks to boot the storage host (empty: nothing)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    missing += [path for path in BINARIES if not os.path.exists(path)]
    if not glob.glob(str(KERNEL_CACHE / "boot" / "vmlinuz-*")):
        missing.append(f"the cloud kernel under {KERNEL_CACHE}")
    return missing


@dataclasses.dataclass
class StorageHost:
    """A running storage host VM."""

    port: int
    host_key: KeyPair
    client_key: KeyPair
    directory: pathlib.Path
    serial_log: pathlib.Path
    process: subprocess.Popen
    #: seconds from qemu's start to the first SSH login
    boot_s: float = 0.0
    disks: list[str] = dataclasses.field(default_factory=list)
    _client: paramiko.SSHClient | None = None

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.key_type} {self.host_key.base64}"

    def serial_text(self) -> str:
        if not self.serial_log.exists():
            return ""
        return self.serial_log.read_text(errors="replace")[-20000:]

    def client(self) -> paramiko.SSHClient:
        if self._client is None or not self._client.get_transport().is_active():
            self._client = _connect(self, timeout=20)
        return self._client

    def sh(self, script: str, *, check: bool = True, timeout: float = 120) -> str:
        """Run ``script`` on the guest (a test's own checks, not the plugin's commands)."""
        _stdin, stdout, stderr = self.client().exec_command(script, timeout=timeout)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        code = stdout.channel.recv_exit_status()
        if check and code != 0:
            raise AssertionError(f"guest command failed (exit {code}): {script}\n{out}{err}")
        return out

    def take_disk(self) -> str:
        """A data disk no volume group uses yet."""
        if not self.disks:
            raise StorageHostError("the storage host has no unused data disk left")
        return self.disks.pop(0)

    def new_volume_group(self, name: str) -> str:
        """A fresh volume group ``name`` on an unused data disk."""
        disk = self.take_disk()
        self.sh(f"lvm pvcreate -q -y {disk} && lvm vgcreate -q {name} {disk}")
        return name

    def stop(self) -> None:
        """Kill the VM: its process group (``timeout`` and qemu under it: killing only
        ``timeout`` would leave qemu running), and wait until none of it is left."""
        if self._client is not None:
            self._client.close()
        group = self.process.pid  # start_new_session: the group is ours alone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)  # qemu is exiting (bounded by the deadline)
        raise StorageHostError(f"the storage host's processes (group {group}) did not exit")


def _copy(source: str, root: pathlib.Path) -> None:
    target = root / source.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy2(source, target, follow_symlinks=True)


def _libraries(binary: str) -> list[str]:
    output = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True,
                            timeout=30).stdout
    paths = []
    for line in output.splitlines():
        parts = line.split()
        if "=>" in parts:
            path = parts[parts.index("=>") + 1]
        elif parts and parts[0].startswith("/"):
            path = parts[0]
        else:
            continue
        if path.startswith("/"):
            paths.append(path)
    return paths


def _kernel() -> tuple[pathlib.Path, pathlib.Path]:
    [vmlinuz] = sorted(glob.glob(str(KERNEL_CACHE / "boot" / "vmlinuz-*")))[-1:]
    version = pathlib.Path(vmlinuz).name.removeprefix("vmlinuz-")
    return pathlib.Path(vmlinuz), KERNEL_CACHE / "lib" / "modules" / version / "kernel"


def build_initramfs(directory: pathlib.Path, host_key: KeyPair, client_key: KeyPair
                    ) -> pathlib.Path:
    """The storage host's initramfs (gzip'd newc cpio), built from this machine's files."""
    root = directory / "root"
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp",
                "etc/ssh", "etc/lvm", "root", "lib/modules/qrm", "var/empty"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("busybox"), root / "bin" / "busybox")
    for binary in BINARIES:
        _copy(binary, root)
        for library in _libraries(binary):
            _copy(library, root)
    _vmlinuz, modules = _kernel()
    for module in MODULES:
        found = glob.glob(str(modules / "**" / f"{module}.ko"), recursive=True)
        if not found:
            raise StorageHostError(f"kernel module {module} not found under {modules}")
        shutil.copy2(found[0], root / "lib" / "modules" / "qrm" / f"{module}.ko")
    (root / "init").write_text(INIT.format(modules=" ".join(MODULES)))
    (root / "init").chmod(0o755)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc" / "shadow").write_text("root::19000::::::\nsshd:*:19000::::::\n")
    (root / "etc" / "shadow").chmod(0o600)
    (root / "etc" / "lvm" / "lvm.conf").write_text(LVM_CONF)
    (root / "etc" / "ssh" / "sshd_config").write_text(SSHD_CONFIG)
    shutil.copy2(host_key.private_path, root / "etc" / "ssh" / "host_key")
    (root / "etc" / "ssh" / "host_key").chmod(0o600)
    (root / "etc" / "ssh" / "authorized_keys").write_text(client_key.public_line + "\n")
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True,
                           timeout=60).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                             input=files, capture_output=True, check=True, timeout=120).stdout
    initrd = directory / "initrd.gz"
    initrd.write_bytes(gzip.compress(archive, compresslevel=1))
    return initrd


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StorageHostError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def _connect(host: StorageHost, *, timeout: float) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[127.0.0.1]:{host.port}", host.host_key.key_type,
                               paramiko.PKey.from_type_string(host.host_key.key_type,
                                                              _b64(host.host_key.base64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=host.port, username="root",
                   key_filename=str(host.client_key.private_path), timeout=timeout,
                   banner_timeout=timeout, auth_timeout=timeout, allow_agent=False,
                   look_for_keys=False)
    return client


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def start_storage_host(directory: pathlib.Path) -> StorageHost:
    """Build, boot and log in to the storage host; StorageHostError with the serial log if
    it does not come up within ``BOOT_TIMEOUT_S``."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = make_key(directory / "host_key")
    client_key = make_key(directory / "client_key")
    initrd = build_initramfs(directory, host_key, client_key)
    vmlinuz, _modules = _kernel()
    disks = []
    drive_args: list[str] = []
    for number in range(DATA_DISKS):
        disk = directory / f"data{number}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), DISK_SIZE],
                       check=True, timeout=60)
        drive_args += ["-drive", f"file={disk},if=virtio,format=qcow2,cache=unsafe"]
        disks.append(f"/dev/vd{chr(ord('a') + number)}")
    port = _free_port()
    serial_log = directory / "serial.log"
    argv = ["timeout", "-k", "5", str(VM_LIFETIME_S), "qemu-system-x86_64", "-accel", "tcg",
            "-m", "512", "-smp", "1", "-nographic", "-no-reboot", "-kernel", str(vmlinuz),
            "-initrd", str(initrd), "-append", "console=ttyS0 quiet loglevel=3 panic=-1",
            "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=n0", *drive_args]
    started = time.monotonic()
    with serial_log.open("wb") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    host = StorageHost(port=port, host_key=host_key, client_key=client_key,
                       directory=directory, serial_log=serial_log, process=process,
                       disks=disks)
    paramiko_log = logging.getLogger("paramiko")
    level = paramiko_log.level
    paramiko_log.setLevel(logging.CRITICAL)  # "Error reading SSH protocol banner" while polling
    try:
        deadline = started + BOOT_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise StorageHostError(f"qemu exited with {process.returncode}:\n"
                                       f"{host.serial_text()}")
            try:
                host._client = _connect(host, timeout=5)
                break
            except (paramiko.SSHException, OSError, EOFError):
                if time.monotonic() > deadline:
                    raise StorageHostError(
                        f"no SSH login within {BOOT_TIMEOUT_S} s:\n{host.serial_text()}"
                    ) from None
                time.sleep(0.5)  # the guest is still booting (bounded by the deadline)
        host.boot_s = time.monotonic() - started
    except BaseException:
        paramiko_log.setLevel(level)
        host.stop()
        raise
    paramiko_log.setLevel(level)
    return host


def attach_serial_log(report: Any, host: StorageHost | None) -> None:
    if host is not None:
        report.sections.append(("storage host serial log", host.serial_text()))
