"""The cloud: users, limits, configuration, products, requests and their life-cycle."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.cloud.config import CloudConfigService
    from engine.cloud.provisioning import ProvisioningService, sweep_job
    from engine.cloud.services import CloudRequestService, CloudUserService, ProductService

    config.register_service_factory(CloudConfigService.create_service, CloudConfigService)
    config.register_service_factory(CloudUserService.create_service, CloudUserService)
    config.register_service_factory(ProductService.create_service, ProductService)
    config.register_service_factory(CloudRequestService.create_service, CloudRequestService)
    config.register_service_factory(ProvisioningService.create_service, ProvisioningService)
    config.add_job("cloud.sweep", sweep_job, 10)
