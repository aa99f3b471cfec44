"""KVM host liveness (``plugins.kvm.monitor``): each host's libvirt (the ``test:///`` driver
on a node file of our own) is asked through the plugins' monitor job; an answer makes the host
active (or keeps it idle) with its capacity, no answer marks it error once with an event and
``qrm_resource_failed``, and a later answer brings it back."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import pytest
from sqlalchemy import select

from engine.datacenter.models import Resource, ResourceState, VirtualizationKind
from engine.datacenter.services import DatacenterService
from engine.db import utcnow
from engine.events.models import Event
from engine.monitoring.services import plugins_monitor_job
from engine.plugins.hookspecs import hookimpl
from engine.plugins.manager import PluginService
from engine.security import Actor
from plugins.kvm.drivers import ConnectionPool, KvmDriver
from plugins.kvm.hosts import configure_host
from plugins.kvm.monitor import REPORT_EVERY, run_monitor
from tests.unit.kvm.conftest import new_mac, spec, write_node


@pytest.fixture
def kvm(pyramid_request: Any, admin_actor: Actor) -> Any:
    plugins = pyramid_request.find_service(PluginService)
    plugins.act("kvm", "enable", actor=admin_actor)
    plugins.act("kvm", "start", actor=admin_actor)
    return pyramid_request


@pytest.fixture
def pool() -> Any:
    pool = ConnectionPool()
    yield pool
    pool.close()


def add_host(request: Any, actor: Actor, uri: str, *,
             state: ResourceState = ResourceState.UNKNOWN) -> Resource:
    resource = request.find_service(DatacenterService).add_resource(
        mac=new_mac(), kind=VirtualizationKind.HOST, virtualization_type="kvm", actor=actor,
        name="kvm-host", state=state)
    configure_host(request, resource, actor=actor, uri=uri, domain_type="test")
    return resource


def events(request: Any, resource: Resource, name: str) -> list[Event]:
    return list(request.dbsession.scalars(select(Event).where(
        Event.name == name, Event.object_type == "resource", Event.object_id == resource.id)))


def test_a_host_that_answers_becomes_active_with_its_capacity(kvm, admin_actor, tmp_path,
                                                              pool):
    uri = write_node(tmp_path / "node.xml", cpus=8, memory_mb=16384)
    host = add_host(kvm, admin_actor, uri)
    assert (host.state, host.cpus, host.memory_mb) == (ResourceState.UNKNOWN, 0, 0)

    assert run_monitor(kvm, pool=pool) == {host.id: "up"}

    assert (host.state, host.cpus, host.memory_mb) == (ResourceState.ACTIVE, 8, 16384)
    assert host.last_report_at is not None
    assert host.load == 0
    assert len(events(kvm, host, "resource.active")) == 1


def test_the_load_is_the_share_of_cpus_the_running_domains_take(kvm, admin_actor, tmp_path,
                                                                pool):
    uri = write_node(tmp_path / "node.xml", cpus=4, memory_mb=8192)
    host = add_host(kvm, admin_actor, uri)
    # a domain running on the host (the pool's connection is the one the monitor asks:
    # each new test:/// connection starts from the node file again)
    KvmDriver(pool=pool).create_vm(_ref(host, uri), spec(cpus=2, memory_mb=1024))

    run_monitor(kvm, pool=pool)

    assert float(host.load) == 0.5


def _ref(host: Resource, uri: str) -> Any:
    from engine.plugins.drivers import HostRef

    return HostRef(id=host.id, name=host.label, mac=host.mac,
                   settings={"uri": uri, "domain_type": "test"})


def test_an_idle_host_stays_idle(kvm, admin_actor, tmp_path, pool):
    uri = write_node(tmp_path / "node.xml", cpus=2, memory_mb=2048)
    host = add_host(kvm, admin_actor, uri, state=ResourceState.IDLE)

    run_monitor(kvm, pool=pool)

    assert host.state is ResourceState.IDLE
    assert host.cpus == 2


def test_a_silent_host_is_marked_error_once_and_an_answer_brings_it_back(
        kvm, admin_actor, tmp_path, pool, monkeypatch):
    node = tmp_path / "node.xml"
    uri = write_node(node, cpus=2, memory_mb=2048)
    host = add_host(kvm, admin_actor, uri)
    run_monitor(kvm, pool=pool)
    assert host.state is ResourceState.ACTIVE

    failed: list[int] = []

    class Listener:
        @hookimpl
        def qrm_resource_failed(self, request: Any, resource: Any) -> None:
            failed.append(resource.id)

    plugins = kvm.registry["plugins"]
    listener = Listener()
    plugins.pm.register(listener, name="test-listener")
    try:
        pool.close()
        node.unlink()  # libvirt's test driver cannot open a node file that is gone
        later = utcnow() + REPORT_EVERY
        assert run_monitor(kvm, pool=pool, now=later) == {host.id: "down"}
        assert host.state is ResourceState.ERROR
        (event,) = events(kvm, host, "kvm.host_unreachable")
        assert event.level.value == "error"
        assert "libvirt does not answer" in event.message
        assert event.actor == "plugin:kvm"
        assert failed == [host.id]

        # still silent: no second event, no second failure
        run_monitor(kvm, pool=pool, now=later + REPORT_EVERY)
        assert len(events(kvm, host, "kvm.host_unreachable")) == 1
        assert failed == [host.id]
    finally:
        plugins.pm.unregister(name="test-listener")

    write_node(node, cpus=2, memory_mb=2048)
    assert run_monitor(kvm, pool=pool, now=later + 2 * REPORT_EVERY) == {host.id: "up"}
    assert host.state is ResourceState.ACTIVE
    assert len(events(kvm, host, "resource.active")) == 2


def test_a_host_that_answered_lately_is_not_asked_again(kvm, admin_actor, tmp_path, pool):
    uri = write_node(tmp_path / "node.xml", cpus=2, memory_mb=2048)
    host = add_host(kvm, admin_actor, uri)
    now = utcnow()
    run_monitor(kvm, pool=pool, now=now)
    assert run_monitor(kvm, pool=pool, now=now + dt.timedelta(seconds=5)) == {}
    assert run_monitor(kvm, pool=pool, now=now + REPORT_EVERY + dt.timedelta(seconds=5)) == {
        host.id: "up"}


def test_switched_off_and_other_hosts_are_not_asked(kvm, admin_actor, tmp_path, pool):
    uri = write_node(tmp_path / "node.xml", cpus=2, memory_mb=2048)
    off = add_host(kvm, admin_actor, uri, state=ResourceState.OFF)
    kvm.find_service(DatacenterService).add_resource(
        mac=new_mac(), kind=VirtualizationKind.PHYSICAL, virtualization_type="physical",
        actor=admin_actor)
    assert run_monitor(kvm, pool=pool) == {}
    assert off.state is ResourceState.OFF


def test_the_plugins_monitor_job_runs_it_while_the_plugin_is_started(
        kvm, admin_actor, tmp_path: pathlib.Path):
    uri = write_node(tmp_path / "node.xml", cpus=3, memory_mb=3072)
    host = add_host(kvm, admin_actor, uri)
    plugins_monitor_job(kvm)
    assert (host.state, host.cpus) == (ResourceState.ACTIVE, 3)

    kvm.find_service(PluginService).act("kvm", "stop", actor=admin_actor)
    host.state = ResourceState.UNKNOWN
    plugins_monitor_job(kvm)
    assert host.state is ResourceState.UNKNOWN
