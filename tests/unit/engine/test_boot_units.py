"""Boot units: pxelinux text and files, the agent's parameter parsing under busybox sh,
the initramfs, and the health check's timeout."""

from __future__ import annotations

import gzip
import pathlib
import shutil
import subprocess

import pytest

from engine.boot import pxelinux
from engine.boot.decisions import BootEntry
from engine.boot.initrd import agent_script

ENTRY = BootEntry(kernel="second", parameters=(("url", "http://10.0.2.100"), ("id", "3")),
                  kernel_args="console=ttyS0")


def test_pxelinux_text_names_kernel_initrd_and_parameters():
    text = pxelinux.render(ENTRY, reason="resource 3")
    assert "  KERNEL qrm-kernels/second/vmlinuz\n" in text
    assert "  INITRD qrm-kernels/second/initrd\n" in text
    assert "  APPEND console=ttyS0 qrm.url=http://10.0.2.100 qrm.id=3\n" in text
    assert "LOCALBOOT" in pxelinux.render(None)
    assert pxelinux.file_name("52:54:00:AA:BB:01") == "01-52-54-00-aa-bb-01"


def test_pxelinux_tree_is_idempotent_and_removes_gone_resources(tmp_path):
    files = {"default": "a\n", "01-52-54-00-00-00-01": "b\n"}
    first = pxelinux.write_tree(tmp_path, files, kernel_dir=tmp_path / "k")
    assert first["written"] == ["01-52-54-00-00-00-01", "default"]
    assert pxelinux.write_tree(tmp_path, files, kernel_dir=tmp_path / "k")["written"] == []
    gone = pxelinux.write_tree(tmp_path, {"default": "a\n"}, kernel_dir=tmp_path / "k")
    assert gone["removed"] == ["01-52-54-00-00-00-01"]
    assert not (tmp_path / "pxelinux.cfg" / "01-52-54-00-00-00-01").exists()


def busybox_sh(tmp_path: pathlib.Path, cmdline: str, expression: str) -> str:
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is installed by scripts/install-system-deps.sh"
    (tmp_path / "agent.sh").write_text(agent_script())
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    result = subprocess.run(
        [busybox, "sh", "-c", f". {tmp_path / 'agent.sh'}; {expression}"], check=True,
        capture_output=True, text=True, timeout=10,
        env={"QRM_AGENT_LIB": "1", "QRM_CMDLINE": str(tmp_path / "cmdline"),
             "PATH": "/usr/bin:/bin"})
    return result.stdout.strip()


@pytest.mark.parametrize(("cmdline", "plan"), [
    ("console=ttyS0 qrm.url=http://x", "none"),
    ("qrm.root=nfs qrm.nfsroot=10.0.0.5:/export/img", "nfs 10.0.0.5:/export/img ro,nolock"),
    ("qrm.root=nfs qrm.nfsroot=nopath", "invalid qrm.nfsroot must be SERVER:/PATH"),
    ("qrm.root=local qrm.rootdev=/dev/vda1 qrm.rootfstype=xfs", "local /dev/vda1 xfs"),
    ("qrm.root=iscsi", "unknown iscsi"),
])
def test_agent_reads_the_root_mount_under_busybox(tmp_path, cmdline, plan):
    assert busybox_sh(tmp_path, cmdline, "root_plan") == plan


def test_agent_reads_mac_and_parameters_under_busybox(tmp_path):
    line = "BOOTIF=01-52-54-00-AA-BB-01 qrm.url=http://10.0.2.100 qrm.id=7 qrm.image=3"
    assert busybox_sh(tmp_path, line, "boot_mac") == "52:54:00:aa:bb:01"
    assert busybox_sh(tmp_path, line, "qrm_param id; qrm_param kernel none") == "7\nnone"
    assert busybox_sh(tmp_path, line, "ramdisk_state") == "active"
    reply = tmp_path / "reply"
    reply.write_text("interval=5\ncommand_id=9\ncommand=reboot\n")
    assert busybox_sh(tmp_path, line, f"reply_value command {reply}") == "reboot"


def test_initrd_holds_busybox_init_agent_and_modules(tmp_path):
    modules = tmp_path / "lib" / "modules" / "6.1.0-test"
    (modules / "kernel").mkdir(parents=True)
    (modules / "kernel" / "virtio.ko").write_bytes(b"\0depends=\0")
    (modules / "kernel" / "virtio_net.ko").write_bytes(b"\0depends=virtio,failover\0")
    from engine.boot import initrd

    out = tmp_path / "initrd.gz"
    order = initrd.build(initrd.find_modules_dir(tmp_path), out)
    assert order == ["virtio", "virtio_net"]
    archive = gzip.decompress(out.read_bytes())
    for name in (b"init\0", b"bin/busybox\0", b"bin/qrm-agent\0", b"lib/modules/load-order\0"):
        assert name in archive


def test_stale_resource_fails_once_and_a_report_brings_it_back(pyramid_request, admin_actor,
                                                                monkeypatch, tmp_path):
    """stale → error → qrm_resource_failed → report → idle, with the engine clock moved."""
    from engine import clock
    from engine.datacenter.models import ResourceState, VirtualizationKind
    from engine.datacenter.services import DatacenterService
    from engine.monitoring.services import ResourceReportService

    failed = []
    reports = pyramid_request.find_service(ResourceReportService)
    relay = reports.plugins.hook
    monkeypatch.setattr(relay, "qrm_resource_failed",
                        lambda **kw: failed.append(kw["resource"].id))
    monkeypatch.setattr(type(reports.plugins), "hook", property(lambda _self: relay))
    monkeypatch.setitem(pyramid_request.registry.settings, "qrm.monitoring.timeout", "60")
    movable = clock.OffsetClock(tmp_path / "clock")
    previous = clock.use(movable)
    try:
        resource = pyramid_request.find_service(DatacenterService).add_resource(
            mac="52:54:00:cc:00:01", kind=VirtualizationKind.PHYSICAL,
            virtualization_type="physical", actor=admin_actor)
        reports.report(resource, state=ResourceState.IDLE, actor=admin_actor)
        assert reports.check_health() == []
        movable.advance(61)
        assert reports.check_health() == [resource]
        assert resource.state is ResourceState.ERROR
        assert failed == [resource.id]
        assert reports.check_health() == []  # once
        reports.report(resource, state=ResourceState.IDLE, actor=admin_actor)
        assert resource.state is ResourceState.IDLE
    finally:
        clock.use(previous)


def newc_files(archive: bytes) -> dict[str, bytes]:
    """The regular files of a newc cpio archive (name -> content)."""
    files, offset = {}, 0
    while True:
        fields = [int(archive[offset + 6 + 8 * i:offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name_at = offset + 110
        name = archive[name_at:name_at + name_size - 1].decode()
        data_at = name_at + name_size + (-(110 + name_size) % 4)
        if name == "TRAILER!!!":
            return files
        if mode & 0o170000 == 0o100000:
            files[name] = archive[data_at:data_at + size]
        offset = data_at + size + (-size % 4)


def test_init_loads_the_network_modules_and_the_agent_the_rest_for_a_root_mount(tmp_path):
    modules = tmp_path / "lib" / "modules" / "6.1.0-test" / "kernel"
    modules.mkdir(parents=True)
    for name, depends in (("virtio", ""), ("virtio_net", "virtio"), ("virtio_blk", "virtio"),
                          ("sunrpc", ""), ("nfs", "sunrpc"), ("nfsv4", "nfs")):
        (modules / f"{name}.ko").write_bytes(f"\0depends={depends}\0".encode())
    from engine.boot import initrd

    out = tmp_path / "initrd.gz"
    order = initrd.build(initrd.find_modules_dir(tmp_path), out, network=("virtio_net",),
                         root=("virtio_blk", "nfsv4"))
    assert order == ["virtio", "virtio_net", "virtio_blk", "sunrpc", "nfs", "nfsv4"]
    files = newc_files(gzip.decompress(out.read_bytes()))
    assert files["lib/modules/load-order"] == b"virtio\nvirtio_net\n"
    assert files["lib/modules/load-order.root"] == b"virtio_blk\nsunrpc\nnfs\nnfsv4\n"
    # the agent loads the second list, in its order, under busybox sh
    loaded = tmp_path / "loaded"
    (loaded / "lib").mkdir(parents=True)
    (loaded / "lib" / "load-order.root").write_bytes(files["lib/modules/load-order.root"])
    (tmp_path / "agent.sh").write_text(agent_script())
    subprocess.run([shutil.which("busybox"), "sh", "-c",
                    f". {tmp_path / 'agent.sh'}; insmod() {{ echo \"$1\" >> {loaded / 'log'}; }}"
                    "; load_root_modules"], check=True, timeout=10,
                   env={"QRM_AGENT_LIB": "1", "QRM_MODULES": str(loaded / "lib"),
                        "PATH": "/usr/bin:/bin"})
    assert (loaded / "log").read_text().split() == [
        f"{loaded / 'lib'}/{name}.ko" for name in ("virtio_blk", "sunrpc", "nfs", "nfsv4")]
