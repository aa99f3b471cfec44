"""The settings of an LVM storage kept in the database (``plugins.lvm.settings``): checked
before anything is written (a bad one names its field), and read by the driver in a
transaction of its own into ``StorageRef.settings`` (before the ini settings)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from engine.datacenter.refs import storage_ref
from engine.datacenter.services import DatacenterService
from engine.errors import ValidationError
from engine.events.models import Event
from engine.security import Actor
from plugins.lvm.driver import LvmStorageDriver
from plugins.lvm.models import LvmStorage
from plugins.lvm.settings import configure_storage
from tests.conftest import commit


def add_storage(request: Any, actor: Actor, name: str = "lvm-1") -> Any:
    return request.find_service(DatacenterService).add_storage(
        name, storage_type="lvm-storage", actor=actor)


def test_the_settings_are_kept_and_logged(pyramid_request, admin_actor):
    storage = add_storage(pyramid_request, admin_actor)
    row = configure_storage(pyramid_request, storage, actor=admin_actor,
                            volume_group="vg-data", clone="COPY", export="iscsi",
                            server=" 10.0.0.5 ")
    assert (row.volume_group, row.clone, row.export, row.server) == (
        "vg-data", "copy", "iscsi", "10.0.0.5")
    (event,) = pyramid_request.dbsession.scalars(select(Event).where(
        Event.name == "lvm.storage_configured"))
    assert event.actor == admin_actor.label
    assert "volume group vg-data" in event.message

    configure_storage(pyramid_request, storage, actor=admin_actor, volume_group="vg1")
    assert (row.volume_group, row.clone, row.export, row.server) == (
        "vg1", "snapshot", "nfs", None)


@pytest.mark.parametrize(("values", "field"), [
    ({"volume_group": "-vg"}, "volume_group"),
    ({"volume_group": "vg 0"}, "volume_group"),
    ({"volume_group": ""}, "volume_group"),
    ({"volume_group": "vg_0", "export": "iscsi"}, "volume_group"),
    ({"volume_group": "vg0", "clone": "mirror"}, "clone"),
    ({"volume_group": "vg0", "export": "smb"}, "export"),
    ({"volume_group": "vg0", "server": "a b"}, "server"),
])
def test_a_bad_value_names_its_field_and_changes_nothing(pyramid_request, admin_actor, values,
                                                         field):
    storage = add_storage(pyramid_request, admin_actor)
    configure_storage(pyramid_request, storage, actor=admin_actor, volume_group="vg_old")
    with pytest.raises(ValidationError) as raised:
        configure_storage(pyramid_request, storage, actor=admin_actor, **values)
    assert raised.value.field == field
    row = pyramid_request.dbsession.get(LvmStorage, storage.id)
    assert (row.volume_group, row.clone, row.export) == ("vg_old", "snapshot", "nfs")


def test_the_driver_reads_the_row_before_the_ini(pyramid_request, admin_actor):
    storage = add_storage(pyramid_request, admin_actor, name="store")
    configure_storage(pyramid_request, storage, actor=admin_actor, volume_group="vg-db",
                      export="iscsi", server="10.0.0.9")
    commit(pyramid_request)
    driver = LvmStorageDriver(pyramid_request)
    driver.settings = {"qrm.lvm.volume_group": "vg_ini", "qrm.lvm.store.export": "nfs"}

    ref = driver.with_row(storage_ref(storage))
    assert dict(ref.settings) == {"volume_group": "vg-db", "clone": "snapshot",
                                  "export": "iscsi", "server": "10.0.0.9"}
    assert driver.boot_parameters(storage_ref(storage), root_device="/dev/vg-db/a",
                                  root_fs_type="ext4", deployment_type="lvm-iscsi")[
        "iscsi_portal"] == "10.0.0.9:3260"


def test_a_storage_without_a_row_keeps_the_ini(pyramid_request, admin_actor):
    storage = add_storage(pyramid_request, admin_actor, name="store")
    commit(pyramid_request)
    driver = LvmStorageDriver(pyramid_request)
    driver.settings = {"qrm.lvm.volume_group": "vg_ini", "qrm.lvm.store.server": "10.0.0.2"}
    assert driver.with_row(storage_ref(storage)) == storage_ref(storage)
    assert driver.boot_parameters(storage_ref(storage), root_device="/dev/vg_ini/a",
                                  root_fs_type="ext4", deployment_type="lvm-nfs") == {
        "root": "nfs", "nfsroot": "10.0.0.2:/srv/qrm/vg_ini/a"}
