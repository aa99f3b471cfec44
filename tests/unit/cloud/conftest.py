from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from engine.cloud.services import CloudRequestService, CloudUserService
from engine.db import utcnow
from engine.security import Actor


@pytest.fixture
def cloud(demo_cloud: dict[str, Any]) -> Any:
    """Services of the demo cloud, acting as the demo user or an admin."""
    request = demo_cloud["request"]

    class Cloud:
        @property
        def demo(self) -> Any:  # fresh after every commit (the session is closed by it)
            return self.users.resolve("demo", actor=Actor.system())

    c = Cloud()
    c.request = request
    c.requests = request.find_service(CloudRequestService)
    c.users = request.find_service(CloudUserService)
    c.user_actor = Actor.cloud_user("demo", c.demo.id)
    c.admin = Actor.admin("admin")
    return c


def request_values(**overrides: Any) -> dict[str, Any]:
    values = {
        "cloud_user": "demo", "start": None, "stop": utcnow() + dt.timedelta(days=1),
        "kernel": "default", "image": "debian-12", "memory_mb": 512, "cpus": 1,
        "disk_mb": 5000, "network_cards": 1, "quantity": 1, "virtualization": "sim-vm",
    }
    values.update(overrides)
    return values


@pytest.fixture
def engine_clock(tmp_path: Any) -> Iterator[Any]:
    """The engine's clock, movable: ``engine_clock.advance(seconds)``."""
    from engine import clock

    movable = clock.OffsetClock(tmp_path / "clock")
    previous = clock.use(movable)
    try:
        yield movable
    finally:
        clock.use(previous)
