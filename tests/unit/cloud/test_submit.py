"""Submitting requests: every check, and nothing written when one fails."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from engine.cloud.config import CloudConfigService
from engine.cloud.models import CloudRequest, Product, ProductType, RequestStatus
from engine.cloud.services import ProductService
from engine.db import utcnow
from engine.errors import (
    InsufficientCredit,
    InvalidState,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from engine.events.models import Event
from engine.security import Actor
from tests.conftest import commit
from tests.unit.cloud.conftest import request_values


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def test_submit_creates_new_request_with_price_snapshot_and_event(cloud):
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    assert cloud_request.status is RequestStatus.NEW
    # sim-vm 2 + kernel 0 + 1 CPU 1 + 512 MB 2 + 5 GB 5 + 1 NIC 1
    assert cloud_request.price_per_hour == Decimal(11)
    assert {c["type"] for c in cloud_request.price_breakdown} >= {"cpu", "memory", "disk"}
    event = cloud.request.dbsession.scalar(select(Event).where(
        Event.name == "request.submitted", Event.object_id == cloud_request.id))
    assert event.actor == "clouduser:demo"
    assert cloud.users.usage(cloud.demo)["memory_mb"] == 512


def test_auto_provision_approves_at_once(cloud):
    cloud.request.find_service(CloudConfigService).set("auto_provision", True, actor=cloud.admin)
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    assert cloud_request.status is RequestStatus.APPROVED


REFUSALS = [
    ({"kernel": "no-such-kernel"}, NotFound, "kernel"),
    ({"image": "no-such-image"}, NotFound, "image"),
    ({"virtualization": "sim"}, NotFound, "virtualization"),
    ({"memory_mb": 0}, ValidationError, "memory_mb"),
    ({"memory_mb": 768}, ValidationError, "memory_mb"),          # no such product
    ({"cpus": 3}, ValidationError, "cpus"),
    ({"disk_mb": 100001}, ValidationError, "disk_mb"),            # over max_disk_size
    ({"network_cards": 5}, ValidationError, "network_cards"),     # over max_network_interfaces
    ({"quantity": 6}, ValidationError, "quantity"),               # over max_resources_per_cr
    ({"stop": "not a time"}, ValidationError, "stop"),
    ({"stop": dt.datetime(2030, 1, 1)}, ValidationError, "stop"),  # noqa: DTZ001 (naive)
    ({"start": utcnow() + dt.timedelta(hours=23, minutes=30)}, ValidationError, "stop"),
    ({"cloud_user": "someone-else"}, PermissionDenied, "cloud_user"),
]


@pytest.mark.parametrize(("overrides", "error", "field"), REFUSALS)
def test_submit_refuses_bad_values_and_writes_nothing(cloud, overrides, error, field):
    db = cloud.request.dbsession
    before = (count(db, CloudRequest), count(db, Event))
    with pytest.raises(error) as raised:
        cloud.requests.submit(actor=cloud.user_actor, **request_values(**overrides))
    assert raised.value.field == field
    assert field.split("_")[0] in raised.value.message
    assert (count(db, CloudRequest), count(db, Event)) == before


def test_submit_refuses_disabled_product(cloud):
    db = cloud.request.dbsession
    product = db.scalar(select(Product).where(Product.type == ProductType.CPU,
                                              Product.quantity == "2"))
    cloud.request.find_service(ProductService).set_enabled(product.id, False, actor=cloud.admin)
    with pytest.raises(ValidationError) as raised:
        cloud.requests.submit(actor=cloud.user_actor, **request_values(cpus=2))
    assert raised.value.field == "cpus"
    assert count(db, CloudRequest) == 0


@pytest.mark.parametrize(("limit", "value", "overrides", "field"), [
    ("resource_limit", 2, {"quantity": 3}, "quantity"),
    ("memory_limit_mb", 1000, {"quantity": 2}, "memory_mb"),
    ("disk_limit_mb", 9999, {"quantity": 2}, "disk_mb"),
    ("cpu_limit", 3, {"cpus": 4}, "cpus"),
    ("network_limit", 3, {"network_cards": 2, "quantity": 2}, "network_cards"),
])
def test_submit_refuses_over_user_limit_counting_the_new_request(cloud, limit, value,
                                                                 overrides, field):
    cloud.users.set_limits("demo", actor=cloud.admin, **{limit: value})
    with pytest.raises(LimitExceeded) as raised:
        cloud.requests.submit(actor=cloud.user_actor, **request_values(**overrides))
    assert raised.value.field == field
    assert count(cloud.request.dbsession, CloudRequest) == 0


def test_limits_count_requests_already_held(cloud):
    cloud.users.set_limits("demo", actor=cloud.admin, memory_limit_mb=1024)
    cloud.requests.submit(actor=cloud.user_actor, **request_values(memory_mb=512))
    cloud.requests.submit(actor=cloud.user_actor, **request_values(memory_mb=512))
    with pytest.raises(LimitExceeded):
        cloud.requests.submit(actor=cloud.user_actor, **request_values(memory_mb=256))
    assert count(cloud.request.dbsession, CloudRequest) == 2


def test_global_max_apps_per_user_checked_at_submit(cloud):
    cloud.request.find_service(CloudConfigService).set("max_apps_per_user", 4,
                                                       actor=cloud.admin)
    cloud.requests.submit(actor=cloud.user_actor, **request_values(quantity=3))
    with pytest.raises(LimitExceeded) as raised:
        cloud.requests.submit(actor=cloud.user_actor, **request_values(quantity=2))
    assert raised.value.field == "quantity"


def test_submit_refuses_without_credit_for_first_hour(cloud):
    billing = cloud.users.billing
    billing.set_balance(cloud.demo, Decimal(10), comment="test", actor=cloud.admin)
    with pytest.raises(InsufficientCredit):
        cloud.requests.submit(actor=cloud.user_actor, **request_values())  # 11 CCU/h
    assert count(cloud.request.dbsession, CloudRequest) == 0
    billing.set_balance(cloud.demo, Decimal(11), comment="test", actor=cloud.admin)
    cloud.requests.submit(actor=cloud.user_actor, **request_values())


def test_submit_refused_in_maintenance(cloud):
    cloud.request.find_service(CloudConfigService).set("cloud_enabled", False,
                                                       actor=cloud.admin)
    with pytest.raises(InvalidState):
        cloud.requests.submit(actor=cloud.user_actor, **request_values())


def test_other_users_request_is_not_found(cloud):
    other = cloud.users.create("other", "password-2", "o@example.org", actor=cloud.admin)
    commit(cloud.request)
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    with pytest.raises(NotFound):
        cloud.requests.get(cloud_request.id, actor=Actor.cloud_user("other", other.id))
    with pytest.raises(NotFound):
        cloud.requests.deprovision(cloud_request.id, actor=Actor.cloud_user("other", other.id))


def test_transitions_outside_the_table_are_refused(cloud):
    cloud_request = cloud.requests.submit(actor=cloud.user_actor, **request_values())
    cloud.requests.deny(cloud_request.id, actor=cloud.admin)
    with pytest.raises(InvalidState):
        cloud.requests.approve(cloud_request.id, actor=cloud.admin)
    with pytest.raises(PermissionDenied):
        cloud.requests.approve(cloud_request.id, actor=cloud.user_actor)
