"""Login throttling: too many failed log-ins for one account name lock it for a while.

Failures are recorded in the event log in a transaction of their own, written once the
failed log-in's own transaction has ended (it is rolled back when the error is raised, and on
SQLite it holds the only write lock until then), so every web worker and API process sees
them: nothing is kept in process memory.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from engine.db import utcnow
from engine.errors import LoginThrottled
from engine.events.models import Event, EventLevel
from engine.i18n import _

MAX_FAILURES = 5
WINDOW = dt.timedelta(minutes=15)


class LoginThrottle:
    def __init__(self, db: Any, session_factory: Any, transaction_manager: Any) -> None:
        self.db, self.session_factory, self.tm = db, session_factory, transaction_manager

    def check(self, role: str, name: str) -> None:
        """Raise AuthenticationFailed while ``name`` has too many recent failures."""
        since = utcnow() - WINDOW
        failures = self.db.scalar(select(func.count(Event.id)).where(
            Event.name == "login.failed", Event.actor == f"{role}:{name}",
            Event.time >= since))
        if failures >= MAX_FAILURES:
            raise LoginThrottled(_("too many failed log-ins for ${name}; try again in "
                                   "${minutes} minutes",
                                   mapping={"name": name,
                                            "minutes": int(WINDOW.total_seconds() // 60)}))

    def record_failure(self, role: str, name: str, reason: str) -> None:
        """Write the failure in its own transaction after the current one ends (commit or
        rollback): it must survive the rollback of the failed log-in."""
        transaction = self.tm.get()
        transaction.addAfterCommitHook(lambda _ok: self._write(role, name, reason))
        transaction.addAfterAbortHook(self._write, args=(role, name, reason))

    def _write(self, role: str, name: str, reason: str) -> None:
        session = self.session_factory()
        try:
            session.add(Event(source="accounts", name="login.failed", actor=f"{role}:{name}",
                              level=EventLevel.WARNING, object_type=None,
                              message=f"failed log-in as {role} {name}: {reason}"))
            session.commit()
        finally:
            session.close()


def login_throttle(request: Any) -> LoginThrottle:
    return LoginThrottle(request.dbsession, request.registry["dbsession_factory"], request.tm)
