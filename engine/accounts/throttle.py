"""Login throttling: too many failed log-ins for one account name lock it for a while.

Failures are recorded in the event log in a transaction of their own (the failed log-in's
own transaction is rolled back when it raises), so every web worker and API process sees
them: nothing is kept in process memory.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from engine.db import utcnow
from engine.errors import AuthenticationFailed
from engine.events.models import Event, EventLevel

MAX_FAILURES = 5
WINDOW = dt.timedelta(minutes=15)


class LoginThrottle:
    def __init__(self, db: Any, session_factory: Any) -> None:
        self.db, self.session_factory = db, session_factory

    def check(self, role: str, name: str) -> None:
        """Raise AuthenticationFailed while ``name`` has too many recent failures."""
        since = utcnow() - WINDOW
        failures = self.db.scalar(select(func.count(Event.id)).where(
            Event.name == "login.failed", Event.actor == f"{role}:{name}",
            Event.time >= since))
        if failures >= MAX_FAILURES:
            raise AuthenticationFailed(
                f"too many failed log-ins for {name}; try again in "
                f"{int(WINDOW.total_seconds() // 60)} minutes")

    def record_failure(self, role: str, name: str, reason: str) -> None:
        """Write the failure now, in its own transaction (it must survive the rollback)."""
        session = self.session_factory()
        try:
            session.add(Event(source="accounts", name="login.failed", actor=f"{role}:{name}",
                              level=EventLevel.WARNING, object_type=None,
                              message=f"failed log-in as {role} {name}: {reason}"))
            session.commit()
        finally:
            session.close()


def login_throttle(request: Any) -> LoginThrottle:
    return LoginThrottle(request.dbsession, request.registry["dbsession_factory"])
