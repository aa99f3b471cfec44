"""The datacenter: resources, kernels, images, storage, appliances."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.datacenter.services import AppliancesService, DatacenterService

    config.register_service_factory(DatacenterService.create_service, DatacenterService)
    config.register_service_factory(AppliancesService.create_service, AppliancesService)
