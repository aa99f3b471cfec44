"""Plugins: pluggy manager, states, drivers."""

from typing import Any


def includeme(config: Any) -> None:
    from engine.plugins.manager import PluginRegistry, PluginService

    if "plugins" not in config.registry:
        config.registry["plugins"] = PluginRegistry()
    config.register_service_factory(PluginService.create_service, PluginService)
    config.registry["plugins"].all_hooks.qrm_configure(config=config)
