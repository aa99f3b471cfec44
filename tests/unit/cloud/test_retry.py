"""A step that keeps failing is retried with growing pauses, then left for an admin."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.cloud.models import CloudRequest, RequestStatus
from engine.cloud.provisioning import MAX_FAILED_ATTEMPTS, ProvisioningService, retry_delay
from engine.datacenter.services import DatacenterService
from engine.db import utcnow
from engine.errors import DriverError, InvalidState, PermissionDenied
from tests.conftest import commit, run_jobs
from tests.unit.cloud.conftest import request_values


def test_retry_delays_grow():
    assert [retry_delay(n) for n in (1, 2, 3)] == [dt.timedelta(minutes=m) for m in (1, 2, 4)]


def test_engine_gives_up_after_repeated_failures_until_an_admin_retries(cloud, monkeypatch):
    db = cloud.request.dbsession
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    cloud.requests.approve(cloud_request.id, actor=cloud.admin)

    def broken(self, *args, **kw):
        raise DriverError("the hypervisor does not answer")

    monkeypatch.setattr(DatacenterService, "create_vm", broken)
    commit(cloud.request)
    for _ in range(MAX_FAILED_ATTEMPTS + 2):
        db.expire_all()
        row = db.get(CloudRequest, cloud_request.id)
        if row.next_step_at is not None:
            row.next_step_at = utcnow()  # the pause is over
            commit(cloud.request)
        run_jobs(cloud.request.registry, "cloud.sweep", rounds=1)
    db.expire_all()
    row = db.get(CloudRequest, cloud_request.id)
    assert row.status is RequestStatus.APPROVED
    assert row.failed_attempts == MAX_FAILED_ATTEMPTS
    assert row.next_step_at is None
    assert "retry" in cloud.requests.allowed_actions(row, actor=cloud.admin)
    assert "retry" not in cloud.requests.allowed_actions(row, actor=cloud.user_actor)

    service = cloud.request.find_service(ProvisioningService)
    with pytest.raises(PermissionDenied):
        service.retry(row.id, actor=cloud.user_actor)
    monkeypatch.undo()
    service.retry(row.id, actor=cloud.admin)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()
    row = db.get(CloudRequest, cloud_request.id)
    assert row.status is RequestStatus.ACTIVE
    assert row.failed_attempts == 0
    with pytest.raises(InvalidState):
        service.retry(row.id, actor=cloud.admin)
