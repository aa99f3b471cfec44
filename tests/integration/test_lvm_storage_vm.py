"""LVM for real: the ``lvm-storage`` driver drives a qemu storage-host VM over SSH
(``tests/integration/lvm_storage_host.py``: busybox + lvm + sshd, one VM per test session).

The first tests go the engine's way: the storage is a row with its SSH target, the host key
is vouched for by a known_hosts file and pinned in the database, and the driver reaches the
host through the command queue's SSH pool. The driver contract
(``tests/contract/test_drivers.py``) then runs against the same VM, a fresh volume group per
storage.
"""

from __future__ import annotations

import functools
import itertools
import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from engine.commands.models import SshHostKey
from engine.commands.services import CommandService
from engine.commands.ssh import MemoryHostKeyStore, SshPool
from engine.datacenter.services import DatacenterService
from engine.errors import CapacityError, DriverError
from engine.plugins.drivers import HostUnreachable, MachineRef, StorageRef
from engine.security import Actor
from plugins.lvm.driver import LvmStorageDriver, VolumeConflict
from plugins.lvm.hooks import qrm_storage_drivers
from tests.conftest import commit
from tests.contract import test_drivers as contract
from tests.integration.lvm_storage_host import (
    StorageHost,
    missing_tools,
    start_storage_host,
)

pytestmark = pytest.mark.heavy

ADMIN = Actor.admin("alice")
#: a port in this suite's range where nothing listens (the storage host "down")
DEAD_PORT = 18499
TIMINGS: dict[str, float] = {}
_groups = itertools.count(1)


@pytest.fixture
def hard_timeout_s() -> int:
    return 400  # the first test of the session also boots the VM (TCG, shared cores)


@pytest.fixture(scope="session")
def storage_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageHost]:
    missing = missing_tools()
    if missing:
        message = (f"the storage host VM needs {', '.join(missing)} "
                   "(scripts/install-system-deps.sh installs them)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    started = time.monotonic()
    host = start_storage_host(tmp_path_factory.mktemp("lvm-storage-host"))
    TIMINGS["boot_to_ssh_s"] = host.boot_s
    TIMINGS["session_start"] = started
    try:
        yield host
    finally:
        host.stop()
        total = time.monotonic() - started
        print(f"\nlvm storage host: SSH login {host.boot_s:.1f} s after qemu start; "
              f"VM session {total:.1f} s; engine scenario "
              f"{TIMINGS.get('engine_scenario_s', 0):.1f} s; load {os.getloadavg()}")


def serial_log_on_failure(test: Callable[..., Any]) -> Callable[..., Any]:
    """A failing test's error carries the storage host's serial log."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return test(*args, **kwargs)
        except BaseException as error:
            host = kwargs.get("storage_host")
            if host is None:
                backend = kwargs.get("storage_backend")
                host = getattr(backend, "host", None)
            if isinstance(host, StorageHost):
                error.add_note(f"storage host serial log (end):\n{host.serial_text()[-4000:]}")
            raise

    return wrapper


# -- the engine's way: a storage row, its SSH target, the key pinned in the database ---------
@pytest.fixture
def engine_storage(pyramid_request: Any, registry: Any, storage_host: StorageHost,
                   tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> StorageRef:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(storage_host.known_hosts_line + "\n")
    for key, value in {"known_hosts": str(known_hosts), "host_key_policy": "reject"}.items():
        monkeypatch.setitem(registry.settings, f"qrm.ssh.{key}", value)
    volume_group = storage_host.new_volume_group(f"qrmvg{next(_groups)}")
    datacenter = pyramid_request.find_service(DatacenterService)
    row = datacenter.add_storage("lvm-one", storage_type="lvm-storage", actor=ADMIN)
    pyramid_request.find_service(CommandService).set_ssh_target(
        row, actor=ADMIN, host="127.0.0.1", port=storage_host.port, user="root",
        key=str(storage_host.client_key.private_path))
    commit(pyramid_request)
    for key, value in {"volume_group": volume_group, "server": "10.0.2.15"}.items():
        monkeypatch.setitem(registry.settings, f"qrm.lvm.lvm-one.{key}", value)
    return StorageRef(id=row.id, name=row.name, storage_type="lvm-storage")


def guest_md5(host: StorageHost, device: str) -> str:
    return host.sh(f"md5sum < {device}").split()[0]


@serial_log_on_failure
def test_volumes_snapshot_clones_resize_exports_and_removal_on_a_real_lvm_host(
        pyramid_request, registry, engine_storage, storage_host, monkeypatch):
    started = time.monotonic()
    [driver] = qrm_storage_drivers(request=pyramid_request)
    storage = engine_storage
    vg = registry.settings["qrm.lvm.lvm-one.volume_group"]

    golden = driver.create_volume(storage, name="qrm-img-1", size_mb=64)
    assert golden == f"/dev/{vg}/qrm-img-1"
    assert driver.create_volume(storage, name="qrm-img-1", size_mb=64) == golden  # by name
    # the engine's pool reached it with the key the known_hosts file vouched for, now pinned
    [pinned] = pyramid_request.dbsession.scalars(
        select(SshHostKey).where(SshHostKey.port == storage_host.port))
    assert pinned.key_base64 == storage_host.host_key.base64
    # a golden image: a filesystem with a file on it
    storage_host.sh(f"mke2fs -q {golden} && mkdir -p /mnt/g && mount {golden} /mnt/g && "
                    "echo golden > /mnt/g/hello && umount /mnt/g")
    golden_sum = guest_md5(storage_host, golden)

    clone = driver.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                                size_mb=32)
    assert driver.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                               size_mb=32) == clone
    assert guest_md5(storage_host, clone) == golden_sum  # it starts as the origin
    storage_host.sh(f"mkdir -p /mnt/c && mount {clone} /mnt/c && echo clone > /mnt/c/hello "
                    "&& dd if=/dev/zero of=/mnt/c/blob bs=1k count=512 2>/dev/null && "
                    "umount /mnt/c && sync")
    assert guest_md5(storage_host, golden) == golden_sum  # the origin is unchanged
    assert storage_host.sh(f"cmp -s {golden} {clone} || echo differ").strip() == "differ"
    assert storage_host.sh(f"mount -o ro {golden} /mnt/g && cat /mnt/g/hello; umount /mnt/g"
                           ).strip() == "golden"
    listed = {info.root_device: info for info in driver.list_volumes(storage)}
    assert listed[clone].origin == golden
    assert listed[golden].origin is None
    assert storage_host.sh(f"lvm lvs --noheadings -o lv_attr {vg}/qrm-img-2").strip()[0] == "s"

    # a name taken by another origin's clone is refused, not handed out
    other = driver.create_volume(storage, name="qrm-img-3", size_mb=16)
    with pytest.raises(VolumeConflict, match="qrm-img-2 exists already as a clone of "
                                             "qrm-img-1, not a clone of qrm-img-3"):
        driver.clone_volume(storage, source_root_device=other, name="qrm-img-2", size_mb=16)

    # resize: lvextend, and the same size again changes nothing
    driver.resize_volume(storage, root_device=other, size_mb=128)
    driver.resize_volume(storage, root_device=other, size_mb=128)
    assert storage_host.sh(f"blockdev --getsize64 {other}").strip() == str(128 * 1024 * 1024)
    with pytest.raises(DriverError, match="cannot shrink"):
        driver.resize_volume(storage, root_device=other, size_mb=64)

    # the VG full: a clear capacity error naming the group and the sizes, nothing made
    with pytest.raises(CapacityError, match=rf"volume group {vg} has \d+ MB free; 9000 MB"):
        driver.create_volume(storage, name="qrm-img-4", size_mb=9000)
    assert "qrm-img-4" not in {info.name for info in driver.list_volumes(storage)}

    # the NFS export: mounted on the storage host, one line for exactly the machine
    machine = MachineRef(id=7, mac="52:54:00:12:34:56", name="box", ip="10.0.2.99")
    driver.authenticate(storage, root_device=clone, machine=machine)
    driver.authenticate(storage, root_device=clone, machine=machine)
    exports_file = f"/etc/exports.d/qrm-{vg}@qrm-img-2.exports"
    assert storage_host.sh(f"cat {exports_file}") == (
        f"/srv/qrm/{vg}/qrm-img-2 10.0.2.99(rw,sync,no_root_squash,no_subtree_check)\n")
    assert storage_host.sh(f"grep -c ' /srv/qrm/{vg}/qrm-img-2 ' /proc/mounts").strip() == "1"
    assert storage_host.sh(f"cat /srv/qrm/{vg}/qrm-img-2/hello").strip() == "clone"
    assert driver.boot_parameters(storage, root_device=clone, root_fs_type="ext4",
                                  deployment_type="lvm-nfs") == {
        "root": "nfs", "nfsroot": f"10.0.2.15:/srv/qrm/{vg}/qrm-img-2"}
    # revoked on stop: the file is gone and the volume unmounted
    driver.authenticate(storage, root_device=clone, machine=None)
    driver.authenticate(storage, root_device=clone, machine=None)
    assert storage_host.sh(f"ls {exports_file} 2>/dev/null; grep -c qrm-img-2 /proc/mounts",
                           check=False).strip() == "0"

    # the iSCSI way on the same volume group: a tgt target for the machine's initiator
    monkeypatch.setitem(registry.settings, "qrm.lvm.lvm-one.export", "iscsi")
    driver.authenticate(storage, root_device=clone, machine=machine)
    assert storage_host.sh(f"cat /etc/tgt/conf.d/qrm-{vg}@qrm-img-2.conf") == (
        f"# written by QRM Cloud (lvm-storage, storage lvm-one): volume {vg}/qrm-img-2 for "
        "machine 7\n"
        f"<target iqn.2026-12.cloud.qrm:{vg}.qrm-img-2>\n"
        f"    backing-store /dev/{vg}/qrm-img-2\n"
        "    initiator-name iqn.2026-12.cloud.qrm:initiator.525400123456\n"
        "    initiator-address 10.0.2.99\n"
        "</target>\n")
    driver.authenticate(storage, root_device=clone, machine=None)
    assert storage_host.sh("ls /etc/tgt/conf.d/").strip() == ""

    # removal: not while a snapshot depends on the origin; missing is fine
    with pytest.raises(DriverError, match="still has the snapshot"):
        driver.remove_volume(storage, root_device=golden)
    for device in (clone, clone, golden, other, golden):
        driver.remove_volume(storage, root_device=device)
    assert driver.list_volumes(storage) == []
    TIMINGS["engine_scenario_s"] = time.monotonic() - started


@serial_log_on_failure
def test_copy_clones_are_independent_full_copies(pyramid_request, registry, engine_storage,
                                                 storage_host, monkeypatch):
    monkeypatch.setitem(registry.settings, "qrm.lvm.lvm-one.clone", "copy")
    driver = LvmStorageDriver(pyramid_request)
    storage = engine_storage
    vg = registry.settings["qrm.lvm.lvm-one.volume_group"]
    golden = driver.create_volume(storage, name="qrm-img-11", size_mb=32)
    storage_host.sh(f"dd if=/dev/urandom of={golden} bs=1M count=8 conv=fsync 2>/dev/null")
    golden_sum = guest_md5(storage_host, golden)

    clone = driver.clone_volume(storage, source_root_device=golden, name="qrm-img-12",
                                size_mb=48)
    assert storage_host.sh(f"cmp -n {32 * 1024 * 1024} {golden} {clone} && echo same"
                           ).strip() == "same"
    storage_host.sh(f"dd if=/dev/zero of={clone} bs=1M count=1 conv=fsync 2>/dev/null")
    assert guest_md5(storage_host, golden) == golden_sum
    [info] = [info for info in driver.list_volumes(storage) if info.root_device == clone]
    assert (info.origin, info.size_mb) == (golden, 48)
    tags = storage_host.sh(f"lvm lvs --noheadings -o lv_tags {vg}/qrm-img-12").strip()
    assert tags == "qrm_clone,qrm_origin_qrm-img-11"  # the copy is complete
    # not an LVM snapshot: the origin can go first
    driver.remove_volume(storage, root_device=golden)
    driver.remove_volume(storage, root_device=clone)
    assert driver.list_volumes(storage) == []


@serial_log_on_failure
def test_a_storage_host_that_does_not_answer_is_unreachable(pyramid_request, registry,
                                                            engine_storage, storage_host,
                                                            monkeypatch):
    monkeypatch.setitem(registry.settings, "qrm.lvm.lvm-one.ssh_host", "127.0.0.1")
    monkeypatch.setitem(registry.settings, "qrm.lvm.lvm-one.ssh_port", str(DEAD_PORT))
    driver = LvmStorageDriver(pyramid_request)
    with pytest.raises(HostUnreachable, match=f"storage lvm-one .*{DEAD_PORT}.* does not "
                                              "answer"):
        driver.list_volumes(engine_storage)


@serial_log_on_failure
def test_the_engine_makes_its_calls_on_the_storage_host(pyramid_request, registry,
                                                       engine_storage, storage_host,
                                                       admin_actor):
    """Images created, cloned, authorised and removed by the engine's services: each driver
    call recorded, committed, made after the commit and its outcome recorded."""
    from engine.boot.services import BootService
    from engine.datacenter.calls import run_calls
    from engine.datacenter.models import (
        CallState,
        DriverCall,
        Image,
        Storage,
        VirtualizationKind,
    )
    from engine.plugins.manager import PluginService

    vg = registry.settings["qrm.lvm.lvm-one.volume_group"]
    plugins = pyramid_request.find_service(PluginService)
    plugins.act("lvm-storage", "enable", actor=admin_actor)
    plugins.act("lvm-storage", "start", actor=admin_actor)
    datacenter = pyramid_request.find_service(DatacenterService)
    row = pyramid_request.dbsession.get(Storage, engine_storage.id)

    def settle() -> None:
        commit(pyramid_request)
        run_calls(registry, None)
        pyramid_request.dbsession.expire_all()
        failed = [(call.key, call.error) for call in pyramid_request.dbsession.scalars(
            select(DriverCall).where(DriverCall.state != CallState.DONE))]
        assert failed == []

    golden = datacenter.create_image("golden", storage=row, deployment_type="lvm-nfs",
                                     size_mb=32, actor=ADMIN)
    settle()
    golden = pyramid_request.dbsession.get(Image, golden.id)
    assert golden.root_device == f"/dev/{vg}/qrm-img-{golden.id}"
    storage_host.sh(f"mke2fs -q {golden.root_device}")
    clone = datacenter.clone_image(golden, name="golden-clone", size_mb=32, actor=ADMIN)
    settle()
    clone = pyramid_request.dbsession.get(Image, clone.id)
    assert clone.root_device == f"/dev/{vg}/qrm-img-{clone.id}"
    assert storage_host.sh(f"lvm lvs --noheadings -o origin {clone.root_device}").strip() == (
        f"qrm-img-{golden.id}")

    machine = datacenter.add_resource(mac="52:54:00:00:99:01", kind=VirtualizationKind.PHYSICAL,
                                      virtualization_type="physical", ip="10.0.2.98",
                                      name="lvm-machine", actor=ADMIN)
    datacenter.authorize_storage(clone, machine, actor=ADMIN)
    settle()
    exports_file = f"/etc/exports.d/qrm-{vg}@qrm-img-{clone.id}.exports"
    assert storage_host.sh(f"cat {exports_file}").startswith(
        f"/srv/qrm/{vg}/qrm-img-{clone.id} 10.0.2.98(")
    clone = pyramid_request.dbsession.get(Image, clone.id)
    assert pyramid_request.find_service(BootService).root_parameters(clone) == [
        ("root", "nfs"), ("nfsroot", f"10.0.2.15:/srv/qrm/{vg}/qrm-img-{clone.id}")]

    datacenter.authorize_storage(clone, None, actor=ADMIN)
    settle()
    assert storage_host.sh(f"ls {exports_file} 2>/dev/null || echo gone").strip() == "gone"
    datacenter.remove_image(pyramid_request.dbsession.get(Image, clone.id), actor=ADMIN)
    settle()
    datacenter.remove_image(pyramid_request.dbsession.get(Image, golden.id), actor=ADMIN)
    settle()
    assert pyramid_request.dbsession.scalars(select(Image.id).where(
        Image.id.in_([golden.id, clone.id]))).all() == []
    assert storage_host.sh(f"lvm lvs --noheadings -o lv_name {vg}").strip() == ""


# -- the driver contract, against the same VM --------------------------------------------------
class LvmStorage:
    """``tests/contract`` backend: each storage a fresh volume group on the VM."""

    def __init__(self, host: StorageHost, directory: pathlib.Path) -> None:
        self.host = host
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(host.known_hosts_line + "\n")
        self.settings: dict[str, Any] = {
            "qrm.ssh.known_hosts": str(known_hosts), "qrm.ssh.user": "root",
            "qrm.ssh.key_file": str(host.client_key.private_path),
            "qrm.lvm.export": "iscsi", "qrm.lvm.server": "10.0.2.15"}
        self.pool = SshPool(MemoryHostKeyStore())
        self.driver = LvmStorageDriver(settings=self.settings, pool=self.pool)

    def storage(self, *, capacity_mb: int) -> StorageRef:
        number = next(contract._numbers)
        name = f"contract{number}"
        self.host.new_volume_group(name)
        self.settings.update({f"qrm.lvm.{name}.volume_group": name,
                              f"qrm.lvm.{name}.ssh_host": "127.0.0.1",
                              f"qrm.lvm.{name}.ssh_port": str(self.host.port)})
        return StorageRef(id=number, name=name, storage_type=self.driver.storage_type,
                          capacity_mb=capacity_mb)

    def make_unreachable(self, storage: StorageRef) -> None:
        self.settings[f"qrm.lvm.{storage.name}.ssh_port"] = str(DEAD_PORT)


@pytest.fixture
def storage_backend(storage_host: StorageHost, tmp_path: pathlib.Path) -> Iterator[LvmStorage]:
    backend = LvmStorage(storage_host, tmp_path)
    try:
        yield backend
    finally:
        backend.pool.close()


_CONTRACT = [name for name in dir(contract) if name.startswith("test_")
             and "storage_backend" in contract.__dict__[name].__code__.co_varnames]
for _name in _CONTRACT:
    globals()[f"{_name}_on_lvm"] = serial_log_on_failure(getattr(contract, _name))
del _name
