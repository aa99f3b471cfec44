"""The remote command queue: CommandService enqueues, the ``commands.drain`` job runs."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.commands.services import CommandService
    from engine.commands.worker import INTERVAL_S, JOB_ID, drain_commands_job

    config.register_service_factory(CommandService.create_service, CommandService)
    # not a singleton: every scheduler process works the queue; row locks (or SQLite's
    # writer lock) keep two workers off one command
    config.add_job(JOB_ID, drain_commands_job, INTERVAL_S, singleton=False)
