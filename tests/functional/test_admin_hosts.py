"""The console's host pages: KVM hosts and storage hosts added through their forms (bad
input named in the form's words, nothing added), their capacity, VMs, volumes and golden
images, and the host key confirmation against a real sshd."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from sqlalchemy import select

from engine.commands.models import SshHostKey
from engine.datacenter.models import Resource, ResourceState, Storage, VirtualizationKind
from engine.datacenter.services import DatacenterService
from engine.events.models import Event
from engine.plugins.manager import PluginService
from engine.security import Actor
from plugins.kvm.drivers import POOL, KvmDriver
from plugins.kvm.models import KvmHost
from plugins.lvm.models import LvmStorage
from tests.conftest import commit
from tests.functional.test_admin_support import admin_login, cloud_user_login, text_of
from tests.integration.conftest import free_port, sshd  # noqa: F401 - the real sshd
from tests.unit.kvm.conftest import new_mac, spec, write_node

ADMIN = Actor.admin("admin")


@pytest.fixture
def plugins_on(demo_cloud: Any, pyramid_request: Any) -> Any:
    plugins = pyramid_request.find_service(PluginService)
    for name in ("kvm", "lvm-storage"):
        plugins.act(name, "enable", actor=ADMIN)
        plugins.act(name, "start", actor=ADMIN)
    commit(pyramid_request)
    yield pyramid_request
    POOL.close()


@pytest.fixture
def admin(testapp: Any, plugins_on: Any) -> Any:
    admin_login(testapp)
    return testapp


def kvm_form(page: Any, **values: str) -> Any:
    form = page.forms["add-kvm-host"]
    defaults = {"name": "kvm-1", "mac": new_mac(), "cpus": "4", "memory_mb": "8192",
                "domain_type": "qemu"}
    for key, value in {**defaults, **values}.items():
        _set(form, key, value)
    return form


def storage_form(page: Any, **values: str) -> Any:
    form = page.forms["add-storage-host"]
    defaults = {"name": "lvm-1", "storage_type": "lvm-storage", "volume_group": "vg0",
                "clone": "snapshot", "export": "nfs"}
    for key, value in {**defaults, **values}.items():
        _set(form, key, value)
    return form


def _set(form: Any, key: str, value: str) -> None:
    try:
        form[key] = value
    except ValueError:  # not one of a select's options: what a forged form would send
        form[key].force_value(value)


def events(request: Any, name: str) -> list[Event]:
    request.dbsession.expire_all()
    return list(request.dbsession.scalars(select(Event).where(Event.name == name)))


# -- KVM hosts ---------------------------------------------------------------------------------
def test_an_admin_adds_a_kvm_host_and_sees_its_capacity_and_vms(admin, plugins_on,
                                                                 tmp_path: pathlib.Path):
    uri = write_node(tmp_path / "node.xml", cpus=8, memory_mb=16384)
    page = kvm_form(admin.get("/admin/hosts"), name="kvm-a", ip="192.0.2.20", uri=uri,
                    ssh_host="kvm-a.example", ssh_port="2222", ssh_user="qrm").submit()
    assert page.status_int == 303
    detail = page.follow()
    assert "KVM host kvm-a added" in detail.html.find(class_="flash info").get_text()

    request = plugins_on
    request.dbsession.expire_all()
    host = request.dbsession.scalar(select(Resource).where(Resource.name == "kvm-a"))
    assert (host.kind, host.virtualization_type.name, host.ip, host.state) == (
        VirtualizationKind.HOST, "kvm", "192.0.2.20", ResourceState.UNKNOWN)
    assert (host.ssh_host, host.ssh_port, host.ssh_user) == ("kvm-a.example", 2222, "qrm")
    row = request.dbsession.get(KvmHost, host.id)
    assert (row.uri, row.domain_type) == (uri, "qemu")
    (added,) = [e for e in events(request, "resource.added") if e.object_id == host.id]
    assert added.actor == ADMIN.label
    assert events(request, "kvm.host_configured")[-1].actor == ADMIN.label

    # libvirt's own figures, and its domains
    KvmDriver().create_vm(_ref(host, uri), spec("qrm-vm-77", cpus=2, memory_mb=1024))
    detail = admin.get(f"/admin/hosts/kvm/{host.id}")
    assert "8 CPUs" in text_of(detail, "host-live-capacity")
    assert "2 CPUs" in text_of(detail, "host-live-capacity")
    assert detail.html.find("tr", attrs={"data-domain": "qrm-vm-77"}) is not None
    assert text_of(detail, "host-uri") == uri
    assert "not confirmed" in text_of(detail, "host-key-state")

    listing = admin.get("/admin/hosts")
    assert listing.html.find("tr", attrs={"data-host": str(host.id)}) is not None


def _ref(host: Resource, uri: str) -> Any:
    from engine.plugins.drivers import HostRef

    return HostRef(id=host.id, name=host.label, mac=host.mac,
                   settings={"uri": uri, "domain_type": "test"})


def test_an_empty_uri_follows_the_ssh_target(admin, plugins_on):
    kvm_form(admin.get("/admin/hosts"), name="kvm-r", ip="192.0.2.30", ssh_host="kvm-r.lan",
             ssh_port="2200", ssh_user="virt").submit(status=303)
    plugins_on.dbsession.expire_all()
    host = plugins_on.dbsession.scalar(select(Resource).where(Resource.name == "kvm-r"))
    assert plugins_on.dbsession.get(KvmHost, host.id).uri == (
        "qemu+ssh://virt@kvm-r.lan:2200/system")


def test_a_kvm_host_whose_libvirt_does_not_answer_says_so(admin, plugins_on, tmp_path):
    page = kvm_form(admin.get("/admin/hosts"), name="gone",
                    uri=f"test://{tmp_path / 'missing.xml'}").submit().follow()
    assert "does not answer" in text_of(page, "libvirt-error")


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"mac": "not-a-mac"}, "mac", "The MAC address is not valid"),
    ({"cpus": "four"}, "cpus", "CPUs must be a whole number"),
    ({"memory_mb": "-1"}, "memory_mb", "Memory must be a whole number"),
    ({"ip": "300.1.1.1"}, "ip", "The IP address is not a valid"),
    ({"uri": "http://x/"}, "uri", "The libvirt URI must start with"),
    ({"domain_type": "xen"}, "domain_type", "The domain type must be kvm or qemu"),
    ({"ssh_port": "70000"}, "ssh_port", "The SSH port must be a number"),
    ({"name": ""}, "name", "Give the host a name"),
])
def test_bad_kvm_host_input_is_named_in_the_forms_words_and_adds_nothing(
        admin, plugins_on, values, field, words):
    page = kvm_form(admin.get("/admin/hosts"), **values).submit(status=400)
    assert words in text_of(page, f"error-kvm-{field}")
    if field != "domain_type":
        assert page.html.find(id=f"kvm-{field}")["aria-invalid"] == "true"
    plugins_on.dbsession.expire_all()
    assert plugins_on.dbsession.scalar(select(KvmHost)) is None
    assert plugins_on.dbsession.scalar(select(Resource).where(
        Resource.kind == VirtualizationKind.HOST, Resource.name == "kvm-1")) is None


def test_without_the_kvm_plugin_the_form_says_so(testapp, demo_cloud):
    admin_login(testapp)
    page = kvm_form(testapp.get("/admin/hosts")).submit(status=400)
    assert "The kvm plugin is not enabled" in text_of(page, "error-kvm")


# -- storage hosts -------------------------------------------------------------------------
def test_an_admin_adds_an_lvm_storage_host_with_its_settings(admin, plugins_on):
    port = free_port()  # nobody answers there
    page = storage_form(admin.get("/admin/hosts"), name="lvm-a", ssh_host="127.0.0.1",
                        ssh_port=str(port), volume_group="vg-data", clone="copy",
                        export="iscsi", server="10.0.0.5", capacity_mb="20000").submit()
    assert page.status_int == 303
    detail = page.follow()
    request = plugins_on
    request.dbsession.expire_all()
    storage = request.dbsession.scalar(select(Storage).where(Storage.name == "lvm-a"))
    assert (storage.storage_type, storage.ssh_host, storage.ssh_port, storage.capacity_mb) == (
        "lvm-storage", "127.0.0.1", port, 20000)
    row = request.dbsession.get(LvmStorage, storage.id)
    assert (row.volume_group, row.clone, row.export, row.server) == (
        "vg-data", "copy", "iscsi", "10.0.0.5")
    assert events(request, "lvm.storage_configured")[-1].actor == ADMIN.label
    assert events(request, "storage.added")[-1].actor == ADMIN.label

    assert text_of(detail, "storage-vg") == "vg-data"
    assert "does not answer" in text_of(detail, "volume-error")
    assert f"cannot reach [127.0.0.1]:{port}" in text_of(detail, "volume-error")
    assert "No golden images" in detail.text

    # a golden image on it is listed
    datacenter = request.find_service(DatacenterService)
    datacenter.add_image("debian-golden", storage=storage, deployment_type="lvm-iscsi",
                         root_device="/dev/vg-data/debian", actor=ADMIN, size_mb=4096)
    commit(request)
    detail = admin.get(f"/admin/hosts/storage/{storage.id}")
    assert "debian-golden" in text_of(detail, "golden")


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"volume_group": "-vg"}, "volume_group", "The volume group is not a valid LVM name"),
    ({"volume_group": "VG_0", "export": "iscsi"}, "volume_group",
     "The volume group is not a valid LVM name"),
    ({"clone": "mirror"}, "clone", "The clone mode must be snapshot or copy"),
    ({"export": "smb"}, "export", "The export must be nfs or iscsi"),
    ({"server": "a b"}, "server", "The server is not a host name"),
    ({"name": "bad name"}, "name", "not valid"),
    ({"storage_type": "qcow2"}, "host", "A qcow2 storage lives on a KVM host"),
    ({"capacity_mb": "lots"}, "capacity_mb", "Capacity must be a whole number"),
])
def test_bad_storage_input_is_named_in_the_forms_words_and_adds_nothing(
        admin, plugins_on, values, field, words):
    page = storage_form(admin.get("/admin/hosts"), **values).submit(status=400)
    assert words in text_of(page, f"error-storage-{field}")
    plugins_on.dbsession.expire_all()
    assert plugins_on.dbsession.scalar(select(Storage).where(
        Storage.name.in_(("lvm-1", "bad name")))) is None
    assert plugins_on.dbsession.scalar(select(LvmStorage)) is None


def test_a_qcow2_storage_on_a_kvm_host_lists_its_files(admin, plugins_on, tmp_path):
    uri = write_node(tmp_path / "node.xml", cpus=2, memory_mb=2048)
    kvm_form(admin.get("/admin/hosts"), name="kvm-q", uri=uri).submit()
    request = plugins_on
    request.dbsession.expire_all()
    host = request.dbsession.scalar(select(Resource).where(Resource.name == "kvm-q"))
    images = tmp_path / "images"
    images.mkdir()
    request.dbsession.get(KvmHost, host.id).image_dir = str(images)
    commit(request)

    page = storage_form(admin.get("/admin/hosts"), name="local-q", storage_type="qcow2",
                        host=str(host.id), volume_group="").submit()
    assert page.status_int == 303
    detail = page.follow()
    assert detail.html.find(id="volume-error") is None, detail.html.find(id="volume-error")
    assert "no volumes" in detail.text


# -- host key confirmation (a real sshd) ------------------------------------------------------
def test_the_admin_confirms_the_host_key_of_a_storage_host(admin, plugins_on, sshd):  # noqa: F811
    storage_form(admin.get("/admin/hosts"), name="lvm-k", ssh_host="127.0.0.1",
                 ssh_port=str(sshd.port)).submit()
    plugins_on.dbsession.expire_all()
    storage = plugins_on.dbsession.scalar(select(Storage).where(Storage.name == "lvm-k"))

    detail = admin.get(f"/admin/hosts/storage/{storage.id}")
    confirm = detail.click(href=f"/admin/hosts/storage/{storage.id}/host-key")
    from engine.commands.ssh import fingerprint

    shown = text_of(confirm, "host-key-fingerprint")
    assert shown == fingerprint(sshd.host_key.base64)
    assert text_of(confirm, "host-key-type") == sshd.host_key.key_type
    assert plugins_on.dbsession.scalar(select(SshHostKey)) is None  # not before confirming

    done = confirm.forms["host-key-form"].submit()
    assert done.status_int == 303
    page = done.follow()
    assert "pinned" in text_of(page, "host-key-state")
    plugins_on.dbsession.expire_all()
    (row,) = plugins_on.dbsession.scalars(select(SshHostKey))
    assert (row.host, row.port, row.key_base64) == ("127.0.0.1", sshd.port,
                                                    sshd.host_key.base64)
    assert events(plugins_on, "ssh.host_key_pinned")[-1].actor == ADMIN.label

    again = admin.get(f"/admin/hosts/storage/{storage.id}/host-key")
    assert "pinned already" in text_of(again, "host-key-consequence")
    assert "fingerprint" not in again.forms["host-key-form"].fields


def test_a_confirmation_of_another_fingerprint_pins_nothing(admin, plugins_on, sshd):  # noqa: F811
    storage_form(admin.get("/admin/hosts"), name="lvm-k", ssh_host="127.0.0.1",
                 ssh_port=str(sshd.port)).submit()
    plugins_on.dbsession.expire_all()
    storage = plugins_on.dbsession.scalar(select(Storage).where(Storage.name == "lvm-k"))
    confirm = admin.get(f"/admin/hosts/storage/{storage.id}/host-key")
    form = confirm.forms["host-key-form"]
    form["fingerprint"].force_value("SHA256:" + "B" * 43)
    page = form.submit().follow()
    assert "different key" in page.text
    plugins_on.dbsession.expire_all()
    assert plugins_on.dbsession.scalar(select(SshHostKey)) is None


def test_a_host_key_page_for_a_silent_host_says_so(admin, plugins_on):
    port = free_port()
    storage_form(admin.get("/admin/hosts"), name="lvm-s", ssh_host="127.0.0.1",
                 ssh_port=str(port)).submit()
    plugins_on.dbsession.expire_all()
    storage = plugins_on.dbsession.scalar(select(Storage).where(Storage.name == "lvm-s"))
    page = admin.get(f"/admin/hosts/storage/{storage.id}/host-key", status=502)
    assert f"cannot reach 127.0.0.1:{port}" in text_of(page, "host-key-problem")
    assert "fingerprint" not in page.forms["host-key-form"].fields


# -- permissions ----------------------------------------------------------------------------
def test_a_cloud_user_gets_nothing(testapp, registry, plugins_on):
    cloud_user_login(testapp, registry)
    assert testapp.get("/admin/hosts", expect_errors=True).status_int == 403
    assert testapp.post("/admin/hosts/kvm", {"name": "x"},
                        expect_errors=True).status_int == 403
    plugins_on.dbsession.expire_all()
    assert plugins_on.dbsession.scalar(select(KvmHost)) is None


def test_a_form_without_the_csrf_token_is_refused(admin, plugins_on):
    response = admin.post("/admin/hosts/storage", {"name": "x", "storage_type": "lvm-storage",
                                                   "volume_group": "vg0"},
                          expect_errors=True)
    assert response.status_int in (400, 403)
    plugins_on.dbsession.expire_all()
    assert plugins_on.dbsession.scalar(select(Storage).where(Storage.name == "x")) is None


def test_unknown_hosts_are_not_found(admin, plugins_on):
    assert admin.get("/admin/hosts/kvm/999999", expect_errors=True).status_int == 404
    assert admin.get("/admin/hosts/storage/999999", expect_errors=True).status_int == 404


# -- German -----------------------------------------------------------------------------------
def test_the_host_pages_speak_german(testapp, plugins_on):
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de-DE,de;q=0.9"
    admin_login(testapp)
    page = testapp.get("/admin/hosts")
    assert "Einen KVM-Host hinzufügen" in page
    assert "Hosts" in page.html.find("nav").get_text()
    refused = storage_form(page, volume_group="-vg").submit(status=400)
    assert "Die Volume-Gruppe ist kein gültiger LVM-Name" in text_of(
        refused, "error-storage-volume_group")
    refused = kvm_form(page, cpus="vier").submit(status=400)
    assert "CPUs müssen eine ganze Zahl sein" in text_of(refused, "error-kvm-cpus")
