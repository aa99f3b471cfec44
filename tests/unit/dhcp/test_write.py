"""Writing on change: the file is written once, atomically, not rewritten while nothing
changed; the reload hook runs once per content; a crash between writing and recording
converges; commits that change resources or addresses kick the job."""

from __future__ import annotations

import shlex
import sys
import types

import pytest
from sqlalchemy import select

from engine.datacenter.models import Resource
from engine.datacenter.services import DatacenterService
from engine.dhcp import writer
from engine.dhcp.jobs import write_job
from engine.events.models import Event
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor
from tests.conftest import commit
from tests.unit.dhcp.conftest import BOOT_SETTINGS, add_resource

RELOAD = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write('reload\\n')"]


def reloads(path) -> int:
    return path.read_text().count("reload") if path.exists() else 0


def test_written_once_and_not_rewritten_while_nothing_changed(tmp_path):
    path, counter = tmp_path / "dhcp.conf", tmp_path / "reloads"
    first = writer.write_config(path, "one\n", reload_argv=(*RELOAD, str(counter)))
    inode = path.stat().st_ino
    again = writer.write_config(path, "one\n", reload_argv=(*RELOAD, str(counter)))
    assert (first.written, first.reload.succeeded) == (True, True)
    assert (again.written, again.reload) == (False, None)
    assert path.stat().st_ino == inode
    assert path.read_text() == "one\n"
    assert reloads(counter) == 1
    changed = writer.write_config(path, "two\n", reload_argv=(*RELOAD, str(counter)))
    assert changed.written
    assert path.stat().st_ino != inode
    assert reloads(counter) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dhcp.conf.qrm-state", "dhcp.conf",
                                                          "reloads"]


def test_a_crash_between_writing_and_recording_reloads_on_the_next_run(tmp_path):
    """The file was replaced but the server's reload was never recorded (the process died):
    the next run reloads without rewriting."""
    path, counter = tmp_path / "dhcp.conf", tmp_path / "reloads"
    writer.write_config(path, "old\n", reload_argv=(*RELOAD, str(counter)))
    writer.atomic_write(path, b"new\n")  # written, then the crash
    outcome = writer.write_config(path, "new\n", reload_argv=(*RELOAD, str(counter)))
    assert (outcome.written, outcome.reload.succeeded) == (False, True)
    assert reloads(counter) == 2
    assert writer.write_config(path, "new\n", reload_argv=(*RELOAD, str(counter))).reload is None


def test_a_failing_reload_is_retried_then_left_until_the_content_changes(tmp_path):
    path, fail = tmp_path / "dhcp.conf", (sys.executable, "-c", "raise SystemExit(3)")
    outcomes = [writer.write_config(path, "x\n", reload_argv=fail)
                for _ in range(writer.MAX_RELOAD_ATTEMPTS + 1)]
    assert [o.reload.exit_code for o in outcomes[:-1]] == [3] * writer.MAX_RELOAD_ATTEMPTS
    assert outcomes[-1].gave_up
    assert outcomes[-1].reload is None
    assert writer.write_config(path, "y\n", reload_argv=fail).reload.attempt == 1


def test_a_reload_hook_that_cannot_run_is_reported(tmp_path):
    outcome = writer.write_config(tmp_path / "c", "x", reload_argv=("/nonexistent/reload",))
    assert not outcome.reload.succeeded
    assert "cannot run" in outcome.reload.error


# -- the job, kicked by commits ---------------------------------------------------------------
@pytest.fixture
def dhcp_file(registry, tmp_path, monkeypatch):
    path, counter = tmp_path / "dnsmasq.conf", tmp_path / "reloads"
    for key, value in {**BOOT_SETTINGS, "qrm.dhcp.server": "dnsmasq",
                       "qrm.dhcp.config_path": str(path),
                       "qrm.dhcp.reload_command": shlex.join([*RELOAD, str(counter)])}.items():
        monkeypatch.setitem(registry.settings, key, value)
    return types.SimpleNamespace(path=path, counter=counter)


def event_names(request) -> list[str]:
    request.dbsession.expire_all()
    return list(request.dbsession.scalars(
        select(Event.name).where(Event.source == "dhcp").order_by(Event.id)))


def test_adding_and_readdressing_a_resource_rewrites_the_file_and_reloads(pyramid_request,
                                                                         dhcp_file):
    resource = add_resource(pyramid_request, "52:54:00:00:00:51", ip="10.77.0.51",
                            hostname="web1")
    commit(pyramid_request)
    assert "dhcp-host=52:54:00:00:00:51,10.77.0.51,web1" in dhcp_file.path.read_text()
    assert reloads(dhcp_file.counter) == 1
    assert event_names(pyramid_request) == ["dhcp.written", "dhcp.reloaded"]

    db, resource_id = pyramid_request.dbsession, resource.id
    db.get(Resource, resource_id).load = 3  # not in the configuration: no kick, no rewrite
    commit(pyramid_request)
    assert reloads(dhcp_file.counter) == 1
    db.get(Resource, resource_id).ip = "10.77.0.52"
    commit(pyramid_request)
    assert "dhcp-host=52:54:00:00:00:51,10.77.0.52,web1" in dhcp_file.path.read_text()
    assert reloads(dhcp_file.counter) == 2

    pyramid_request.find_service(DatacenterService).remove_resource(
        db.get(Resource, resource_id), actor=Actor.admin("root-admin"))
    commit(pyramid_request)
    assert "52:54:00:00:00:51" not in dhcp_file.path.read_text()
    assert reloads(dhcp_file.counter) == 3


def test_a_rolled_back_change_kicks_nothing(pyramid_request, dhcp_file):
    add_resource(pyramid_request, "52:54:00:00:00:61", ip="10.77.0.61")
    pyramid_request.tm.abort()
    pyramid_request.tm.begin()
    assert not dhcp_file.path.exists()


def test_the_periodic_run_changes_nothing_when_the_file_is_current(pyramid_request, registry,
                                                                  dhcp_file):
    add_resource(pyramid_request, "52:54:00:00:00:71", ip="10.77.0.71")
    commit(pyramid_request)
    mtime = dhcp_file.path.stat().st_mtime_ns
    outcome = run_in_transaction(registry, write_job)
    assert (outcome.written, outcome.reload) == (False, None)
    assert dhcp_file.path.stat().st_mtime_ns == mtime
    dhcp_file.path.write_text("edited by hand\n")  # put back by the next run
    assert run_in_transaction(registry, write_job).written
    assert "52:54:00:00:00:71" in dhcp_file.path.read_text()


def test_invalid_settings_are_reported_once(pyramid_request, registry, dhcp_file, monkeypatch):
    monkeypatch.setitem(registry.settings, "qrm.dhcp.subnet", "10.77.0.1/24")
    assert run_in_transaction(registry, write_job) is None
    assert run_in_transaction(registry, write_job) is None
    assert event_names(pyramid_request) == ["dhcp.settings_invalid"]
    assert not dhcp_file.path.exists()


def test_addresses_of_cloud_appliances_reach_the_file(demo_cloud, pyramid_request, registry,
                                                      dhcp_file):
    """An address of the demo IP group given to a provisioned VM is reserved for it;
    releasing the address rewrites the file without it."""
    from engine.cloud.models import CloudRequest, IpAddress
    from engine.cloud.services import CloudRequestService
    from tests.conftest import run_jobs
    from tests.functional.test_admin_support import submit_demo_request

    request_id = submit_demo_request(pyramid_request)
    pyramid_request.find_service(CloudRequestService).approve(request_id,
                                                              actor=Actor.admin("admin"))
    commit(pyramid_request)
    # provisioning ran inside the approval's own kick, where kicks do not nest: the
    # periodic run is what picks it up here
    run_jobs(registry, "plugins.monitor", "cloud.sweep", "dhcp.write")
    db = pyramid_request.dbsession
    db.expire_all()
    (appliance,) = db.get(CloudRequest, request_id).appliances
    address = db.scalar(select(IpAddress).where(IpAddress.cloud_appliance_id == appliance.id))
    host = f"dhcp-host={appliance.appliance.resource.mac},{address.address}"
    text = dhcp_file.path.read_text()
    assert host in text
    assert ",static,255.255.255.0" in text

    address.cloud_appliance_id = None
    commit(pyramid_request)
    assert host not in dhcp_file.path.read_text()
