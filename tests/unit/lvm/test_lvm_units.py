"""The ``lvm-storage`` plugin without a storage host: its configuration, the export
definitions and boot parameters it derives, the decisions it takes from lvm's reports (with
a scripted SSH pool), and its life cycle in the engine."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from engine.commands.ssh import SshUnreachable
from engine.datacenter.models import DeploymentType
from engine.errors import DriverError
from engine.plugins.drivers import (
    HostUnreachable,
    MachineRef,
    StorageDriver,
    StorageRef,
    SupportsBootParameters,
)
from engine.plugins.manager import PluginService
from plugins.lvm import exports
from plugins.lvm.config import config_for
from plugins.lvm.driver import LogicalVolume, LvmStorageDriver, VolumeGroup

BASE = {"qrm.lvm.volume_group": "vg0"}


def ref(name: str = "store", **settings: Any) -> StorageRef:
    return StorageRef(id=1, name=name, storage_type="lvm-storage",
                      settings={"ssh_host": "192.0.2.10", **settings})


# -- configuration ---------------------------------------------------------------------------
def test_settings_are_looked_up_storage_first_then_by_name_then_plugin_wide():
    settings = {"qrm.lvm.volume_group": "all", "qrm.lvm.clone": "copy",
                "qrm.lvm.store.volume_group": "mine", "qrm.lvm.store.export": "iscsi"}

    config = config_for(settings, ref(export="nfs"))

    assert (config.volume_group, config.clone, config.export) == ("mine", "copy", "nfs")
    assert config_for(settings, ref("other")).volume_group == "all"
    assert config.ssh == {"ssh_host": "192.0.2.10"}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("volume_group", "", "no volume group configured"),
    ("volume_group", "-rf", "is not a valid LVM name"),
    ("clone", "thin", "clone mode 'thin' is not one of snapshot, copy"),
    ("export", "aoe", "export 'aoe' is not one of nfs, iscsi"),
    ("exports_dir", "/etc/../root", "not an absolute path of plain names"),
    ("export_root", "srv", "not an absolute path of plain names"),
    ("nfs_options", "rw) *(rw", "may hold only"),
    ("iqn_prefix", "qrm", "not of the form iqn.YYYY-MM"),
    ("server", "a b", "is not a host name or address"),
    ("snapshot_percent", "0", "snapshot_percent 0 is out of range"),
    ("command_timeout", "soon", "must be a whole number"),
])
def test_bad_settings_are_refused_with_what_is_wrong(key, value, message):
    with pytest.raises(DriverError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_for({**BASE, f"qrm.lvm.store.{key}": value}
                   if value else {f"qrm.lvm.store.{key}": value}, ref())


# -- what is written on the storage host ----------------------------------------------------
def test_the_nfs_export_line_admits_exactly_the_machine():
    config = config_for(BASE, ref())
    machine = MachineRef(id=9, mac="52:54:00:00:00:09", ip="10.1.2.3")

    assert exports.nfs_file(config, "qrm-img-4") == "/etc/exports.d/qrm-vg0@qrm-img-4.exports"
    assert exports.nfs_line(config, "qrm-img-4", machine) == (
        "/srv/qrm/vg0/qrm-img-4 10.1.2.3(rw,sync,no_root_squash,no_subtree_check)\n")


def test_the_iscsi_definition_admits_the_machine_by_initiator_name_and_address():
    config = config_for({**BASE, "qrm.lvm.iqn_prefix": "iqn.2030-01.org.example"}, ref())
    machine = MachineRef(id=9, mac="52-54-00-AA-00-09", ip=None)

    definition = exports.iscsi_definition(config, "qrm-img-4", machine)

    assert "<target iqn.2030-01.org.example:vg0.qrm-img-4>" in definition
    assert "    initiator-name iqn.2030-01.org.example:initiator.525400aa0009\n" in definition
    assert "initiator-address" not in definition
    with pytest.raises(DriverError, match="cannot be part of an iSCSI name"):
        exports.target_iqn(config, "Golden_Image")
    with pytest.raises(DriverError, match="is not a MAC address"):
        exports.initiator_iqn(config, "52:54:00")


def test_the_remote_scripts_take_their_values_as_parameters_only():
    for script in (exports.WRITE_FILE, exports.READ_FILE, exports.MOUNT, exports.UMOUNT,
                   exports.RELOAD_NFS, exports.RELOAD_ISCSI):
        assert "{" not in script  # nothing is formatted into them
        assert "'" not in script


# -- boot parameters ------------------------------------------------------------------------
def test_boot_parameters_follow_the_deployment_type():
    driver = LvmStorageDriver(settings={**BASE, "qrm.lvm.store.server": "10.0.0.5"})

    assert driver.boot_parameters(ref(), root_device="/dev/vg0/qrm-img-3", root_fs_type="ext4",
                                  deployment_type="lvm-nfs") == {
        "root": "nfs", "nfsroot": "10.0.0.5:/srv/qrm/vg0/qrm-img-3"}
    iscsi = driver.boot_parameters(ref(export="iscsi"), root_device="/dev/vg0/qrm-img-3",
                                   root_fs_type="xfs", deployment_type="lvm-iscsi")
    assert iscsi == {"root": "iscsi", "iscsi_target": "iqn.2026-12.cloud.qrm:vg0.qrm-img-3",
                     "iscsi_portal": "10.0.0.5:3260", "iscsi_lun": "1",
                     "iscsi_initiator": "iqn.2026-12.cloud.qrm:initiator", "rootfstype": "xfs"}
    for value in iscsi.values():
        assert " " not in value
        assert '"' not in value


def test_boot_parameters_refuse_a_deployment_type_the_storage_does_not_export():
    driver = LvmStorageDriver(settings=BASE)
    with pytest.raises(DriverError, match="exports by nfs; an image of deployment type "
                                          "lvm-iscsi needs iscsi"):
        driver.boot_parameters(ref(), root_device="/dev/vg0/a", root_fs_type="ext4",
                               deployment_type="lvm-iscsi")
    with pytest.raises(DriverError, match="deployment type 'sim-deployment' is not one of"):
        driver.boot_parameters(ref(), root_device="/dev/vg0/a", root_fs_type="ext4",
                               deployment_type="sim-deployment")


def test_the_server_defaults_to_the_ssh_host_and_is_required():
    driver = LvmStorageDriver(settings=BASE)
    assert driver.boot_parameters(ref(), root_device="/dev/vg0/a", root_fs_type="ext4",
                                  deployment_type="lvm-nfs")["nfsroot"] == (
        "192.0.2.10:/srv/qrm/vg0/a")
    bare = StorageRef(id=2, name="bare", storage_type="lvm-storage")
    with pytest.raises(DriverError, match="set its server address"):
        driver.boot_parameters(bare, root_device="/dev/vg0/a", root_fs_type="ext4",
                               deployment_type="lvm-nfs")


# -- decisions from lvm's reports (a scripted pool) ----------------------------------------
class ScriptedPool:
    """Answers ``vgs``/``lvs`` from a fixed report and records everything else."""

    def __init__(self, lvs: list[dict[str, str]], *, free: int = 4000,
                 fail: Exception | None = None) -> None:
        self.lvs, self.free, self.fail = lvs, free, fail
        self.sent: list[list[str]] = []

    def run(self, target: Any, argv: list[str], timeout: float,
            input: Any = None) -> tuple[int, bytes, bytes]:
        if self.fail is not None:
            raise self.fail
        if argv[:2] == ["lvm", "vgs"]:
            rows = [{"vg_name": "vg0", "vg_size": "8000.00", "vg_free": f"{self.free}.00",
                     "vg_extent_size": "4.00"}]
            return 0, json.dumps({"report": [{"vg": rows}]}).encode(), b""
        if argv[:2] == ["lvm", "lvs"]:
            return 0, json.dumps({"report": [{"lv": self.lvs}]}).encode(), b""
        self.sent.append(list(argv))
        return 0, b"", b""


def lv_row(name: str, size: int, *, origin: str = "", attr: str = "-wi-a-----",
           tags: str = "", origin_size: str = "") -> dict[str, str]:
    return {"lv_name": name, "lv_size": f"{size}.00", "origin": origin,
            "origin_size": origin_size, "lv_attr": attr, "lv_tags": tags}


def scripted(pool: ScriptedPool, **settings: str) -> LvmStorageDriver:
    return LvmStorageDriver(settings={**BASE, **settings}, pool=pool)


def test_a_snapshot_clone_reserves_its_origin_times_the_snapshot_percentage():
    pool = ScriptedPool([lv_row("golden", 1000)])
    scripted(pool, **{"qrm.lvm.snapshot_percent": "25"}).clone_volume(
        ref(), source_root_device="/dev/vg0/golden", name="qrm-img-2", size_mb=1000)

    assert pool.sent == [["lvm", "lvcreate", "-y", "-s", "-n", "qrm-img-2", "-L", "252m",
                          "--addtag", "qrm_clone", "vg0/golden"]]


def test_a_clone_larger_than_its_origin_is_a_copy_even_in_snapshot_mode():
    pool = ScriptedPool([lv_row("golden", 100)])
    scripted(pool).clone_volume(ref(), source_root_device="/dev/vg0/golden",
                                name="qrm-img-2", size_mb=200)

    assert pool.sent[0] == ["lvm", "lvcreate", "-y", "-n", "qrm-img-2", "-L", "200m",
                            "--addtag", "qrm_clone", "--addtag", "qrm_origin_golden",
                            "--addtag", "qrm_copying", "vg0"]
    assert pool.sent[1] == ["dd", "if=/dev/vg0/golden", "of=/dev/vg0/qrm-img-2", "bs=1M",
                            "conv=fsync"]
    assert pool.sent[2] == ["lvm", "lvchange", "--deltag", "qrm_copying", "vg0/qrm-img-2"]


def test_an_unfinished_copy_is_copied_again_and_a_finished_one_left_alone():
    unfinished = ScriptedPool([lv_row("golden", 100), lv_row(
        "qrm-img-2", 100, tags="qrm_clone,qrm_origin_golden,qrm_copying")])
    scripted(unfinished).clone_volume(ref(), source_root_device="/dev/vg0/golden",
                                      name="qrm-img-2", size_mb=100)
    assert [argv[0] for argv in unfinished.sent] == ["dd", "lvm"]

    finished = ScriptedPool([lv_row("golden", 100), lv_row(
        "qrm-img-2", 100, tags="qrm_clone,qrm_origin_golden")])
    scripted(finished).clone_volume(ref(), source_root_device="/dev/vg0/golden",
                                    name="qrm-img-2", size_mb=100)
    assert finished.sent == []


def test_an_inactive_volume_is_activated_before_it_is_exported():
    pool = ScriptedPool([lv_row("qrm-img-2", 100, attr="-wi-------")])
    scripted(pool, **{"qrm.lvm.export": "iscsi"}).authenticate(
        ref(), root_device="/dev/vg0/qrm-img-2",
        machine=MachineRef(id=1, mac="52:54:00:00:00:01"))

    assert ["lvm", "lvchange", "-ay", "-y", "vg0/qrm-img-2"] in pool.sent
    [write] = [argv for argv in pool.sent if argv[:2] == ["sh", "-c"]
               and argv[2] == exports.WRITE_FILE]
    assert write[3:] == ["sh", "/etc/tgt/conf.d/qrm-vg0@qrm-img-2.conf"]


def test_growing_a_snapshot_clone_past_its_origin_is_refused():
    pool = ScriptedPool([lv_row("golden", 100), lv_row(
        "qrm-img-2", 100, origin="golden", attr="swi-a-s---", tags="qrm_clone",
        origin_size="100.00")])
    with pytest.raises(DriverError, match="snapshot clone of golden and shows its 100 MB"):
        scripted(pool).resize_volume(ref(), root_device="/dev/vg0/qrm-img-2", size_mb=200)
    scripted(pool).resize_volume(ref(), root_device="/dev/vg0/qrm-img-2", size_mb=100)
    assert pool.sent == []


def test_no_connection_is_host_unreachable():
    pool = ScriptedPool([], fail=SshUnreachable("cannot reach 192.0.2.10: connection refused"))
    with pytest.raises(HostUnreachable, match=r"storage store \(root@192.0.2.10\) does not "
                                              r"answer: cannot reach"):
        scripted(pool).list_volumes(ref())


def test_lvs_rows_become_volumes_with_their_origins():
    snapshot = LogicalVolume(name="s", lv_size_mb=10, attr="swi-a-s---", snapshot_of="g",
                             origin_size_mb=100)
    copy = LogicalVolume(name="c", lv_size_mb=100, attr="-wi-a-----",
                         tags=("qrm_clone", "qrm_origin_g"))
    plain = LogicalVolume(name="g", lv_size_mb=100, attr="-wi-a-----")
    assert [(lv.kind, lv.origin, lv.size_mb) for lv in (snapshot, copy, plain)] == [
        ("snapshot", "g", 100), ("clone", "g", 100), ("volume", None, 100)]
    assert VolumeGroup("vg", 100, 50, 4.0).rounded(10) == 12
    assert VolumeGroup("vg", 100, 50, 4.0).rounded(12) == 12


def test_the_driver_implements_the_protocols():
    driver = LvmStorageDriver(settings=BASE)
    assert isinstance(driver, StorageDriver)
    assert isinstance(driver, SupportsBootParameters)


# -- in the engine ---------------------------------------------------------------------------
def test_enable_registers_the_deployment_types_and_start_serves_the_driver(pyramid_request,
                                                                          admin_actor):
    plugins = pyramid_request.find_service(PluginService)
    listed = {plugin["name"]: plugin for plugin in plugins.list()}
    assert listed["lvm-storage"]["type"] == "storage"

    plugins.act("lvm-storage", "enable", actor=admin_actor)
    plugins.act("lvm-storage", "start", actor=admin_actor)

    types = {dtype.name: dtype.storage_type for dtype in pyramid_request.dbsession.scalars(
        select(DeploymentType).where(DeploymentType.plugin == "lvm-storage"))}
    assert types == {"lvm-nfs": "lvm-storage", "lvm-iscsi": "lvm-storage"}
    assert isinstance(plugins.storage_driver("lvm-storage"), LvmStorageDriver)

    plugins.act("lvm-storage", "stop", actor=admin_actor)
    plugins.act("lvm-storage", "disable", actor=admin_actor)
    assert list(pyramid_request.dbsession.scalars(
        select(DeploymentType).where(DeploymentType.plugin == "lvm-storage"))) == []
