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
    # requests waiting for a machine's report or an outside call are made due by it
    from engine.cloud.provisioning import on_appliance_moved, on_call_done, on_resource_changed
    from engine.datacenter.calls import CallDone
    from engine.datacenter.failover import ApplianceMoved
    from engine.monitoring.services import ResourceStateChanged

    config.add_subscriber(on_resource_changed, ResourceStateChanged)
    config.add_subscriber(on_call_done, CallDone)
    config.add_subscriber(on_appliance_moved, ApplianceMoved)
