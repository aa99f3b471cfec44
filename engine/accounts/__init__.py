"""Admin accounts."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.accounts.credentials import REGISTRY_KEY, make_verified_credentials
    from engine.accounts.services import AccountService

    config.register_service_factory(AccountService.create_service, AccountService)
    # one memory of verified credentials per process, shared by its threads
    config.registry[REGISTRY_KEY] = make_verified_credentials(config.get_settings())
