"""A fitting machine that is still booting is waited for, not given up on."""

from __future__ import annotations

from sqlalchemy import select

from engine.cloud.models import CloudRequest, RequestStatus
from engine.datacenter.models import Resource, VirtualizationKind
from tests.conftest import commit, run_jobs
from tests.unit.cloud.conftest import request_values


def test_request_waits_for_a_booting_physical_machine(cloud):
    db = cloud.request.dbsession
    physical = list(db.scalars(select(Resource).where(
        Resource.kind == VirtualizationKind.PHYSICAL)))
    assert physical
    assert all(not r.is_idle for r in physical)
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values(
        virtualization="physical", cpus=4))
    cloud.requests.approve(cloud_request.id, actor=cloud.admin)
    commit(cloud.request)  # provisioning starts at once and waits
    db.expire_all()
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.APPROVED
    run_jobs(cloud.request.registry)  # the machines report idle; provisioning goes on
    db.expire_all()
    assert db.get(CloudRequest, cloud_request.id).status is RequestStatus.ACTIVE
