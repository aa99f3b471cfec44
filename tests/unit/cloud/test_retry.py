"""A step that keeps failing is retried with growing pauses, then left for an admin."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.cloud.models import CloudRequest, RequestStatus
from engine.cloud.provisioning import MAX_FAILED_ATTEMPTS, ProvisioningService, retry_delay
from engine.errors import InvalidState, PermissionDenied
from plugins.sim import faults, inventory
from tests.conftest import commit, run_jobs
from tests.unit.cloud.conftest import request_values


def test_retry_delays_grow():
    assert [retry_delay(n) for n in (1, 2, 3)] == [dt.timedelta(minutes=m) for m in (1, 2, 4)]


def test_engine_gives_up_after_repeated_failures_until_an_admin_retries(cloud, engine_clock):
    db = cloud.request.dbsession
    faults.fail("create_vm", times=MAX_FAILED_ATTEMPTS)  # the hypervisor does not answer
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    cloud.requests.approve(cloud_request.id, actor=cloud.admin)
    commit(cloud.request)
    for attempt in range(1, MAX_FAILED_ATTEMPTS + 2):
        run_jobs(cloud.request.registry, rounds=1)
        engine_clock.advance(retry_delay(attempt).total_seconds() + 1)  # the pause is over
    db.expire_all()
    row = db.get(CloudRequest, cloud_request.id)
    assert row.status is RequestStatus.APPROVED
    assert row.failed_attempts == MAX_FAILED_ATTEMPTS
    assert row.next_step_at is None
    assert len(faults.calls("create_vm")) == MAX_FAILED_ATTEMPTS  # not one more
    assert "retry" in cloud.requests.allowed_actions(row, actor=cloud.admin)
    assert "retry" not in cloud.requests.allowed_actions(row, actor=cloud.user_actor)

    service = cloud.request.find_service(ProvisioningService)
    with pytest.raises(PermissionDenied):
        service.retry(row.id, actor=cloud.user_actor)
    service.retry(row.id, actor=cloud.admin)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    db.expire_all()
    row = db.get(CloudRequest, cloud_request.id)
    assert row.status is RequestStatus.ACTIVE
    assert row.failed_attempts == 0
    assert len(inventory.vms()) == 1
    with pytest.raises(InvalidState):
        service.retry(row.id, actor=cloud.admin)
