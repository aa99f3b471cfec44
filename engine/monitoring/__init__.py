"""Resource reports, health supervision, plugin monitors."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.monitoring.services import (
        ResourceReportService,
        health_job,
        plugins_monitor_job,
    )

    config.register_service_factory(ResourceReportService.create_service, ResourceReportService)
    config.add_job("monitoring.health", health_job, 30)
    config.add_job("plugins.monitor", plugins_monitor_job, 5)
