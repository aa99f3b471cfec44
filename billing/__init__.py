"""Billing: prices, the CCU ledger, the hourly charge job."""

from typing import Any


def includeme(config: Any) -> None:
    from billing.prices import PriceService
    from billing.services import BillingService, LedgerService, charge_job
    from engine.cloud.billing_port import BillingPort

    config.register_service_factory(PriceService.create_service, PriceService)
    config.register_service_factory(LedgerService.create_service, LedgerService)
    config.register_service_factory(BillingService.create_service, BillingService)
    # the cloud reaches billing through its port; billing depends on the engine, not back
    config.register_service_factory(BillingService.create_service, BillingPort)
    config.add_job("billing.charge", charge_job, 60)
