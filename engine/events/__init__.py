"""The event log."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.events.services import EventService

    config.register_service_factory(EventService.create_service, EventService)
