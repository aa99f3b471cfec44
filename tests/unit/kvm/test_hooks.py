"""The kvm plugin inside the engine: its types, its ``kvm_host`` rows, settings read from
them in transactions of their own, and the engine's recorded calls made by its drivers
(VMs on libvirt's test driver, volumes by qemu-img with the local executor)."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import pytest
from sqlalchemy import select

from engine.datacenter import calls as outside
from engine.datacenter.models import (
    CallState,
    DeploymentType,
    DriverCall,
    Image,
    Resource,
    ResourceState,
    VirtualizationKind,
    VirtualizationType,
)
from engine.datacenter.refs import host_ref, storage_ref, vm_name
from engine.datacenter.services import DatacenterService
from engine.errors import ValidationError
from engine.plugins.manager import PluginService
from engine.security import Actor
from plugins.kvm.drivers import KvmDriver
from plugins.kvm.hosts import configure_host
from plugins.kvm.models import KvmHost
from plugins.kvm.qcow2 import Qcow2StorageDriver
from plugins.kvm.settings import host_settings, storage_settings
from tests.conftest import commit
from tests.unit.kvm.conftest import new_mac, write_node


@pytest.fixture
def kvm(pyramid_request: Any, admin_actor: Actor) -> Any:
    """The request, with the ``kvm`` plugin enabled and started."""
    plugins = pyramid_request.find_service(PluginService)
    plugins.act("kvm", "enable", actor=admin_actor)
    plugins.act("kvm", "start", actor=admin_actor)
    return pyramid_request


def add_host(request: Any, actor: Actor, **fields: Any) -> Resource:
    return request.find_service(DatacenterService).add_resource(
        mac=new_mac(), kind=VirtualizationKind.HOST, virtualization_type="kvm", actor=actor,
        name=fields.pop("name", "kvm-host"), state=ResourceState.ACTIVE, **fields)


def test_enabling_registers_the_host_vm_and_deployment_types(kvm):
    db = kvm.dbsession
    vm_type = db.scalar(select(VirtualizationType).where(VirtualizationType.name == "kvm-vm"))
    assert (vm_type.kind, vm_type.host_type.name, vm_type.plugin) == (
        VirtualizationKind.VM, "kvm", "kvm")
    deployment = db.scalar(select(DeploymentType).where(DeploymentType.name == "qcow2"))
    assert deployment.storage_type == "qcow2"


def test_disabling_removes_the_types(kvm, admin_actor):
    kvm.find_service(PluginService).act("kvm", "stop", actor=admin_actor)
    kvm.find_service(PluginService).act("kvm", "disable", actor=admin_actor)
    assert kvm.dbsession.scalar(select(VirtualizationType).where(
        VirtualizationType.plugin == "kvm")) is None


def test_a_host_added_gets_a_default_uri(kvm, admin_actor):
    local = add_host(kvm, admin_actor, name="here")
    remote = add_host(kvm, admin_actor, name="there", ip="192.0.2.10")

    assert kvm.dbsession.get(KvmHost, local.id).uri == "qemu:///system"
    assert kvm.dbsession.get(KvmHost, remote.id).uri == "qemu+ssh://root@192.0.2.10/system"
    assert kvm.dbsession.get(KvmHost, remote.id).domain_type == "kvm"


def test_configure_host_checks_and_sets_the_settings(kvm, admin_actor):
    host = add_host(kvm, admin_actor)
    row = configure_host(kvm, host, actor=admin_actor, uri="qemu:///system",
                         domain_type="qemu", image_dir="/srv/qcow2/")
    assert (row.uri, row.domain_type, row.image_dir) == ("qemu:///system", "qemu", "/srv/qcow2")
    for wrong in ({"uri": "not a uri"}, {"domain_type": "xen"}, {"image_dir": "relative"}):
        with pytest.raises(ValidationError):
            configure_host(kvm, host, actor=admin_actor, **wrong)


def test_removing_the_host_removes_its_row(kvm, admin_actor):
    host = add_host(kvm, admin_actor)
    kvm.find_service(DatacenterService).remove_resource(host, actor=admin_actor)
    kvm.dbsession.flush()
    assert kvm.dbsession.scalar(select(KvmHost)) is None


def test_drivers_read_the_settings_from_the_rows_in_a_transaction_of_their_own(
        kvm, admin_actor):
    host = add_host(kvm, admin_actor, ip="192.0.2.11")
    configure_host(kvm, host, actor=admin_actor, domain_type="qemu", image_dir="/srv/qcow2")
    datacenter = kvm.find_service(DatacenterService)
    storage = datacenter.add_storage("disks", storage_type="qcow2", actor=admin_actor,
                                     resource=host)
    commit(kvm)
    host = kvm.dbsession.get(Resource, host.id)

    settings = host_settings(kvm.registry, host_ref(host))
    assert (settings.uri, settings.domain_type, settings.local) == (
        "qemu+ssh://root@192.0.2.11/system", "qemu", False)
    place = storage_settings(kvm.registry, storage_ref(kvm.dbsession.merge(storage)))
    assert (place.directory, place.executor, place.ssh.host, place.ssh.user) == (
        "/srv/qcow2", "ssh", "192.0.2.11", "root")


def test_a_storage_on_a_local_host_runs_its_commands_locally(kvm, admin_actor):
    host = add_host(kvm, admin_actor)
    storage = kvm.find_service(DatacenterService).add_storage(
        "disks", storage_type="qcow2", actor=admin_actor, resource=host)
    commit(kvm)
    place = storage_settings(kvm.registry, storage_ref(kvm.dbsession.merge(storage)))
    assert (place.executor, place.ssh, place.uri) == ("local", None, "qemu:///system")


# -- the engine's calls, made by the plugin's drivers ---------------------------------------
@pytest.fixture
def test_host(kvm: Any, admin_actor: Actor, tmp_path: pathlib.Path) -> Resource:
    """A KVM host on libvirt's test driver with 4 CPUs and 4 GB, volumes in tmp_path."""
    host = add_host(kvm, admin_actor, cpus=4, memory_mb=4096)
    configure_host(kvm, host, actor=admin_actor, domain_type="test",
                   uri=write_node(tmp_path / "node.xml", cpus=4, memory_mb=4096),
                   image_dir=str(tmp_path / "volumes"))
    return host


def make_calls(request: Any) -> None:
    commit(request)
    outside.run_calls(request.registry, None)
    request.dbsession.expire_all()


def test_recorded_calls_make_the_vm_and_its_disk(kvm, admin_actor, test_host, tmp_path,
                                                 qemu_img):
    datacenter = kvm.find_service(DatacenterService)
    storage = datacenter.add_storage("disks", storage_type="qcow2", actor=admin_actor,
                                     resource=test_host)
    golden = tmp_path / "volumes" / "golden.qcow2"
    golden.parent.mkdir()
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(golden), "32M"], check=True)
    master = datacenter.add_image("golden", storage=storage, deployment_type="qcow2",
                                  root_device=str(golden), size_mb=32, actor=admin_actor)
    vm_type = datacenter.virtualization_type("kvm-vm")

    vm = datacenter.create_vm(vm_type, name="web", cpus=2, memory_mb=1024, nics=1,
                              disk_mb=64, actor=admin_actor)
    clone = datacenter.clone_image(master, name="web-golden", size_mb=64, actor=admin_actor)
    make_calls(kvm)

    calls = kvm.dbsession.scalars(select(DriverCall).order_by(DriverCall.id)).all()
    assert [(call.operation, call.state) for call in calls] == [
        ("create_vm", CallState.DONE), ("clone_volume", CallState.DONE)]
    clone = kvm.dbsession.get(Image, clone.id)
    assert clone.root_device == str(tmp_path / "volumes" / f"qrm-img-{clone.id}.qcow2")
    vm = kvm.dbsession.get(Resource, vm.id)
    host = kvm.dbsession.get(Resource, test_host.id)
    driver = KvmDriver(kvm)
    [listed] = driver.list_vms(host_ref(host))
    assert (listed.name, listed.state, listed.macs, listed.cpus) == (
        vm_name(vm.id), "running", (vm.mac,), 2)

    datacenter.authorize_storage(clone, vm, actor=admin_actor)
    datacenter.reboot(vm, actor=admin_actor)
    make_calls(kvm)
    assert driver.disk_users(host_ref(host), clone.root_device) == [vm_name(vm.id)]

    clone = kvm.dbsession.get(Image, clone.id)
    datacenter.remove_image(clone, actor=admin_actor)
    datacenter.remove_vm(kvm.dbsession.get(Resource, vm.id), actor=admin_actor)
    make_calls(kvm)
    assert driver.list_vms(host_ref(host)) == []
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == ["golden.qcow2"]
    assert kvm.dbsession.get(Resource, vm.id) is None
    assert kvm.dbsession.get(Image, clone.id) is None
    volumes = Qcow2StorageDriver(kvm).list_volumes(storage_ref(kvm.dbsession.merge(storage)))
    assert [volume.name for volume in volumes] == ["golden"]


def test_the_settings_refusals_speak_german_too(kvm, admin_actor, registry):
    from engine.i18n import translate_error
    from tests.conftest import new_request

    host = add_host(kvm, admin_actor)
    with pytest.raises(ValidationError) as refused:
        configure_host(kvm, host, actor=admin_actor, domain_type="xen")
    with new_request(registry) as request:
        request.locale_name = "de"
        assert translate_error(request, refused.value) == (
            "domain_type muss einer dieser Werte sein: kvm, qemu, test")
