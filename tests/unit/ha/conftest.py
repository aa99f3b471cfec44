from __future__ import annotations

from typing import Any

import pytest

from engine.plugins.manager import PluginService
from engine.security import Actor
from tests.conftest import commit
from tests.unit.cloud.conftest import cloud, engine_clock  # noqa: F401  (fixtures)
from tests.unit.cloud.test_outside_work import no_kicks  # noqa: F401  (a fixture)


@pytest.fixture
def ha(cloud, monkeypatch):  # noqa: F811
    """The demo cloud with the ``highavailability`` plugin started, fast hold-down settings."""
    settings = cloud.request.registry.settings
    monkeypatch.setitem(settings, "qrm.highavailability.hold_down", "600")
    monkeypatch.setitem(settings, "qrm.highavailability.fallback_types", "")
    plugins = cloud.request.find_service(PluginService)
    for action in ("enable", "start"):
        plugins.act("highavailability", action, actor=Actor.admin("admin"))
    commit(cloud.request)
    return cloud


def set_setting(services: Any, monkeypatch: Any, name: str, value: str) -> None:
    monkeypatch.setitem(services.request.registry.settings, f"qrm.highavailability.{name}",
                        value)
