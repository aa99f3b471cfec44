"""Fixtures for the kvm plugin: hosts on libvirt's ``test:///`` driver (a node description of
our own under ``tmp_path``, so every test starts with an empty host of known size), the
driver with a connection pool of its own, and qcow2 directories for the local executor."""

from __future__ import annotations

import itertools
import os
import pathlib
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.plugins.drivers import HostRef, StorageRef, VmSpec
from plugins.kvm.drivers import ConnectionPool, KvmDriver
from plugins.kvm.qcow2 import Qcow2StorageDriver

_numbers = itertools.count(1)


def new_mac() -> str:
    number = next(_numbers)
    return f"52:54:00:{number >> 16 & 255:02x}:{number >> 8 & 255:02x}:{number & 255:02x}"


def spec(name: str = "qrm-vm-1", *, cpus: int = 1, memory_mb: int = 512,
         macs: tuple[str, ...] | None = None, **more: Any) -> VmSpec:
    return VmSpec(name=name, cpus=cpus, memory_mb=memory_mb, macs=macs or (new_mac(),), **more)


def write_node(path: pathlib.Path, *, cpus: int, memory_mb: int) -> str:
    """A libvirt test-driver node with ``cpus`` CPUs and ``memory_mb`` of memory and no
    domains; returns its URI (each connection opened to it starts from this file)."""
    path.write_text(f"""<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>{cpus}</active><nodes>1</nodes>
    <sockets>1</sockets><cores>{cpus}</cores><threads>1</threads></cpu>
  <memory>{memory_mb * 1024}</memory>
</node>
""")
    return f"test://{path}"


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    pool = ConnectionPool()
    yield pool
    pool.close()


@pytest.fixture
def driver(pool: ConnectionPool) -> KvmDriver:
    return KvmDriver(pool=pool)


@pytest.fixture
def make_host(tmp_path: pathlib.Path) -> Callable[..., HostRef]:
    def make(*, cpus: int = 4, memory_mb: int = 4096, **settings: Any) -> HostRef:
        number = next(_numbers)
        uri = write_node(tmp_path / f"node-{number}.xml", cpus=cpus, memory_mb=memory_mb)
        return HostRef(id=number, name=f"kvm-{number}", mac=new_mac(),
                       settings={"uri": uri, "domain_type": "test", **settings})

    return make


@pytest.fixture
def host(make_host: Callable[..., HostRef]) -> HostRef:
    return make_host()


@pytest.fixture
def qemu_img() -> str:
    found = shutil.which("qemu-img")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("qemu-img is missing (scripts/install-system-deps.sh installs "
                        "qemu-utils)")
        pytest.skip("qemu-img is missing (apt-get install qemu-utils)")
    return found


@pytest.fixture
def storage(tmp_path: pathlib.Path, host: HostRef, qemu_img: str) -> StorageRef:
    """A qcow2 storage in ``tmp_path/volumes`` on ``host`` (the engine's machine)."""
    return StorageRef(id=next(_numbers), name="local-qcow2", storage_type="qcow2",
                      settings={"directory": str(tmp_path / "volumes"),
                                "uri": host.settings["uri"], "executor": "local"})


@pytest.fixture
def qcow2(pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch) -> Qcow2StorageDriver:
    """The storage driver; the domains it changes are reached through the test's pool."""
    import plugins.kvm.drivers as kvm_drivers

    monkeypatch.setattr(kvm_drivers, "POOL", pool)
    return Qcow2StorageDriver()
