"""The console's "Outside work" page: calls to hosts and storage, and Retry of a failed one."""

from __future__ import annotations

from sqlalchemy import select

from engine.cloud.models import CloudRequest
from engine.cloud.services import CloudRequestService
from engine.datacenter.models import CallState, DriverCall, Image
from engine.datacenter.services import DatacenterService
from engine.security import Actor
from plugins.sim import faults, inventory
from tests.conftest import commit, run_jobs
from tests.functional.test_admin_support import admin_login, form_to, submit_demo_request


def test_calls_of_a_request_are_listed_with_their_request(testapp, demo_cloud, pyramid_request,
                                                         registry):
    request_id = submit_demo_request(pyramid_request)
    pyramid_request.find_service(CloudRequestService).approve(request_id,
                                                              actor=Actor.admin("admin"))
    commit(pyramid_request)
    run_jobs(registry)
    pyramid_request.dbsession.expire_all()
    ca = pyramid_request.dbsession.get(CloudRequest, request_id).appliances[0]
    admin_login(testapp)
    page = testapp.get("/admin/calls")
    keys = [" ".join(r.get_text(" ").split()) for r in page.html.select("#calls tbody tr")]
    (create,) = [k for k in keys if f"create-vm:resource:{ca.created_vm_id}" in k]
    assert "create_vm" in create
    assert f"request {request_id}" in create
    assert "done" in create


def test_a_failed_call_without_a_request_is_retried_from_the_console(testapp, demo_cloud,
                                                                      pyramid_request,
                                                                      registry):
    db = pyramid_request.dbsession
    image = db.scalar(select(Image).where(Image.name == "debian-12"))
    faults.fail("create_volume", error="capacity")  # refused once: the call fails at once
    datacenter = pyramid_request.find_service(DatacenterService)
    made = datacenter.create_image("scratch", storage=image.storage,
                                   deployment_type=image.deployment_type.name, size_mb=100,
                                   actor=Actor.admin("admin"))
    commit(pyramid_request)  # the inline kick makes the call: refused
    db.expire_all()
    call = db.scalar(select(DriverCall).where(DriverCall.key == f"create-volume:image:{made.id}"))
    assert call.state is CallState.FAILED
    admin_login(testapp)
    page = testapp.get("/admin/calls")
    row = page.html.find("tr", attrs={"data-call": str(call.id)})
    assert "failed" in row.get_text(" ")
    after = form_to(page, f"/admin/calls/{call.id}/retry").submit().maybe_follow()
    assert f"Call {call.id} is made again." in after
    db.expire_all()
    assert db.get(DriverCall, call.id).state is CallState.DONE
    assert db.get(Image, made.id).root_device == f"sim:{image.storage.name}/qrm-img-{made.id}"
    assert inventory.volume(None, db.get(Image, made.id).root_device) is not None


def test_the_page_is_for_admins_only(testapp, demo_cloud):
    response = testapp.get("/admin/calls", expect_errors=True)
    assert response.status_int in (303, 403)
    assert "Outside work" not in response.text
