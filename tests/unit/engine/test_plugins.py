"""The plugin contract: states, actions, and every hook reaching the right plugins."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pluggy
import pytest
from sqlalchemy import select

from engine.datacenter.models import ResourceState, VirtualizationKind
from engine.datacenter.services import AppliancesService, DatacenterService
from engine.errors import InvalidState, NotFound
from engine.events.models import Event
from engine.monitoring.services import ResourceReportService, plugins_monitor_job
from engine.plugins import hookspecs
from engine.plugins.hookspecs import hookimpl
from engine.plugins.manager import PluginRegistry, PluginService
from engine.plugins.models import Plugin, PluginState
from tests.conftest import commit, run_jobs


class Recorder:
    """A plugin that writes down every hook call it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.price: Decimal | None = None

    @hookimpl
    def qrm_plugin_info(self) -> dict[str, str]:
        return {"name": "recorder", "type": "misc", "description": "records hook calls"}

    @hookimpl
    def qrm_plugin_action(self, request, name, action):
        self.calls.append(("action", action))

    @hookimpl
    def qrm_appliance_event(self, request, appliance, action):
        self.calls.append(("appliance", action))

    @hookimpl
    def qrm_resource_event(self, request, resource, action):
        self.calls.append(("resource", action))

    @hookimpl
    def qrm_kernel_added(self, request, kernel):
        self.calls.append(("kernel", kernel.name))

    @hookimpl
    def qrm_resource_assigned(self, request, resource, kernel):
        self.calls.append(("assigned", kernel.name if kernel else None))

    @hookimpl
    def qrm_monitor(self, request):
        self.calls.append(("monitor", None))

    @hookimpl
    def qrm_resource_failed(self, request, resource):
        self.calls.append(("failed", resource.id))

    @hookimpl
    def qrm_billing_charge(self, request, cloud_appliance, period_start, components):
        self.calls.append(("billing", cloud_appliance.id))
        return self.price

    @hookimpl
    def qrm_boot_files(self, request):
        return [{"name": "recorder.tgz", "path": "/dev/null"}]


@pytest.fixture
def recorder(registry: Any) -> Any:
    plugin = Recorder()
    plugins: PluginRegistry = registry["plugins"]
    plugins.pm.register(plugin, name="recorder")
    plugins.plugins["recorder"] = plugin
    yield plugin
    plugins.pm.unregister(plugin, name="recorder")
    del plugins.plugins["recorder"]


def act(request: Any, *actions: str) -> None:
    service = request.find_service(PluginService)
    for action in actions:
        service.act("recorder", action, actor=request_actor())


def request_actor() -> Any:
    from engine.security import Actor

    return Actor.admin("root-admin")


def test_plugin_actions_follow_the_state_table_and_are_logged(pyramid_request, recorder):
    service = pyramid_request.find_service(PluginService)
    assert service.states()["recorder"] is PluginState.DISABLED
    with pytest.raises(InvalidState):
        service.act("recorder", "start", actor=request_actor())
    act(pyramid_request, "enable", "start", "stop", "disable")
    assert recorder.calls == [("action", "init"), ("action", "start"), ("action", "stop"),
                              ("action", "uninstall")]
    row = pyramid_request.dbsession.get(Plugin, "recorder")
    assert row.state is PluginState.DISABLED
    names = [e.name for e in pyramid_request.dbsession.scalars(
        select(Event).where(Event.object_type == "plugin").order_by(Event.id))]
    assert names == ["plugin.enable", "plugin.start", "plugin.stop", "plugin.disable"]
    with pytest.raises(NotFound):
        service.act("no-such-plugin", "enable", actor=request_actor())


def test_hooks_reach_enabled_plugins_and_services_only_started_ones(pyramid_request, recorder):
    service = pyramid_request.find_service(PluginService)
    service.hook.qrm_kernel_added(request=pyramid_request, kernel=None)
    assert recorder.calls == []  # disabled: nothing
    act(pyramid_request, "enable")
    datacenter = pyramid_request.find_service(DatacenterService)
    datacenter.add_kernel("k1", actor=request_actor())
    assert ("kernel", "k1") in recorder.calls
    plugins_monitor_job(pyramid_request)
    assert ("monitor", None) not in recorder.calls  # enabled but not started
    act(pyramid_request, "start")
    plugins_monitor_job(pyramid_request)
    assert ("monitor", None) in recorder.calls
    assert service.hook.qrm_boot_files(request=pyramid_request) == [
        [{"name": "recorder.tgz", "path": "/dev/null"}]]


def test_appliance_resource_and_failure_hooks(demo_cloud, recorder, registry):
    request = demo_cloud["request"]
    act(request, "enable", "start")
    run_jobs(registry, "plugins.monitor", rounds=1)
    datacenter = request.find_service(DatacenterService)
    appliances = request.find_service(AppliancesService)
    actor = request_actor()
    resource = datacenter.add_resource(mac="02:00:00:00:00:99", kind=VirtualizationKind.PHYSICAL,
                                       virtualization_type="physical", cpus=1, memory_mb=512,
                                       state=ResourceState.IDLE, actor=actor)
    appliance = appliances.add("hooked", kernel=datacenter.kernel("default"),
                               image=datacenter.image("debian-12"),
                               virtualization_type=resource.virtualization_type,
                               resource=resource, actor=actor)
    appliances.start(appliance, actor=actor)
    reports = request.find_service(ResourceReportService)
    reports.report(resource, state=ResourceState.ACTIVE, actor=actor)
    appliances.stop(appliance, actor=actor)
    reports.report(resource, state=ResourceState.IDLE, actor=actor)
    appliances.release(appliance, actor=actor)
    appliances.remove(appliance, actor=actor)
    assert [c for c in recorder.calls if c[0] in ("appliance", "assigned")] == [
        ("appliance", "add"), ("assigned", "default"), ("appliance", "start"),
        ("assigned", None), ("appliance", "stop"), ("appliance", "remove")]
    assert ("resource", "add") in recorder.calls
    assert ("resource", "start") in recorder.calls  # the reboots
    # a resource that stops reporting fails once, not at every check
    import datetime as dt

    from engine.db import utcnow

    resource.last_report_at = utcnow() - dt.timedelta(minutes=10)
    assert reports.check_health() == [resource]
    assert reports.check_health() == []
    assert recorder.calls.count(("failed", resource.id)) == 1
    assert resource.state is ResourceState.ERROR


def test_billing_hook_replaces_the_price(demo_cloud, recorder, registry):
    from billing.models import LedgerEntry
    from tests.unit.cloud.conftest import request_values

    request = demo_cloud["request"]
    act(request, "enable")
    recorder.price = Decimal("0.5")
    from engine.cloud.services import CloudRequestService, CloudUserService
    from engine.security import Actor

    demo = request.find_service(CloudUserService).resolve("demo", actor=Actor.system())
    requests = request.find_service(CloudRequestService)
    cloud_request = requests.submit(actor=Actor.cloud_user("demo", demo.id), **request_values())
    requests.approve(cloud_request.id, actor=request_actor())
    commit(request)
    run_jobs(registry)
    (charge,) = request.dbsession.scalars(select(LedgerEntry).where(
        LedgerEntry.period_start.is_not(None)))
    assert charge.amount == Decimal("-0.5")
    assert any(call[0] == "billing" for call in recorder.calls)


def test_misspelt_hook_fails_at_start_up():
    class Misspelt:
        @hookimpl
        def qrm_apliance_event(self, request, appliance, action):
            """misspelt on purpose"""

    with pytest.raises(pluggy.PluginValidationError):
        PluginRegistry(plugins={"misspelt": Misspelt()})


def test_every_hook_is_documented():
    names = [name for name in dir(hookspecs) if name.startswith("qrm_")]
    assert len(names) >= 14
    for name in names:
        assert getattr(hookspecs, name).__doc__, name
