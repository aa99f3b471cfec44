"""Tests of whole deployments: real ``qrm`` processes over one database."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

#: no test here may run longer than this (seconds)
HARD_TIMEOUT = 150


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """Keep each phase's report on the test, for fixtures that attach logs on failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def hard_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that hangs instead of hanging the suite."""

    def expired(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"{request.node.name} ran longer than {HARD_TIMEOUT} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(HARD_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
