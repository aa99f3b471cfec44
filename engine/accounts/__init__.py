"""Admin accounts."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.accounts.services import AccountService

    config.register_service_factory(AccountService.create_service, AccountService)
