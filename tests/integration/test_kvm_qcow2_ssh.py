"""The qcow2 storage of a remote KVM host, driven over SSH: a real OpenSSH sshd on 127.0.0.1
plays the host (its files land on this machine, so qemu-img checks them here). What the
driver sends, how it authenticates the host, and what it makes of a host that does not
answer or a command that fails."""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
from sqlalchemy import select

from engine.commands.models import SshHostKey
from engine.commands.ssh import MemoryHostKeyStore, SshPool
from engine.datacenter.models import ResourceState, VirtualizationKind
from engine.datacenter.refs import storage_ref
from engine.datacenter.services import DatacenterService
from engine.errors import DriverError
from engine.plugins.drivers import HostUnreachable, StorageRef
from engine.plugins.manager import PluginService
from engine.security import Actor
from plugins.kvm.hosts import configure_host
from plugins.kvm.qcow2 import Qcow2StorageDriver
from tests.conftest import commit
from tests.integration.conftest import Sshd, make_key, stop_sshd

ADMIN = Actor.admin("alice")


@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    import os
    import shutil

    if shutil.which("qemu-img") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("qemu-img is missing (scripts/install-system-deps.sh installs "
                        "qemu-utils)")
        pytest.skip("qemu-img is missing (apt-get install qemu-utils)")


def remote_storage(sshd: Sshd, directory: pathlib.Path) -> StorageRef:
    return StorageRef(id=1, name="remote-qcow2", storage_type="qcow2", settings={
        "directory": str(directory), "executor": "ssh", "ssh_host": "127.0.0.1",
        "ssh_port": sshd.port, "ssh_user": sshd.user,
        "ssh_key": str(sshd.client_key.private_path)})


def pinned_pool(sshd: Sshd) -> SshPool:
    """An SSH pool that knows the sshd's host key already."""
    keys = MemoryHostKeyStore()
    keys.pin("127.0.0.1", sshd.port, sshd.host_key.key_type, sshd.host_key.base64)
    return SshPool(keys)


def info(path: str) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                     capture_output=True, check=True, timeout=30).stdout)


def test_volumes_are_made_over_ssh(sshd, tmp_path):
    pool = pinned_pool(sshd)
    driver = Qcow2StorageDriver(ssh_pool=pool)
    storage = remote_storage(sshd, tmp_path / "volumes")

    golden = driver.create_volume(storage, name="golden", size_mb=16)
    clone = driver.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                                size_mb=32)
    again = driver.clone_volume(storage, source_root_device=golden, name="qrm-img-2",
                                size_mb=32)
    snapshot = driver.snapshot_volume(storage, source_root_device=clone, name="before")
    driver.resize_volume(storage, root_device=clone, size_mb=48)

    assert again == clone == str(tmp_path / "volumes" / "qrm-img-2.qcow2")
    assert info(clone)["backing-filename"] == golden
    assert info(clone)["virtual-size"] == 48 * 1024 * 1024
    assert [(volume.name, volume.size_mb, volume.origin)
            for volume in driver.list_volumes(storage)] == [
        ("golden", 16, None), ("qrm-img-2", 48, golden), ("before", 48, clone)]
    assert snapshot == f"{clone}@before"

    driver.remove_volume(storage, root_device=snapshot)
    driver.remove_volume(storage, root_device=clone)
    driver.remove_volume(storage, root_device=golden)
    assert driver.list_volumes(storage) == []
    assert list((tmp_path / "volumes").iterdir()) == []
    assert pool.connects == 1  # one connection for every command
    assert sshd.log_text().count("Accepted publickey") == 1


def test_a_host_that_does_not_answer_raises_host_unreachable(sshd, tmp_path):
    pool = pinned_pool(sshd)
    driver = Qcow2StorageDriver(ssh_pool=pool)
    storage = remote_storage(sshd, tmp_path / "volumes")
    golden = driver.create_volume(storage, name="golden", size_mb=16)
    stop_sshd(sshd)
    pool.close()  # its session processes outlive the listener; the host is gone

    with pytest.raises(HostUnreachable, match="remote-qcow2"):
        driver.list_volumes(storage)
    with pytest.raises(HostUnreachable):
        driver.clone_volume(storage, source_root_device=golden, name="qrm-img-2", size_mb=16)
    with pytest.raises(HostUnreachable):
        driver.remove_volume(storage, root_device=golden)
    assert [path.name for path in (tmp_path / "volumes").iterdir()] == ["golden.qcow2"]


def test_a_host_with_another_key_than_the_pinned_one_is_refused(sshd, tmp_path):
    keys = MemoryHostKeyStore()
    impostor = make_key(tmp_path / "impostor")
    keys.pin("127.0.0.1", sshd.port, impostor.key_type, impostor.base64)
    driver = Qcow2StorageDriver(ssh_pool=SshPool(keys))
    storage = remote_storage(sshd, tmp_path / "volumes")

    with pytest.raises(DriverError, match=r"host key of .* changed") as refused:
        driver.create_volume(storage, name="golden", size_mb=16)
    assert not isinstance(refused.value, HostUnreachable)  # not retried as "down"
    assert not (tmp_path / "volumes").exists()


def test_a_host_whose_key_is_unknown_is_refused_by_default(sshd, tmp_path):
    driver = Qcow2StorageDriver(ssh_pool=SshPool(MemoryHostKeyStore()))
    with pytest.raises(DriverError, match="unknown host key"):
        driver.list_volumes(remote_storage(sshd, tmp_path / "volumes"))


def test_a_failing_command_reports_its_stderr(sshd, tmp_path):
    driver = Qcow2StorageDriver(ssh_pool=pinned_pool(sshd))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    storage = remote_storage(sshd, blocked)

    with pytest.raises(DriverError, match=r"mkdir -p .*blocked failed on .*exit 1.*File "
                                          r"exists|Not a directory"):
        driver.create_volume(storage, name="golden", size_mb=16)


def test_a_remote_host_in_the_database_is_reached_over_ssh_its_key_pinned_there(
        sshd, tmp_path, pyramid_request, registry, monkeypatch):
    """The settings come from the rows (the storage's KVM host has a remote URI, the storage
    names its SSH target) and the host key is pinned in ``ssh_host_key`` on first contact."""
    monkeypatch.setitem(registry.settings, "qrm.ssh.host_key_policy", "accept-new")
    plugins = pyramid_request.find_service(PluginService)
    plugins.act("kvm", "enable", actor=ADMIN)
    plugins.act("kvm", "start", actor=ADMIN)
    datacenter = pyramid_request.find_service(DatacenterService)
    host = datacenter.add_resource(mac="02:00:00:00:c1:01", kind=VirtualizationKind.HOST,
                                   virtualization_type="kvm", actor=ADMIN, name="remote",
                                   state=ResourceState.ACTIVE)
    configure_host(pyramid_request, host, actor=ADMIN, uri="qemu+ssh://root@127.0.0.1/system",
                   image_dir=str(tmp_path / "volumes"))
    storage = datacenter.add_storage("remote-disks", storage_type="qcow2", actor=ADMIN,
                                     resource=host)
    storage.ssh_host, storage.ssh_port, storage.ssh_user = "127.0.0.1", sshd.port, sshd.user
    storage.ssh_key = str(sshd.client_key.private_path)
    commit(pyramid_request)
    ref = storage_ref(pyramid_request.dbsession.merge(storage))
    assert ref.settings == {}  # the engine hands over no settings: the rows are read

    [driver] = [d for drivers in plugins.hook.qrm_storage_drivers(request=pyramid_request)
                for d in drivers if d.storage_type == "qcow2"]
    path = driver.create_volume(ref, name="qrm-img-1", size_mb=16)

    assert path == str(tmp_path / "volumes" / "qrm-img-1.qcow2")
    assert info(path)["virtual-size"] == 16 * 1024 * 1024
    pyramid_request.dbsession.expire_all()
    [pinned] = pyramid_request.dbsession.scalars(select(SshHostKey).where(
        SshHostKey.port == sshd.port)).all()
    assert (pinned.key_type, pinned.key_base64) == (sshd.host_key.key_type,
                                                    sshd.host_key.base64)
    assert [volume.name for volume in driver.list_volumes(ref)] == ["qrm-img-1"]
