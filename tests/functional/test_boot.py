"""The boot face: iPXE scripts, kernel files, registration, hand-over, reports."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.datacenter.models import Resource, ResourceState
from engine.datacenter.services import DatacenterService
from tests.conftest import commit

MAC = "52:54:00:aa:bb:01"


@pytest.fixture
def boot_settings(app_config, tmp_path, monkeypatch):
    settings = app_config.registry.settings
    monkeypatch.setitem(settings, "qrm.boot.url", "http://10.0.2.100")
    monkeypatch.setitem(settings, "qrm.boot.kernel_dir", str(tmp_path / "kernels"))
    return settings


@pytest.fixture
def kernels(boot_settings, pyramid_request, tmp_path, admin_actor):
    from engine.boot.kernels import KernelFileService

    vmlinuz, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    vmlinuz.write_bytes(bytes(range(256)) * 40)
    initrd.write_bytes(b"initrd" * 100)
    files = pyramid_request.find_service(KernelFileService)
    files.add("default", vmlinuz=vmlinuz, initrd=initrd, actor=admin_actor)
    files.add("second", vmlinuz=vmlinuz, initrd=initrd, version="2", actor=admin_actor)
    commit(pyramid_request)
    return vmlinuz.read_bytes()


def register(testapp, mac=MAC, status=200):
    return testapp.post("/boot/register", {"macs": mac, "cpus": "2", "memory_mb": "256",
                                           "nics": "1", "hostname": "node1"}, status=status)


def values(response):
    return dict(line.split("=", 1) for line in response.text.splitlines() if "=" in line)


def count_resources(pyramid_request):
    return pyramid_request.dbsession.scalar(select(func.count(Resource.id)))


def test_unknown_mac_gets_the_registration_entry(testapp, kernels):
    """An unknown MAC boots the default kernel with the server's URL and its MAC."""
    script = testapp.get(f"/boot/ipxe?mac={MAC}").text
    assert script.startswith("#!ipxe\n")
    assert "kernel http://10.0.2.100/boot/kernels/default/vmlinuz" in script
    assert f"qrm.mac={MAC}" in script
    assert "qrm.url=http://10.0.2.100" in script
    assert "qrm.id=" not in script
    assert "qrm.handover" not in script
    assert "initrd http://10.0.2.100/boot/kernels/default/initrd" in script


def test_bad_mac_is_a_clear_400(testapp, kernels):
    """A malformed MAC is refused, naming the field."""
    response = testapp.get("/boot/ipxe?mac=zz:zz", status=400)
    assert "field=mac" in response.text


def test_register_report_and_refusals(testapp, kernels, pyramid_request):
    """Registration answers id and token; bad tokens, replays and bad reports change nothing."""
    reply = values(register(testapp))
    token, resource_id = reply["token"], reply["id"]
    resource = pyramid_request.dbsession.get(Resource, int(resource_id))
    assert (resource.mac, resource.cpus, resource.memory_mb) == (MAC, 2, 256)
    assert resource.agent_token_hash != token  # stored hashed; idle with its first report
    before = count_resources(pyramid_request)
    # a replayed registration (or a forged MAC) is refused
    assert "field=mac" in register(testapp, status=403).text
    form = {"id": resource_id, "load": "0.5", "memory_used_mb": "40", "uptime_s": "12"}
    testapp.post("/boot/report", form, status=401)
    testapp.post("/boot/report", form, headers={"Authorization": "Bearer wrong"}, status=403)
    bad = testapp.post("/boot/report", dict(form, load="high"),
                       headers={"Authorization": f"Bearer {token}"}, status=400)
    assert "field=load" in bad.text
    assert count_resources(pyramid_request) == before
    ok = testapp.post("/boot/report", form, headers={"Authorization": f"Bearer {token}"})
    assert values(ok)["interval"]
    pyramid_request.dbsession.expire_all()
    resource = pyramid_request.dbsession.get(Resource, int(resource_id))
    assert (resource.memory_used_mb, resource.state) == (40, ResourceState.IDLE)


def test_reboot_hands_over_a_one_time_code(testapp, kernels, pyramid_request, admin_actor):
    """After a reboot by the engine the boot script carries a code, good once."""
    resource_id = int(values(register(testapp))["id"])
    datacenter = pyramid_request.find_service(DatacenterService)
    resource = pyramid_request.dbsession.get(Resource, resource_id)
    datacenter.assign_kernel(resource, datacenter.kernel("second"), actor=admin_actor)
    datacenter.reboot(resource, actor=admin_actor)
    commit(pyramid_request)
    script = testapp.get(f"/boot/ipxe?mac={MAC}").text
    assert "/boot/kernels/second/vmlinuz" in script
    assert f"qrm.id={resource_id}" in script
    code = script.split("qrm.handover=")[1].split()[0]
    assert "qrm.handover" not in testapp.get(f"/boot/ipxe?mac={MAC}").text
    reply = values(testapp.post("/boot/register", {"mac": MAC, "handover": code}))
    assert reply["id"] == str(resource_id)
    assert reply["token"]
    testapp.post("/boot/register", {"mac": MAC, "handover": code}, status=403)


def test_kernel_files_have_length_and_ranges(testapp, kernels):
    """Kernel files are served whole, in ranges (206) and refuse impossible ranges (416)."""
    whole = testapp.get("/boot/kernels/default/vmlinuz")
    assert whole.body == kernels
    assert whole.headers["Content-Length"] == str(len(kernels))
    part = testapp.get("/boot/kernels/default/vmlinuz", headers={"Range": "bytes=10-19"},
                       status=206)
    assert part.body == kernels[10:20]
    testapp.get("/boot/kernels/default/vmlinuz",
                headers={"Range": f"bytes={len(kernels) + 10}-"}, status=416)
    testapp.get("/boot/kernels/nope/vmlinuz", status=404)


def test_agent_script_is_served(testapp):
    """The agent is a shell script."""
    assert testapp.get("/boot/agent.sh").text.startswith("#!/bin/sh")
