"""The datacenter: resources, kernels, images, storage, appliances, and the calls that change
the world outside the database (``engine.datacenter.calls``)."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.datacenter.calls import CallService, calls_job
    from engine.datacenter.reconcile import reconcile_job
    from engine.datacenter.services import AppliancesService, DatacenterService

    config.register_service_factory(CallService.create_service, CallService)
    config.register_service_factory(DatacenterService.create_service, DatacenterService)
    config.register_service_factory(AppliancesService.create_service, AppliancesService)
    config.add_job("datacenter.calls", calls_job, 5)
    config.add_job("datacenter.reconcile", reconcile_job, 300)
    # fail-overs (AppliancesService.fail_over), moved on when their new machine reports
    from engine.datacenter.calls import CallDone
    from engine.datacenter.failover import failover_job, on_call_done, on_resource_changed
    from engine.monitoring.services import ResourceStateChanged

    config.add_job("datacenter.failover", failover_job, 10)
    config.add_subscriber(on_resource_changed, ResourceStateChanged)
    config.add_subscriber(on_call_done, CallDone)
