"""The engine's one clock: every time the engine, billing and plugins read comes from here
(``engine.db.utcnow``).

In production it is the system clock. Tests, the simulated datacenter and ``make bench`` may
move time on, to exercise hourly charges, stop times and monitoring timeouts across many hours
in seconds: ``qrm.clock = offset:PATH`` (or ``QRM_CLOCK``) reads an offset in seconds from the
file ``PATH``, shared by every process that names it, so a web server and a separate scheduler
see the same simulated time, also after they were killed and restarted. ``advance`` moves it;
time never goes back.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import tempfile
import threading
from typing import Any, Protocol

SETTING = "qrm.clock"


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real time, UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class OffsetClock:
    """The real time plus an offset kept in a file (seconds, as text)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._offset = 0.0

    def offset(self) -> float:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return 0.0
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:  # re-read only when another process moved it
            with self._lock:
                text = self.path.read_text().strip()
                self._offset, self._stamp = float(text or 0), stamp
        return self._offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset())

    def advance(self, seconds: float) -> dt.datetime:
        """Move time on by ``seconds`` (for every process reading this clock)."""
        if seconds < 0:
            raise ValueError("the clock does not go back")
        with self._lock:
            offset = self.offset() + seconds
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # write-and-rename: a reader never sees half a number
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".clock-")
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{offset!r}\n")
            os.replace(tmp, self.path)
        return self.now()

    def __repr__(self) -> str:
        return f"OffsetClock({str(self.path)!r})"


_clock: Clock = SystemClock()


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return _clock.now()


def current() -> Clock:
    return _clock


def use(clock: Clock) -> Clock:
    """Make ``clock`` the engine's clock; returns the previous one."""
    global _clock
    previous, _clock = _clock, clock
    return previous


def from_settings(settings: dict[str, Any]) -> Clock:
    """``system`` (default) or ``offset:PATH``."""
    value = str(settings.get(SETTING) or "system").strip()
    if value == "system":
        return SystemClock()
    if value.startswith("offset:") and value[len("offset:"):].strip():
        return OffsetClock(value[len("offset:"):].strip())
    raise ValueError(f"{SETTING} must be 'system' or 'offset:PATH', not {value!r}")


def advance(seconds: float) -> dt.datetime:
    """Move the engine's clock on (an ``OffsetClock`` only)."""
    if not isinstance(_clock, OffsetClock):
        raise RuntimeError(f"the engine's clock is {_clock!r}; only an offset clock moves")
    return _clock.advance(seconds)
