"""Rules that hold through every face: credit is not promised twice, options only where
offered, admin-only changes, billing switched off means free."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from billing.models import LedgerEntry
from billing.services import BillingService
from engine.cloud.config import CloudConfigService
from engine.cloud.models import CloudUser, Product, ProductType
from engine.cloud.provisioning import ProvisioningService
from engine.cloud.services import ProductService
from engine.errors import InsufficientCredit, PermissionDenied, ValidationError
from tests.conftest import commit, run_jobs
from tests.unit.cloud.conftest import request_values
from tests.unit.cloud.test_lifecycle import provision


def test_credit_must_cover_an_hour_of_every_held_request(cloud):
    billing = cloud.request.find_service(BillingService)
    billing.set_balance(cloud.demo, Decimal(25), comment="test", actor=cloud.admin)
    cloud.requests.submit(actor=cloud.user_actor, **request_values())  # 11 CCU/h
    cloud.requests.submit(actor=cloud.user_actor, **request_values())  # 22 held
    with pytest.raises(InsufficientCredit, match="other requests"):
        cloud.requests.submit(actor=cloud.user_actor, **request_values())


@pytest.mark.parametrize(("config", "values", "field"), [
    ({"show_ha_checkbox": False}, {"ha": True}, "ha"),
    ({"show_puppet_groups": False}, {"puppet_groups": ["web"]}, "puppet_groups"),
])
def test_options_the_cloud_does_not_offer_are_refused(cloud, config, values, field):
    cloud.request.find_service(CloudConfigService).update(config, actor=cloud.admin)
    with pytest.raises(ValidationError) as raised:
        cloud.requests.submit(actor=cloud.user_actor, **request_values(**values))
    assert raised.value.field == field


def test_ha_needs_an_enabled_ha_product(cloud):
    db = cloud.request.dbsession
    product = db.scalar(select(Product).where(Product.type == ProductType.HA))
    cloud.request.find_service(ProductService).set_enabled(product.id, False,
                                                           actor=cloud.admin)
    with pytest.raises(ValidationError) as raised:
        cloud.requests.submit(actor=cloud.user_actor, **request_values(ha=True))
    assert raised.value.field == "ha"


def test_cloud_users_cannot_change_products_config_or_balances(cloud):
    with pytest.raises(PermissionDenied):
        cloud.request.find_service(ProductService).add(
            ProductType.CPU, "8", 8, "8 CPUs", actor=cloud.user_actor)
    with pytest.raises(PermissionDenied):
        cloud.request.find_service(CloudConfigService).set("auto_provision", True,
                                                           actor=cloud.user_actor)
    billing = cloud.request.find_service(BillingService)
    with pytest.raises(PermissionDenied):
        billing.credit(cloud.demo, 100, reason="gift", comment="", actor=cloud.user_actor)
    with pytest.raises(PermissionDenied):
        billing.set_balance(cloud.demo, 10**6, comment="", actor=cloud.user_actor)


def test_hours_while_billing_is_off_are_never_charged(cloud):
    db = cloud.request.dbsession
    config = cloud.request.find_service(CloudConfigService)
    cloud_request = provision(cloud)
    ca = cloud_request.appliances[0]
    config.set("cloud_billing_enabled", False, actor=cloud.admin)
    ca.active_since -= dt.timedelta(hours=10)
    billing = cloud.request.find_service(BillingService)
    assert billing.charge_due_hours() == 0
    config.set("cloud_billing_enabled", True, actor=cloud.admin)
    assert billing.charge_due_hours() == 0  # the ten free hours stay free
    ca.active_since -= dt.timedelta(hours=1)
    assert billing.charge_due_hours() == 1
    assert len(list(db.scalars(select(LedgerEntry).where(
        LedgerEntry.cloud_appliance_id == ca.id)))) == 2


def test_a_paused_system_is_not_started_without_credit(cloud):
    cloud_request = provision(cloud)
    ca = cloud_request.appliances[0]
    service = cloud.request.find_service(ProvisioningService)
    service.command(ca.id, "stop", actor=cloud.user_actor)
    commit(cloud.request)
    run_jobs(cloud.request.registry)
    billing = cloud.request.find_service(BillingService)
    billing.set_balance(cloud.demo, Decimal(1), comment="test", actor=cloud.admin)
    with pytest.raises(InsufficientCredit):
        service.command(ca.id, "start", actor=cloud.user_actor)


def test_set_balance_lands_on_the_target(cloud):
    billing = cloud.request.find_service(BillingService)
    assert billing.set_balance(cloud.demo, Decimal("12.5"), comment="", actor=cloud.admin) \
        == Decimal("12.5")
    assert billing.set_balance(cloud.demo, Decimal("12.5"), comment="", actor=cloud.admin) \
        == Decimal("12.5")


def test_removed_user_with_history_frees_the_name(cloud):
    long_name = "a" + "b" * 48
    user = cloud.users.create(long_name, "password-1", "l@example.org", actor=cloud.admin)
    cloud.request.find_service(BillingService).credit(user, 5, reason="test", comment="",
                                                      actor=cloud.admin)
    cloud.users.remove(long_name, actor=cloud.admin)
    commit(cloud.request)
    assert long_name not in cloud.users.names()
    kept = cloud.request.dbsession.get(CloudUser, user.id)
    assert len(kept.name) <= 50
    cloud.users.create(long_name, "password-2", "l@example.org", actor=cloud.admin)
