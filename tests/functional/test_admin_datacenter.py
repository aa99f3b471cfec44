"""Resources, appliances and the event log in the console."""

from __future__ import annotations

from engine.cloud.models import CloudRequest
from engine.cloud.services import CloudRequestService
from engine.events.models import Event, EventLevel
from engine.events.services import EventService
from engine.security import Actor
from tests.conftest import commit, run_jobs
from tests.functional.test_admin_support import (
    admin_login,
    form_to,
    submit_demo_request,
    text_of,
)


def cells(row) -> list[str]:
    return [" ".join(cell.get_text(" ").split()) for cell in row.find_all("td")]


def test_resources_show_the_appliance_running_on_them(testapp, demo_cloud, pyramid_request,
                                                      registry):
    """A provisioned VM is listed with its host and appliance, and the appliance with its
    resource, kernel and image."""
    request_id = submit_demo_request(pyramid_request)
    pyramid_request.find_service(CloudRequestService).approve(request_id,
                                                              actor=Actor.admin("admin"))
    commit(pyramid_request)
    run_jobs(registry)
    pyramid_request.dbsession.expire_all()
    (cloud_appliance,) = pyramid_request.dbsession.get(CloudRequest, request_id).appliances
    appliance = cloud_appliance.appliance
    admin_login(testapp)

    resources = testapp.get("/admin/resources")
    row = resources.html.find("tr", attrs={"data-resource": str(appliance.resource_id)})
    kind, state, host, running = (cells(row)[i] for i in (2, 4, 7, 8))
    assert (kind, state, running) == ("virtual machine", "active", appliance.name)
    assert host == appliance.resource.host.label
    assert "sim-host-1" in resources

    appliances = testapp.get("/admin/appliances")
    row = appliances.html.find("tr", attrs={"data-appliance": appliance.name})
    assert cells(row)[1:5] == ["active", appliance.resource.label, "default",
                               appliance.image.name]


def log_event(pyramid_request, level: EventLevel, name: str) -> int:
    event = pyramid_request.find_service(EventService).log(
        source="test", name=name, message=f"{name} happened", actor=Actor.system(), level=level)
    pyramid_request.dbsession.flush()
    event_id = event.id
    commit(pyramid_request)
    return event_id


def test_event_log_filters_errors_and_acknowledges_them(testapp, demo_cloud, pyramid_request):
    """Errors only hides other levels; acknowledging an error takes it off the open count."""
    error_id = log_event(pyramid_request, EventLevel.ERROR, "test.broken")
    notice_id = log_event(pyramid_request, EventLevel.NOTICE, "test.fine")
    admin_login(testapp)
    open_before = int(text_of(testapp.get("/admin/"), "open-errors-value"))

    everything = testapp.get("/admin/events")
    errors = testapp.get("/admin/events", params={"errors": "1"})
    rows = everything.html.find(id="events").find("tbody").find_all("tr")
    assert [row["data-event"] for row in rows[:2]] == [str(notice_id), str(error_id)]
    assert errors.html.find("tr", attrs={"data-event": str(notice_id)}) is None

    page = form_to(errors, f"/events/{error_id}/acknowledge").submit().follow()

    assert page.request.path_qs == "/admin/events?errors=1"
    assert f"Event {error_id} acknowledged." in page
    assert int(text_of(testapp.get("/admin/"), "open-errors-value")) == open_before - 1
    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(Event, error_id).acknowledged is True
