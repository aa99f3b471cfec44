"""The ``lvm-storage`` driver against a real OpenSSH sshd whose sessions find a fake ``lvm``
(``tests/integration/lvm_fake.py``) first on their PATH: the commands it sends (as the
remote side receives them, argument by argument) and its error paths — the host down, a
volume group that is full or missing, a name taken by another volume, lvm not installed, a
changed host key. LVM itself runs in ``test_lvm_storage_vm.py``.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import pytest

from engine.commands.ssh import MemoryHostKeyStore, SshPool
from engine.errors import CapacityError, DriverError
from engine.plugins.drivers import HostUnreachable, MachineRef, StorageRef
from plugins.lvm.driver import LvmStorageDriver, VolumeConflict
from tests.integration.conftest import Sshd, make_key, stop_sshd

FAKE = pathlib.Path(__file__).with_name("lvm_fake.py")


class FakeHost:
    """The sshd's fake storage host: its LVM state, the argv log, the driver."""

    def __init__(self, sshd: Sshd, directory: pathlib.Path) -> None:
        self.sshd, self.directory = sshd, directory
        self.state_path = directory / "lvm-state.json"
        self.log_path = directory / "lvm-calls.log"
        self.missing_marker = directory / "lvm-missing"
        bin_dir = directory / "bin"
        bin_dir.mkdir(parents=True)
        wrapper = bin_dir / "lvm"
        wrapper.write_text(f"""#!/bin/sh
if [ -e {self.missing_marker} ]; then echo "sh: 1: lvm: not found" >&2; exit 127; fi
exec {sys.executable} {FAKE} "$@"
""")
        wrapper.chmod(0o755)
        forced = directory / "session.sh"
        forced.write_text(f"""#!/bin/sh
PATH={bin_dir}:$PATH
FAKE_LVM_STATE={self.state_path}
FAKE_LVM_LOG={self.log_path}
export PATH FAKE_LVM_STATE FAKE_LVM_LOG
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
""")
        forced.chmod(0o755)
        # sshd reads authorized_keys at each log-in: every session now runs through session.sh
        (sshd.log_path.parent / "authorized_keys").write_text(
            f'command="{forced}" {sshd.client_key.public_line}\n')
        self.state: dict[str, Any] = {"vgs": {"vg0": {"size": 1024, "extent": 4, "lvs": {}}}}
        self.save()
        self.log_path.write_text("")
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(sshd.known_hosts_line + "\n")
        self.known_hosts = known_hosts
        self.settings: dict[str, Any] = {
            "qrm.ssh.known_hosts": str(known_hosts), "qrm.ssh.user": sshd.user,
            "qrm.ssh.key_file": str(sshd.client_key.private_path),
            "qrm.lvm.volume_group": "vg0", "qrm.lvm.export": "iscsi",
            "qrm.lvm.iscsi_config_dir": str(directory / "tgt"),
            "qrm.lvm.exports_dir": str(directory / "exports.d"),
            "qrm.lvm.export_root": str(directory / "srv")}
        self.pool = SshPool(MemoryHostKeyStore())
        self.driver = LvmStorageDriver(settings=self.settings, pool=self.pool)

    def storage(self, *, capacity_mb: int = 0, **settings: Any) -> StorageRef:
        return StorageRef(id=1, name="fake", storage_type="lvm-storage",
                          capacity_mb=capacity_mb,
                          settings={"ssh_host": "127.0.0.1", "ssh_port": self.sshd.port,
                                    **settings})

    def driver_config(self) -> Any:
        from plugins.lvm.config import config_for

        return config_for(self.settings, self.storage())

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.state))

    def load(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    def lv(self, name: str, size: float, *, origin: str | None = None,
           tags: tuple[str, ...] = ()) -> None:
        lv: dict[str, Any] = {"size": size, "attr": "swi-a-s---" if origin else "-wi-a-----",
                              "tags": list(tags)}
        if origin:
            lv["origin"] = origin
        self.state["vgs"]["vg0"]["lvs"][name] = lv
        self.save()

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def changes(self) -> list[list[str]]:
        """The calls that change something (not the reports)."""
        return [call for call in self.calls() if call[0] not in ("vgs", "lvs")]


@pytest.fixture
def fake(sshd: Sshd, tmp_path: pathlib.Path) -> Any:
    host = FakeHost(sshd, tmp_path / "fake-host")
    try:
        # lvm must never run on this machine: every session finds the fake first
        target = host.driver._target(host.storage(), host.driver_config())
        code, out, _err = host.pool.run(target, ["sh", "-c", "command -v lvm"], 30)
        assert (code, out.decode().strip()) == (0, str(host.directory / "bin" / "lvm"))
        yield host
    finally:
        host.pool.close()


REPORT = ["--reportformat", "json", "--units", "m", "--nosuffix", "-o"]


def test_create_sends_exact_commands_and_is_idempotent_by_name(fake):
    storage = fake.storage()

    device = fake.driver.create_volume(storage, name="qrm-img-1", size_mb=10)
    again = fake.driver.create_volume(storage, name="qrm-img-1", size_mb=10)

    assert device == again == "/dev/vg0/qrm-img-1"
    assert fake.calls() == [
        ["vgs", *REPORT, "vg_name,vg_size,vg_free,vg_extent_size", "vg0"],
        ["lvs", *REPORT, "lv_name,lv_size,origin,origin_size,lv_attr,lv_tags", "vg0"],
        # 10 MB round up to whole 4 MB extents
        ["lvcreate", "-y", "-n", "qrm-img-1", "-L", "12m", "vg0"],
        ["vgs", *REPORT, "vg_name,vg_size,vg_free,vg_extent_size", "vg0"],
        ["lvs", *REPORT, "lv_name,lv_size,origin,origin_size,lv_attr,lv_tags", "vg0"],
    ]
    [listed] = fake.driver.list_volumes(storage)
    assert (listed.name, listed.root_device, listed.size_mb, listed.origin) == (
        "qrm-img-1", device, 12, None)


def test_snapshot_and_copy_clones_are_tagged_with_their_origin(fake):
    fake.lv("golden", 100)
    storage = fake.storage()

    snapshot = fake.driver.clone_volume(storage, source_root_device="/dev/vg0/golden",
                                        name="qrm-img-2", size_mb=100)
    copy_storage = fake.storage(clone="copy", snapshot_percent=50)
    # the copy's dd cannot run on this machine's (missing) /dev/vg0: what was sent is the point
    with pytest.raises(DriverError, match="cannot copy golden into qrm-img-3"):
        fake.driver.clone_volume(copy_storage, source_root_device="/dev/vg0/golden",
                                 name="qrm-img-3", size_mb=150)

    assert snapshot == "/dev/vg0/qrm-img-2"
    changes = fake.changes()
    assert changes[0] == ["lvcreate", "-y", "-s", "-n", "qrm-img-2", "-L", "100m", "--addtag",
                          "qrm_clone", "vg0/golden"]
    assert changes[1] == ["lvcreate", "-y", "-n", "qrm-img-3", "-L", "152m", "--addtag",
                          "qrm_clone", "--addtag", "qrm_origin_golden", "--addtag",
                          "qrm_copying", "vg0"]
    # unfinished: the copy is made again by the next attempt, not taken as done
    lvs = {info.name: info for info in fake.driver.list_volumes(storage)}
    assert lvs["qrm-img-3"].origin == "/dev/vg0/golden"
    assert "qrm_copying" in fake.load()["vgs"]["vg0"]["lvs"]["qrm-img-3"]["tags"]


def test_a_full_volume_group_raises_a_capacity_error_naming_it(fake):
    storage = fake.storage()
    fake.lv("big", 1000)

    with pytest.raises(CapacityError, match=r"^storage fake: volume group vg0 has 24 MB free; "
                                            r"100 MB asked$"):
        fake.driver.create_volume(storage, name="qrm-img-1", size_mb=100)
    with pytest.raises(CapacityError, match="volume group vg0 has 24 MB free; 1000 MB asked"):
        fake.driver.clone_volume(storage, source_root_device="/dev/vg0/big", name="qrm-img-2",
                                 size_mb=10)
    assert fake.changes() == []  # refused before anything was made


def test_capacity_mb_limits_the_storage_below_its_volume_group(fake):
    storage = fake.storage(capacity_mb=100)
    fake.lv("used", 60)

    with pytest.raises(CapacityError, match="has 40 MB free of its 100 MB capacity; 48 MB"):
        fake.driver.create_volume(storage, name="qrm-img-1", size_mb=48)
    with pytest.raises(CapacityError, match="40 MB free of its 100 MB capacity; 60 MB"):
        fake.driver.resize_volume(storage, root_device="/dev/vg0/used", size_mb=120)


def test_a_group_filled_meanwhile_is_a_capacity_error_too(fake):
    fake.state["vgs"]["vg0"]["shown_free"] = 1024  # vgs says room; lvcreate finds none
    fake.lv("big", 1000)

    with pytest.raises(CapacityError, match=r"volume group vg0 is full: cannot create volume "
                                            r"qrm-img-1: .*insufficient free space"):
        fake.driver.create_volume(fake.storage(), name="qrm-img-1", size_mb=100)


def test_a_name_taken_by_another_volume_is_refused(fake):
    fake.lv("golden", 100)
    fake.lv("other", 100)
    fake.lv("qrm-img-2", 100, origin="golden", tags=("qrm_clone",))
    storage = fake.storage()

    assert fake.driver.clone_volume(storage, source_root_device="/dev/vg0/golden",
                                    name="qrm-img-2", size_mb=50) == "/dev/vg0/qrm-img-2"
    with pytest.raises(VolumeConflict, match="storage fake: vg0/qrm-img-2 exists already as a "
                                             "clone of golden, not a clone of other"):
        fake.driver.clone_volume(storage, source_root_device="/dev/vg0/other",
                                 name="qrm-img-2", size_mb=50)
    with pytest.raises(VolumeConflict, match="exists already as a clone of golden, not a "
                                             "volume"):
        fake.driver.create_volume(storage, name="qrm-img-2", size_mb=100)
    with pytest.raises(VolumeConflict, match="vg0/golden exists already with 100 MB, not 200"):
        fake.driver.create_volume(storage, name="golden", size_mb=200)
    with pytest.raises(VolumeConflict, match="exists already as a volume, not a snapshot of "
                                             "golden"):
        fake.driver.snapshot_volume(storage, source_root_device="/dev/vg0/golden",
                                    name="other")
    assert fake.changes() == []


def test_removal_is_idempotent_and_refused_while_snapshots_depend_on_it(fake):
    fake.lv("golden", 100)
    fake.lv("qrm-img-2", 100, origin="golden", tags=("qrm_clone",))
    storage = fake.storage()

    with pytest.raises(DriverError, match=r"still has the snapshot\(s\) qrm-img-2; remove them"):
        fake.driver.remove_volume(storage, root_device="/dev/vg0/golden")
    fake.driver.remove_volume(storage, root_device="/dev/vg0/qrm-img-2")
    fake.driver.remove_volume(storage, root_device="/dev/vg0/qrm-img-2")

    assert [call for call in fake.changes() if call[0] == "lvremove"] == [
        ["lvremove", "-f", "vg0/qrm-img-2"]]
    assert [info.name for info in fake.driver.list_volumes(storage)] == ["golden"]


def test_iscsi_definition_is_written_for_the_machine_and_revoked(fake):
    fake.lv("qrm-img-5", 64)
    storage = fake.storage()
    machine = MachineRef(id=3, mac="52:54:00:AB:cd:01", name="box", ip="192.0.2.7")
    path = fake.directory / "tgt" / "qrm-vg0@qrm-img-5.conf"

    fake.driver.authenticate(storage, root_device="/dev/vg0/qrm-img-5", machine=machine)
    fake.driver.authenticate(storage, root_device="/dev/vg0/qrm-img-5", machine=machine)

    assert path.read_text() == (
        "# written by QRM Cloud (lvm-storage, storage fake): volume vg0/qrm-img-5 for "
        "machine 3\n<target iqn.2026-12.cloud.qrm:vg0.qrm-img-5>\n"
        "    backing-store /dev/vg0/qrm-img-5\n"
        "    initiator-name iqn.2026-12.cloud.qrm:initiator.525400abcd01\n"
        "    initiator-address 192.0.2.7\n</target>\n")
    fake.driver.authenticate(storage, root_device="/dev/vg0/qrm-img-5", machine=None)
    fake.driver.authenticate(storage, root_device="/dev/vg0/qrm-img-5", machine=None)
    assert not path.exists()
    assert list((fake.directory / "tgt").iterdir()) == []


def test_an_nfs_export_names_its_client_by_address(fake):
    fake.lv("qrm-img-6", 64)
    storage = fake.storage(export="nfs")

    with pytest.raises(DriverError, match="machine 4 has no IP address yet"):
        fake.driver.authenticate(storage, root_device="/dev/vg0/qrm-img-6",
                                 machine=MachineRef(id=4, mac="52:54:00:00:00:04"))
    with pytest.raises(DriverError, match="no valid IP address"):
        fake.driver.authenticate(storage, root_device="/dev/vg0/qrm-img-6",
                                 machine=MachineRef(id=4, mac="52:54:00:00:00:04",
                                                    ip="10.0.0.1(rw) *"))
    assert not (fake.directory / "exports.d").exists()


@pytest.mark.parametrize("name", ["x; rm -rf /", "-n", "a b", "../etc", "", "a'b", "a/b"])
def test_bad_names_are_refused_before_anything_is_sent(fake, name):
    with pytest.raises(DriverError, match="is not a valid LVM name"):
        fake.driver.create_volume(fake.storage(), name=name, size_mb=10)
    assert fake.calls() == []


def test_root_devices_of_another_volume_group_are_refused(fake):
    with pytest.raises(DriverError, match=r"'/dev/vg1/a' is not a volume of its volume group "
                                          r"\(expected /dev/vg0/<name>\)"):
        fake.driver.remove_volume(fake.storage(), root_device="/dev/vg1/a")
    assert fake.calls() == []


def test_a_missing_volume_group_is_a_clear_error(fake):
    with pytest.raises(DriverError, match=r"storage fake \(.*\): volume group nosuch not found"):
        fake.driver.list_volumes(fake.storage(volume_group="nosuch"))


def test_lvm_not_installed_is_a_clear_error(fake):
    fake.missing_marker.write_text("")
    with pytest.raises(DriverError, match="lvm is not installed there"):
        fake.driver.list_volumes(fake.storage())


def test_the_storage_host_down_is_unreachable(fake, sshd):
    storage = fake.storage()
    fake.driver.list_volumes(storage)
    stop_sshd(sshd)
    fake.pool.close()

    with pytest.raises(HostUnreachable, match=r"storage fake \(.*\) does not answer"):
        fake.driver.list_volumes(storage)
    with pytest.raises(HostUnreachable):
        fake.driver.create_volume(storage, name="qrm-img-1", size_mb=10)


def test_a_changed_host_key_is_refused_not_unreachable(fake, tmp_path):
    impostor = make_key(tmp_path / "impostor")
    pinned = MemoryHostKeyStore()  # what the database would hold: another key for the host
    pinned.pin("127.0.0.1", fake.sshd.port, impostor.key_type, impostor.base64)
    pool = SshPool(pinned)
    driver = LvmStorageDriver(settings=fake.settings, pool=pool)
    calls_before = fake.calls()
    try:
        with pytest.raises(DriverError, match=r"host key of .* changed") as caught:
            driver.list_volumes(fake.storage())
    finally:
        pool.close()
    assert not isinstance(caught.value, HostUnreachable)
    assert fake.calls() == calls_before
