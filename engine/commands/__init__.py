"""The remote command queue."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.commands.services import CommandService

    config.register_service_factory(CommandService.create_service, CommandService)
