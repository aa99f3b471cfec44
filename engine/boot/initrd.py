"""The project's small initramfs (``qrm boot build-initrd``): busybox (static), the NIC,
disk and NFS modules of a kernel package, ``/init`` and the resource agent.

Modules come from a kernel package (``--kernel-deb``, unpacked with ``dpkg-deb -x``) or an
unpacked ``lib/modules/<version>`` tree (``--modules``). Packages carry no ``modules.dep``,
so dependencies are read from each module's ``depends=`` field and the modules are loaded
in dependency order: ``/init`` loads the network cards' (``/lib/modules/load-order``), the
agent loads the disk and NFS modules (``/lib/modules/load-order.root``) only for a root
mount, so that a machine in the ramdisk registers as soon as its network is up. The archive
is written by this module (``newc`` cpio, gzip): no cpio program is needed.
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
import os
import pathlib
import re
import subprocess
import tempfile
from collections.abc import Iterable

#: what the initramfs holds, with their dependencies: virtio NICs (loaded by /init) and
#: disks and NFS (loaded by the agent for a root mount); the usual physical NICs' drivers
#: are left to a site's own initrd
NETWORK_MODULES = ("virtio_pci", "virtio_net")
ROOT_MODULES = ("virtio_blk", "virtio_scsi", "sd_mod", "nfsv3", "nfsv4", "ext4")
WANTED_MODULES = NETWORK_MODULES + ROOT_MODULES
VERSION = "qrm-initrd 1"
DEPENDS = re.compile(rb"depends=([A-Za-z0-9_,-]*)")


def agent_script() -> str:
    """The resource agent (``engine/boot/files/agent.sh``)."""
    return _file("agent.sh")


def _file(name: str) -> str:
    return importlib.resources.files("engine.boot").joinpath("files", name).read_text()


def module_index(modules_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Module name (``-`` as ``_``) -> its ``.ko`` file, under ``modules_dir``."""
    return {path.name[:-3].replace("-", "_"): path for path in modules_dir.rglob("*.ko")}


def dependencies(path: pathlib.Path) -> list[str]:
    match = DEPENDS.search(path.read_bytes())
    if not match or not match.group(1):
        return []
    return [name.decode().replace("-", "_") for name in match.group(1).split(b",") if name]


def load_order(index: dict[str, pathlib.Path], wanted: Iterable[str]) -> list[str]:
    """``wanted`` (those present) and what they depend on, dependencies first."""
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order or name in trail or name not in index:
            return
        for dependency in dependencies(index[name]):
            visit(dependency, (*trail, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def find_modules_dir(root: pathlib.Path) -> pathlib.Path:
    """``root`` itself if it holds modules directly, else its ``lib/modules/<version>``."""
    candidates = sorted((root / "lib" / "modules").glob("*")) if (root / "lib").is_dir() else []
    candidates += sorted((root / "usr" / "lib" / "modules").glob("*"))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return root


class Archive:
    """A ``newc`` cpio archive built in memory."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        fields = [self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        header = b"070701" + b"".join(f"{value:08X}".encode() for value in fields)
        self.inode += 1
        self.buffer.write(header + encoded)
        self.buffer.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self.buffer.write(data)
        self.buffer.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buffer.getvalue()


DIRECTORIES = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/share", "usr/share/udhcpc",
               "proc", "sys", "dev", "tmp", "run", "etc", "lib", "lib/modules", "newroot",
               "var", "mnt")


def build(modules_dir: pathlib.Path, out: pathlib.Path, *,
          busybox: pathlib.Path = pathlib.Path("/bin/busybox"),
          network: Iterable[str] = NETWORK_MODULES,
          root: Iterable[str] = ROOT_MODULES) -> list[str]:
    """Write the initramfs to ``out`` (gzip); return the modules it holds, in the order they
    are loaded (the network's first)."""
    busybox_bytes = busybox.read_bytes()
    if b"libc.so" in busybox_bytes[:65536] or b"ld-linux" in busybox_bytes[:65536]:
        raise ValueError(f"{busybox} is linked dynamically: install busybox-static")
    index = module_index(modules_dir)
    network_order = load_order(index, network)
    root_order = [name for name in load_order(index, root) if name not in network_order]
    order = network_order + root_order
    archive = Archive()
    for name in DIRECTORIES:
        archive.directory(name)
    archive.file("bin/busybox", busybox_bytes, 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", _file("init").encode(), 0o755)
    archive.file("bin/qrm-agent", agent_script().encode(), 0o755)
    archive.file("usr/share/udhcpc/default.script", _file("udhcpc.script").encode(), 0o755)
    archive.file("etc/qrm-initrd", f"{VERSION}\n".encode())
    for name in order:
        archive.file(f"lib/modules/{name}.ko", index[name].read_bytes())
    archive.file("lib/modules/load-order",
                 "".join(f"{name}\n" for name in network_order).encode())
    archive.file("lib/modules/load-order.root",
                 "".join(f"{name}\n" for name in root_order).encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_bytes(gzip.compress(archive.finish(), compresslevel=6))
    os.replace(partial, out)
    return order


def build_from_deb(kernel_deb: pathlib.Path, out: pathlib.Path, **kw: object) -> list[str]:
    """Unpack a kernel package (``dpkg-deb -x``) and build from its modules."""
    with tempfile.TemporaryDirectory(prefix="qrm-kernel-") as unpacked:
        subprocess.run(["dpkg-deb", "-x", str(kernel_deb), unpacked], check=True)  # noqa: S603,S607
        return build(find_modules_dir(pathlib.Path(unpacked)), out, **kw)  # type: ignore[arg-type]
